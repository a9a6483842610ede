"""What ties the relay's cluster proofs to the TLS session they run in: the serving edge's leaf
certificate, as a SHA-256 fingerprint (docs/protocol.md, "The edge-edge hop").

The relaying edge does not verify its peer's certificate against a CA by default (edges'
certificates name visitors' hosts, not relay addresses), so the proofs alone authenticate the
edges. Were they independent of TLS, anyone able to terminate TLS on both sides of the hop
could pass them through and read the hop. Both proofs therefore cover the fingerprint of the
certificate the relaying edge *received* in its handshake; the serving edge checks them against
the certificate it *presented* on that connection. A middlebox presenting its own certificate
makes the two differ, and both checks fail: it cannot present the serving edge's certificate
without its private key.

The fingerprint is read from the connection itself on both transports, never from a file: on
QUIC through :mod:`pq_quic_plugin.aioquic_binding.facade`, on TLS over TCP from the TLS object
of the post-quantum layer (the leaf it sent, of several pairs the one OpenSSL chose).
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ...aioquic_binding.facade import peer_certificate_der, presented_certificate_der
from ..wire import TunnelConnection, TunnelLink
from ..wire.h2_transport import H2TunnelConnection

__all__ = [
    "FINGERPRINT_BYTES",
    "fingerprint",
    "presented_fingerprint",
    "seen_fingerprint",
    "show_fingerprint",
]

FINGERPRINT_BYTES = 32


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(der).digest()


def show_fingerprint(value: bytes | None) -> str:
    """For a log line: ``sha256:3f9a61c0e2b7d4a8…`` (enough to tell two certificates apart)."""
    return "none" if value is None else f"sha256:{value.hex()[:16]}…"


def _der(link: TunnelLink, *, own: bool) -> bytes | None:
    """The leaf this side presented (``own``) or received on ``link``, as DER."""
    if isinstance(link, TunnelConnection):
        return presented_certificate_der(link) if own else peer_certificate_der(link)
    if not isinstance(link, H2TunnelConnection):
        return None
    tls = link.get_extra_info("ssl_object")
    if tls is None:
        return None
    if not own:
        der = tls.getpeercert(binary_form=True)
        return bytes(der) if der else None
    pem = getattr(tls, "server_certificate_pem", None)  # the post-quantum layer's, on a server
    if not pem:
        return None
    return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)


def seen_fingerprint(link: TunnelLink) -> bytes | None:
    """On the relaying edge (the TLS client): the fingerprint of the leaf the peer presented in
    this link's handshake; None when it cannot be read (then nothing can be bound to it)."""
    der = _der(link, own=False)
    return fingerprint(der) if der else None


def presented_fingerprint(link: TunnelLink) -> bytes | None:
    """On the serving edge (the TLS server): the fingerprint of the leaf this edge presented on
    this link, of its pairs the one sent to this peer; None when it cannot be read."""
    der = _der(link, own=True)
    return fingerprint(der) if der else None
