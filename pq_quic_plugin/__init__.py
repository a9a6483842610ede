"""Post-quantum key exchange for aioquic and hypercorn, over QUIC and over TCP.

Public API (see docs/): :func:`configure` one QuicConfiguration, :func:`install` for every
aioquic connection, :func:`ssl_context` for TLS over TCP (asyncio, trio, anyio, httpx), and
:func:`negotiated_group` to read back what a handshake agreed on, on either transport.
Authentication (ML-DSA certificates, QUIC): :func:`configure_auth`,
:func:`negotiated_signature_scheme` and :func:`post_quantum_auth` (docs/auth.md).
"""

from __future__ import annotations

import sys
from typing import Any

from .aioquic_binding import configure, install, uninstall
from .aioquic_binding import negotiated_group as _quic_negotiated_group
from .aioquic_binding.auth_config import configure_auth
from .aioquic_binding.authentication import negotiated_signature_scheme, post_quantum_auth
from .auth_policy import AuthPolicy, SignatureScheme
from .groups.base import Group, InvalidKeyShare
from .plugins import UnknownGroupError, registry
from .policy import Policy
from .tcp_tls import ssl_context

__version__ = "0.1.0"


def available_groups() -> list[Group]:
    """Every registered group, built-in and from plugins, in default preference order."""
    return registry().all()


def group_by_name(name: str) -> Group:
    """Look a group up by IANA name, case-insensitively; raises UnknownGroupError."""
    return registry().by_name(name)


def negotiated_group(connection: Any) -> Group | None:
    """The group a finished handshake agreed on, on either side, or None.

    QUIC: a ``QuicConnection``, an aioquic ``QuicConnectionProtocol`` or a TLS context; stock
    aioquic (policy off) records no group. TCP: the object from :func:`ssl_context`'s
    ``wrap_bio``, an asyncio transport or ``StreamWriter``, an anyio TLS stream or a trio
    ``SSLStream``; Python's own ``ssl`` (policy off) reports no group. The same :class:`Group`
    objects on both transports.
    """
    group = _quic_negotiated_group(connection)
    tls_binding = sys.modules.get("pq_quic_plugin.tls_binding")
    if group is None and tls_binding is not None:  # not imported: no TCP connection of ours
        group = tls_binding.negotiated_group(connection)
    return group


__all__ = [
    "AuthPolicy",
    "Group",
    "InvalidKeyShare",
    "Policy",
    "SignatureScheme",
    "UnknownGroupError",
    "available_groups",
    "configure",
    "configure_auth",
    "group_by_name",
    "install",
    "negotiated_group",
    "negotiated_signature_scheme",
    "post_quantum_auth",
    "ssl_context",
    "uninstall",
]
