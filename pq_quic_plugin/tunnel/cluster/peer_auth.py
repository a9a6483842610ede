"""How two edges of a cluster prove to each other that they hold the cluster secret (hop 2).

The secret file never crosses the wire and is not used directly: both edges derive
``relay_key = HKDF-SHA256(secret, info = "pq-tunnel cluster relay v1")``. The exchange runs on
the peer link's control stream, right after the (post-quantum) TLS handshake:

1. the relaying edge says who it is (``peer-hello``);
2. the serving edge answers with a fresh nonce and the fingerprint of the certificate it
   presented on this connection (``challenge``), and nothing else: a stranger learns no name,
   no proof, nothing about the cluster (the certificate it already saw in the handshake);
3. the relaying edge proves the key over that nonce, its own ID and the fingerprint of the
   certificate *it received* in the handshake, and sends a nonce of its own (``peer-auth``);
4. only then does the serving edge, having checked that proof against the certificate it
   presented, prove the key over both nonces, its ID and that fingerprint (``peer-welcome``),
   so the relaying edge knows it reached a member and not an impostor.

Each proof is an HMAC with its role in it (a proof one side makes is never valid as the
other's), over length-prefixed fields, compared in constant time. Fresh nonces on both sides
mean a recorded exchange cannot be replayed, and the certificate in both proofs binds them to
this TLS session's server (:mod:`.cert_binding`): a middlebox that terminates TLS on both
sides presents its own certificate to the relaying edge, so the proofs it passes through
match neither edge's view and both edges refuse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..log_safe import shown
from .cert_binding import FINGERPRINT_BYTES

__all__ = [
    "AUTH_FAILED",
    "CERTIFICATE_MISMATCH",
    "CertificateMismatch",
    "NONCE_BYTES",
    "PEER_VERSION",
    "PROOF_BYTES",
    "RELAYING",
    "SERVING",
    "PeerMalformed",
    "b64",
    "derive_relay_key",
    "new_nonce",
    "parse_bytes",
    "parse_certificate",
    "parse_edge_id",
    "parse_nonce",
    "parse_proof",
    "peer_proof",
    "verify_peer_proof",
]

#: 2: the proofs cover the serving edge's certificate (version 1 did not).
PEER_VERSION = 2
NONCE_BYTES = 32
PROOF_BYTES = 32
MAX_EDGE_ID = 128
_INFO = b"pq-tunnel cluster relay v1"
#: The roles a proof is made for (part of what is signed).
RELAYING = b"relaying-edge"
SERVING = b"serving-edge"
#: What a peer that failed to authenticate is told, whatever failed (the log has the detail).
AUTH_FAILED = "cluster authentication failed (the edge's log has the detail)"
#: Why a proof made over another certificate than the serving edge's fails (for the logs).
CERTIFICATE_MISMATCH = "a TLS-terminating middlebox or a wrong peer?"


class PeerMalformed(ValueError):
    """A peer message that breaks the protocol; the text is for the log (values escaped)."""


class CertificateMismatch(PeerMalformed):
    """The two edges' views of the serving edge's certificate differ: what this side says
    outranks the peer's generic refusal (it is the cause, and only this side can tell)."""


def derive_relay_key(secret: bytes) -> bytes:
    """The key both edges prove they hold; 32 bytes from the cluster secret file."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def peer_proof(key: bytes, role: bytes, edge_id: str, certificate: bytes, *nonces: bytes) -> bytes:
    """HMAC-SHA256(key, role ‖ edge_id ‖ certificate ‖ nonces...), every field
    length-prefixed; ``certificate`` is the serving edge's leaf fingerprint
    (:func:`.cert_binding.fingerprint`) as the side making the proof knows it."""
    message = (
        _field(role)
        + _field(edge_id.encode())
        + _field(certificate)
        + b"".join(_field(n) for n in nonces)
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def verify_peer_proof(
    key: bytes, role: bytes, edge_id: str, certificate: bytes, presented: bytes, *nonces: bytes
) -> bool:
    """Whether ``presented`` is the proof for these fields (constant-time compare)."""
    return hmac.compare_digest(peer_proof(key, role, edge_id, certificate, *nonces), presented)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_bytes(message: dict[str, Any], key: str, size: int) -> bytes:
    """``message[key]``: base64 of exactly ``size`` bytes, or :class:`PeerMalformed`."""
    value = message.get(key)
    if not isinstance(value, str) or len(value) > 4 * size:
        raise PeerMalformed(f"{key!r} is not a base64 string of {size} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PeerMalformed(f"{key!r} is not base64: {shown(value, 60)}") from None
    if len(raw) != size:
        raise PeerMalformed(f"{key!r} has {len(raw)} bytes, not {size}")
    return raw


def parse_nonce(message: dict[str, Any]) -> bytes:
    """``message["nonce"]``, the sender's fresh nonce (``challenge``, ``peer-auth``)."""
    return parse_bytes(message, "nonce", NONCE_BYTES)


def parse_proof(message: dict[str, Any]) -> bytes:
    """``message["proof"]``, an HMAC-SHA256 (``peer-auth``, ``peer-welcome``)."""
    return parse_bytes(message, "proof", PROOF_BYTES)


def parse_certificate(message: dict[str, Any]) -> bytes:
    """``message["certificate"]``, a certificate's fingerprint (:mod:`.cert_binding`)."""
    return parse_bytes(message, "certificate", FINGERPRINT_BYTES)


def parse_edge_id(message: dict[str, Any]) -> str:
    """``message["edge_id"]``: printable text of 1-128 characters, or :class:`PeerMalformed`."""
    value = message.get("edge_id")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_EDGE_ID or not value.isprintable():
        raise PeerMalformed(f"edge_id is not a short printable string: {shown(value, 60)}")
    return value
