"""Post-quantum key exchange for aioquic and hypercorn, over QUIC and over TCP.

Public API (see docs/): :func:`configure` one QuicConfiguration, :func:`install` for every
aioquic connection, :func:`ssl_context` for TLS over TCP (asyncio, trio, anyio, httpx), and
:func:`negotiated_group` to read back what a handshake agreed on, on either transport.
Authentication (ML-DSA certificates): :func:`configure_auth` on QUIC, ``ssl_context(auth=...,
certificates=[...])`` on TCP, and :func:`negotiated_signature_scheme` and
:func:`post_quantum_auth` on both (docs/auth.md).
"""

from __future__ import annotations

import sys
from typing import Any

from .aioquic_binding import authentication as _quic_auth
from .aioquic_binding import configure, install, uninstall
from .aioquic_binding import negotiated_group as _quic_negotiated_group
from .aioquic_binding.auth_config import configure_auth
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


def negotiated_signature_scheme(connection: Any) -> SignatureScheme | None:
    """The server's CertificateVerify scheme of a finished handshake, on either side, or None.

    Accepts what :func:`negotiated_group` accepts, on QUIC and on TCP. None before the
    handshake, for stock aioquic or Python's ``ssl`` (policy off), for a resumed session, and
    over TCP where OpenSSL's choice cannot be read (an RSA key's hash, TLS 1.2).
    """
    scheme = _quic_auth.negotiated_signature_scheme(connection)
    tls_binding = sys.modules.get("pq_quic_plugin.tls_binding")
    if scheme is None and tls_binding is not None:
        scheme = tls_binding.negotiated_signature_scheme(connection)
    return scheme


def post_quantum_auth(connection: Any) -> bool:
    """Whether the handshake authenticated the server post-quantum: an ML-DSA CertificateVerify
    and every presented certificate signed with ML-DSA (on a client, also verified)."""
    if _quic_auth.post_quantum_auth(connection):
        return True
    tls_binding = sys.modules.get("pq_quic_plugin.tls_binding")
    return tls_binding is not None and bool(tls_binding.post_quantum_auth(connection))


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
