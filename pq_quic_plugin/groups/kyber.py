"""Kyber round 3, the KEM inside the pre-standard hybrids (X25519Kyber768Draft00 and friends).

Built on ML-KEM rather than on a separate implementation, the way Go 1.23 did it: keys and
ciphertexts have the same format, and for a well-formed ciphertext Kyber r3's key is
``SHAKE256(K || SHA3-256(ct), 32)`` where ``K`` is what ML-KEM derives. (Kyber r3 also hashes its
random message once more before use; a hash of a random string is as random, so an ML-KEM
encapsulation is a valid Kyber one.) The two differ only for a *rejected* ciphertext, where each
returns a different pseudo-random key; both peers still end up with mismatched keys, so the
handshake fails the same way.

Round 3 has no modulus check on the public key, but we keep ML-KEM's: an honest Kyber key always
passes it (its coefficients are reduced mod q), so refusing one that fails only turns away peers
that are broken or hostile.
"""

from __future__ import annotations

import hashlib

from .mlkem import MLKEMBasedGroup, MLKEMParams


def kyber_final_key(mlkem_shared_secret: bytes, ciphertext: bytes) -> bytes:
    """Kyber r3's KDF applied to ML-KEM's key (see the module docstring for why this is exact)."""
    digest = hashlib.sha3_256(ciphertext).digest()
    return hashlib.shake_256(mlkem_shared_secret + digest).digest(32)


class KyberGroup(MLKEMBasedGroup):
    """A Kyber r3 component for the draft hybrids; not a TLS group on its own.

    ``codepoint`` is 0 because IANA never assigned standalone Kyber a value; the hybrids that
    contain it carry their own codepoint.
    """

    codepoint = 0

    def __init__(self, params: MLKEMParams, backend: str | None = None) -> None:
        super().__init__(params, backend)
        self.name = f"Kyber{params.size}"

    def _final_key(self, shared_secret: bytes, ciphertext: bytes) -> bytes:
        return kyber_final_key(shared_secret, ciphertext)
