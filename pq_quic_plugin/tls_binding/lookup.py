"""Find the post-quantum TLS object behind whatever a server or client holds.

Applications rarely hold the ``SSLObject`` itself: asyncio gives a transport or a
``StreamWriter`` (``get_extra_info("ssl_object")``), anyio (httpx's async transport) a stream
with ``extra(TLSAttribute.ssl_object)``, and trio an ``SSLStream``, which keeps its object
private but forwards some of its methods (``stream.pending`` is the object's bound method, so
its ``__self__`` is the object). :func:`negotiated_group` accepts all of them, so
``pq_quic_plugin.negotiated_group`` reads the same on TCP as on QUIC.
"""

from __future__ import annotations

import sys
from typing import Any

from ..auth_policy import SignatureScheme
from ..groups.base import Group
from .connection import PostQuantumSSLObject

__all__ = ["negotiated_group", "negotiated_signature_scheme", "post_quantum_auth", "tls_object_of"]


def _from_anyio(stream: Any) -> Any:
    anyio_tls = sys.modules.get("anyio.streams.tls")
    if anyio_tls is None:  # anyio never imported: no anyio stream can exist
        return None
    return stream.extra(anyio_tls.TLSAttribute.ssl_object, None)


def tls_object_of(connection: Any) -> PostQuantumSSLObject | None:
    """The :class:`PostQuantumSSLObject` of ``connection``, or None (plain TCP, Python's
    ``ssl``, or not a connection at all)."""
    if isinstance(connection, PostQuantumSSLObject):
        return connection
    candidate = None
    if callable(getattr(connection, "get_extra_info", None)):  # asyncio transport/StreamWriter
        candidate = connection.get_extra_info("ssl_object")
    elif callable(getattr(connection, "extra", None)):  # anyio TLSStream
        candidate = _from_anyio(connection)
    else:  # trio SSLStream: forwards `pending` (even before the handshake) to its object
        candidate = getattr(getattr(connection, "pending", None), "__self__", None)
    return candidate if isinstance(candidate, PostQuantumSSLObject) else None


def negotiated_group(connection: Any) -> Group | None:
    """The group a TCP handshake agreed on (the registry's :class:`Group`), or None."""
    tls_object = tls_object_of(connection)
    return tls_object.pq_group if tls_object is not None else None


def negotiated_signature_scheme(connection: Any) -> SignatureScheme | None:
    """The server's CertificateVerify scheme on a TCP connection of ours, or None."""
    tls_object = tls_object_of(connection)
    return tls_object.signature_scheme() if tls_object is not None else None


def post_quantum_auth(connection: Any) -> bool:
    """Whether a TCP connection of ours authenticated the server post-quantum."""
    tls_object = tls_object_of(connection)
    return tls_object is not None and tls_object.pq_post_quantum_auth
