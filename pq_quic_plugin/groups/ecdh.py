"""Classical ECDH groups (X25519, P-256, P-384) in the KEM shape of :class:`Group`.

They serve twice: as groups of their own, and as the classical half of the hybrids. Every error
that ``cryptography`` raises on peer input is turned into :class:`InvalidKeyShare`, because the TLS
binding only maps that exception to an ``illegal_parameter`` alert; anything else would surface as
an internal error and hide the peer's mistake.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .base import InvalidKeyShare

_ALL_ZERO = bytes(32)

_PrivateKey = TypeVar("_PrivateKey", x25519.X25519PrivateKey, ec.EllipticCurvePrivateKey)


class _EcdhGroup(ABC, Generic[_PrivateKey]):
    """ECDH in the KEM shape: the server "encapsulates" by generating a key pair of its own and
    replying with its public half, the client "decapsulates" by doing the exchange with that
    reply. Both sides check the peer's share the same way; a curve gives only key generation and
    the exchange itself, after the length is known to be right."""

    name: str
    codepoint: int
    share_size: int
    post_quantum = False

    @abstractmethod
    def generate(self) -> tuple[_PrivateKey, bytes]: ...

    @abstractmethod
    def _shared_secret(self, key: _PrivateKey, peer: bytes, what: str) -> bytes:
        """The exchange with a ``peer`` share of the right length; ``what`` names it in errors."""

    def encapsulate(self, peer_share: bytes) -> tuple[bytes, bytes]:
        key, share = self.generate()
        return self._exchange(key, peer_share, "key share"), share

    def decapsulate(self, private_state: _PrivateKey, reply_share: bytes) -> bytes:
        return self._exchange(private_state, reply_share, "server key share")

    def _exchange(self, key: _PrivateKey, peer: bytes, what: str) -> bytes:
        if len(peer) != self.share_size:
            raise InvalidKeyShare(
                f"{self.name} {what} is {len(peer)} bytes, expected {self.share_size}"
            )
        return self._shared_secret(key, peer, what)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} 0x{self.codepoint:04X}>"


class X25519Group(_EcdhGroup[x25519.X25519PrivateKey]):
    """X25519 (RFC 7748) with raw 32-byte shares; the server's reply is its own public key."""

    codepoint = 0x001D
    name = "x25519"
    share_size = 32
    reply_size = 32

    def generate(self) -> tuple[x25519.X25519PrivateKey, bytes]:
        key = x25519.X25519PrivateKey.generate()
        return key, key.public_key().public_bytes_raw()

    def _shared_secret(self, key: x25519.X25519PrivateKey, peer: bytes, what: str) -> bytes:
        try:
            secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
        except ValueError as exc:
            # OpenSSL refuses low-order points this way (RFC 8446 section 7.4.2 asks us to).
            raise InvalidKeyShare(
                f"{self.name} {what} is a low-order point (all-zero shared secret)"
            ) from exc
        if secret == _ALL_ZERO:  # belt and braces should a backend ever stop refusing
            raise InvalidKeyShare(
                f"{self.name} {what} is a low-order point (all-zero shared secret)"
            )
        return secret


class NistCurveGroup(_EcdhGroup[ec.EllipticCurvePrivateKey]):
    """ECDHE over a NIST prime curve with uncompressed X9.62 points, as TLS 1.3 requires.

    Compressed points are refused rather than decoded: RFC 8446 section 4.2.8.2 allows only the
    uncompressed form, and accepting more would let a peer pass a share no other stack accepts.
    """

    def __init__(self, name: str, codepoint: int, curve: ec.EllipticCurve) -> None:
        self.name = name
        self.codepoint = codepoint
        self._curve = curve
        self.share_size = 1 + 2 * ((curve.key_size + 7) // 8)
        self.reply_size = self.share_size

    def generate(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = ec.generate_private_key(self._curve)
        share = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return key, share

    def _shared_secret(self, key: ec.EllipticCurvePrivateKey, peer: bytes, what: str) -> bytes:
        if peer[0] != 0x04:
            raise InvalidKeyShare(
                f"{self.name} {what} is not an uncompressed point (first byte 0x{peer[0]:02x})"
            )
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, peer)
        except ValueError as exc:
            raise InvalidKeyShare(f"{self.name} {what} is not a point on the curve") from exc
        try:
            return key.exchange(ec.ECDH(), public)
        except ValueError as exc:
            raise InvalidKeyShare(f"{self.name} {what} gives no valid shared secret") from exc


def secp256r1() -> NistCurveGroup:
    return NistCurveGroup("secp256r1", 0x0017, ec.SECP256R1())


def secp384r1() -> NistCurveGroup:
    return NistCurveGroup("secp384r1", 0x0018, ec.SECP384R1())
