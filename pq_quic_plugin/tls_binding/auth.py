"""Post-quantum authentication over TCP: what OpenSSL is allowed to sign with, which of a server's
certificates it may use, and what a handshake authenticated with.

OpenSSL 3.5+ does ML-DSA itself (signing, verifying, certificate chains); what it needs from us is
configuration, and what we need from it is the facts. Both sides get an explicit
``signature_algorithms`` list (:func:`sigalgs_list`): ML-DSA-44/65/87 first unless the policy is
``off``, then OpenSSL's classical defaults without SHA-1 and DSA. A server loads every
certificate the policy lets it use into one OpenSSL context (:func:`usable_pairs`), and OpenSSL
picks, per ClientHello, the first scheme in the client's list for which it holds a certificate
(client preference; every ML-DSA-capable client we know lists ML-DSA first: Chromium, OpenSSL 3.5+,
our QUIC and TCP clients).

The binding exports no ``SSL_get_peer_signature_type_nid``, so the scheme of a finished TLS 1.3
handshake is read from the key that signed it (:func:`scheme_for_key`): in TLS 1.3 an ML-DSA,
ECDSA (curve-bound), Ed25519 or Ed448 key allows exactly one scheme. An RSA key allows three
hashes, and TLS 1.2 binds nothing: those report no scheme (``None``) rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa
from OpenSSL import SSL

from ..auth_policy import (
    ML_DSA_44,
    ML_DSA_65,
    ML_DSA_87,
    ML_DSA_SCHEMES,
    AuthPolicy,
    SignatureScheme,
    chain_is_post_quantum,
    client_refusal,
    scheme_by_codepoint,
)
from . import native

__all__ = [
    "AuthFacts",
    "Pair",
    "auth_facts",
    "client_refusal_reason",
    "client_side_facts",
    "pair_is_ml_dsa",
    "scheme_for_key",
    "server_side_facts",
    "sigalgs_list",
    "usable_pairs",
]

#: A certificate chain (leaf first) and the leaf's private key, as the context loaded them.
Pair = tuple[tuple[x509.Certificate, ...], Any]

#: OpenSSL's name of each scheme of :mod:`..auth_policy` that a list may name.
_OPENSSL_NAMES = {
    ML_DSA_44.codepoint: "mldsa44",
    ML_DSA_65.codepoint: "mldsa65",
    ML_DSA_87.codepoint: "mldsa87",
}
#: OpenSSL 3.5's default list after ML-DSA, without SHA-1 and DSA (refused at the security level
#: Python's defaults use anyway) and without GOST.
_CLASSICAL = (
    "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512:ed25519:ed448:"
    "ecdsa_brainpoolP256r1tls13_sha256:ecdsa_brainpoolP384r1tls13_sha384:"
    "ecdsa_brainpoolP512r1tls13_sha512:rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pkcs1_sha256:"
    "rsa_pkcs1_sha384:rsa_pkcs1_sha512:ECDSA+SHA224:RSA+SHA224"
)

_ML_DSA_PRIVATE = {
    mldsa.MLDSA44PrivateKey: ML_DSA_44,
    mldsa.MLDSA65PrivateKey: ML_DSA_65,
    mldsa.MLDSA87PrivateKey: ML_DSA_87,
}
_ML_DSA_PUBLIC = {
    mldsa.MLDSA44PublicKey: ML_DSA_44,
    mldsa.MLDSA65PublicKey: ML_DSA_65,
    mldsa.MLDSA87PublicKey: ML_DSA_87,
}
#: TLS 1.3 binds an ECDSA scheme to the curve (RFC 8446 4.2.3).
_ECDSA = {"secp256r1": 0x0403, "secp384r1": 0x0503, "secp521r1": 0x0603}


def sigalgs_list(policy: AuthPolicy) -> str:
    """The ``signature_algorithms`` both sides get: ML-DSA first unless ``off``. Under
    ``require`` a client still lists the classical schemes, so that a classical server answers
    with its certificate and the client can say exactly what it got (as on QUIC)."""
    if policy is AuthPolicy.OFF:
        return _CLASSICAL
    return ":".join(_OPENSSL_NAMES[s.codepoint] for s in ML_DSA_SCHEMES) + ":" + _CLASSICAL


def _ml_dsa_scheme(key: Any) -> SignatureScheme | None:
    for cls, scheme in (*_ML_DSA_PRIVATE.items(), *_ML_DSA_PUBLIC.items()):
        if isinstance(key, cls):
            return scheme
    return None


def pair_is_ml_dsa(pair: Pair) -> bool:
    """Whether the pair signs handshakes with ML-DSA."""
    return _ml_dsa_scheme(pair[1]) is not None


def usable_pairs(pairs: Sequence[Pair], policy: AuthPolicy) -> list[Pair]:
    """The pairs a server loads into OpenSSL under ``policy``: all of them under ``prefer``, the
    ML-DSA ones only under ``require`` (so a client that cannot verify ML-DSA finds no
    certificate and is refused in the handshake), the classical ones only under ``off``."""
    if policy is AuthPolicy.PREFER:
        return list(pairs)
    want_ml_dsa = policy is AuthPolicy.REQUIRE
    return [p for p in pairs if pair_is_ml_dsa(p) == want_ml_dsa]


def scheme_for_key(key: Any, tls13: bool) -> SignatureScheme | None:
    """The scheme a TLS 1.3 CertificateVerify made with ``key`` (public or private) must have
    used, or None where the key leaves a choice (RSA's hash, anything in TLS 1.2)."""
    if not tls13:
        return None
    scheme = _ml_dsa_scheme(key)
    if scheme is not None:
        return scheme
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        codepoint = _ECDSA.get(key.curve.name)
        return scheme_by_codepoint(codepoint) if codepoint is not None else None
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return scheme_by_codepoint(0x0807)
    if isinstance(key, (ed448.Ed448PublicKey, ed448.Ed448PrivateKey)):
        return scheme_by_codepoint(0x0808)
    return None


@dataclass(frozen=True)
class AuthFacts:
    """How the server of one TCP handshake authenticated (the same facts on both sides)."""

    scheme: SignatureScheme | None
    """The CertificateVerify scheme; None when resumed (no certificate was sent) or unknown."""
    post_quantum: bool
    """ML-DSA CertificateVerify and every presented certificate signed with ML-DSA; on a client
    also a chain that was verified (the rule of :mod:`..auth_policy`)."""
    leaf_pem: str | None = None
    """A server's own leaf as PEM (for the ASGI ``tls`` extension), worked out once per
    certificate; None on a client."""


NO_AUTH = AuthFacts(None, False)


def auth_facts(chain: Sequence[x509.Certificate], tls13: bool, verified: bool = True) -> AuthFacts:
    """The facts for a server that presented ``chain`` (leaf first)."""
    if not chain:
        return NO_AUTH
    scheme = scheme_for_key(chain[0].public_key(), tls13)
    post_quantum = (
        verified
        and scheme is not None
        and scheme.post_quantum
        and chain_is_post_quantum(c.signature_algorithm_oid.dotted_string for c in chain)
    )
    return AuthFacts(scheme, post_quantum)


def server_side_facts(connection: SSL.Connection, tls13: bool) -> AuthFacts:
    """What a server presented: the certificate OpenSSL chose (read by address, so each of the
    context's certificates is parsed once per context) and the chain loaded with it."""
    context = connection.get_context()
    cache: dict[tuple[int, bool], AuthFacts] | None = getattr(context, "pq_auth_cache", None)
    key = (native.own_certificate_id(connection), tls13)
    if cache is not None:
        facts = cache.get(key)
        if facts is not None:
            return facts
    leaf = connection.get_certificate(as_cryptography=True)
    if leaf is None:
        return NO_AUTH
    chains: dict[bytes, tuple[x509.Certificate, ...]] = getattr(context, "pq_chains", {})
    chain = chains.get(leaf.public_bytes(serialization.Encoding.DER), (leaf,))
    facts = auth_facts(chain, tls13)
    pem = leaf.public_bytes(serialization.Encoding.PEM).decode("ascii")
    facts = AuthFacts(facts.scheme, facts.post_quantum, pem)
    if cache is not None and key[0]:
        cache[key] = facts
    return facts


def _key_kind(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an ECDSA {key.curve.name} key"
    return f"a {type(key).__name__.removesuffix('PublicKey')} key"


def client_side_facts(connection: SSL.Connection, tls13: bool) -> AuthFacts:
    """What the server presented to this client (its whole chain, as sent)."""
    chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    verified = connection.get_verify_mode() != SSL.VERIFY_NONE
    return auth_facts(chain, tls13, verified)


def client_refusal_reason(connection: SSL.Connection, facts: AuthFacts) -> str | None:
    """Why a ``require`` client refuses this server, or None when the server authenticated with
    ML-DSA on an all-ML-DSA chain (as on QUIC, verification itself is ``verify``'s business)."""
    chain = connection.get_peer_cert_chain(as_cryptography=True) or []
    chain_pq = bool(chain) and chain_is_post_quantum(
        c.signature_algorithm_oid.dotted_string for c in chain
    )
    scheme = facts.scheme
    if scheme is not None and scheme.post_quantum and chain_pq:
        return None
    if scheme is None:  # RSA, or TLS 1.2: name the key instead of a scheme
        scheme = SignatureScheme(_key_kind(chain[0].public_key()) if chain else "no certificate", 0)
    return client_refusal(scheme, scheme.codepoint, chain_pq)
