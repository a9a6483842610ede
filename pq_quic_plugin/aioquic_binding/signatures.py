"""Signing and verifying TLS 1.3 CertificateVerify with ML-DSA, next to aioquic's schemes.

aioquic maps a key to its signature schemes and its schemes to ``cryptography`` parameters in
module-level tables that know nothing of ML-DSA (an ML-DSA CertificateVerify makes its verifier
raise ``KeyError``). This module is the one place that extends both: which schemes a private key
can sign with, how to sign, and how to verify an ML-DSA signature so that every failure is a
``decrypt_error`` alert (draft-ietf-tls-mldsa: a signature or key of the wrong length is a
verification failure), never an exception from ``cryptography``.

ML-DSA here is pure ML-DSA over the RFC 8446 CertificateVerify content (64 spaces, the context
string, a zero byte, the transcript hash) with the FIPS 204 context parameter ``ctx`` empty.
"""

from __future__ import annotations

from typing import Any

from aioquic import tls
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa

from ..auth_policy import ML_DSA_44, ML_DSA_65, ML_DSA_87, chain_is_post_quantum

#: ML-DSA public key class for each scheme codepoint, and the private key classes that sign it.
_PUBLIC_KEY = {
    ML_DSA_44.codepoint: mldsa.MLDSA44PublicKey,
    ML_DSA_65.codepoint: mldsa.MLDSA65PublicKey,
    ML_DSA_87.codepoint: mldsa.MLDSA87PublicKey,
}
_ML_DSA_PUBLIC = (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)
_PRIVATE_KEY = (
    (mldsa.MLDSA44PrivateKey, ML_DSA_44.codepoint),
    (mldsa.MLDSA65PrivateKey, ML_DSA_65.codepoint),
    (mldsa.MLDSA87PrivateKey, ML_DSA_87.codepoint),
)


def schemes_for_private_key(key: Any) -> list[int]:
    """The schemes ``key`` can sign a TLS 1.3 CertificateVerify with, best first.

    The classical rows are aioquic 1.7's own choice (RSA signs with PSS only, RFC 8446 4.4.3);
    ML-DSA adds one scheme per parameter set.
    """
    for cls, codepoint in _PRIVATE_KEY:
        if isinstance(key, cls):
            return [codepoint]
    S = tls.SignatureAlgorithm
    if isinstance(key, rsa.RSAPrivateKey):
        return [S.RSA_PSS_RSAE_SHA256, S.RSA_PSS_RSAE_SHA384]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return [S.ECDSA_SECP256R1_SHA256]
        if isinstance(key.curve, ec.SECP384R1):
            return [S.ECDSA_SECP384R1_SHA384]
        return []
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return [S.ED25519]
    if isinstance(key, ed448.Ed448PrivateKey):
        return [S.ED448]
    return []


def sign(key: Any, codepoint: int, data: bytes) -> bytes:
    """Sign CertificateVerify content ``data`` with ``key`` under scheme ``codepoint``."""
    if codepoint in _PUBLIC_KEY:
        return bytes(key.sign(data))  # pure ML-DSA, empty context parameter
    return bytes(key.sign(data, *tls.signature_algorithm_params(codepoint)))


def verify_ml_dsa(
    certificate: x509.Certificate, codepoint: int, signature: bytes, data: bytes
) -> None:
    """Check an ML-DSA CertificateVerify against the peer's end-entity certificate.

    Raises ``unsupported_certificate``/``bad_certificate`` for a key that cannot be read, and
    ``decrypt_error`` for everything else: a key of another parameter set than the scheme, a
    signature of the wrong length, a wrong signature.
    """
    try:
        public_key = certificate.public_key()
    except UnsupportedAlgorithm as exc:
        raise tls.AlertUnsupportedCertificate("Certificate has an unsupported key type") from exc
    except ValueError as exc:
        raise tls.AlertBadCertificate("Certificate has an invalid key") from exc
    if not isinstance(public_key, _ML_DSA_PUBLIC) or not isinstance(
        public_key, _PUBLIC_KEY[codepoint]
    ):
        raise tls.AlertDecryptError(
            "CertificateVerify has a signature algorithm which does not match the certificate's key"
        )
    try:
        public_key.verify(signature, data)
    except (InvalidSignature, ValueError):
        raise tls.AlertDecryptError("ML-DSA CertificateVerify signature is invalid") from None


def signature_oids(certificates: list[x509.Certificate]) -> list[str]:
    """The signature algorithm OID of each certificate, as dotted strings."""
    return [c.signature_algorithm_oid.dotted_string for c in certificates]


def chain_signed_with_ml_dsa(certificates: list[x509.Certificate]) -> bool:
    """Whether every certificate presented (leaf first) carries an ML-DSA signature."""
    return chain_is_post_quantum(signature_oids(certificates))
