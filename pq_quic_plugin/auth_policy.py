"""Authentication policy and the names of TLS 1.3 signature schemes, for both transports.

Key exchange protects today's traffic from tomorrow's decryption; authentication is a separate
question: a certificate signed with ECDSA does not stop an impersonator who can forge ECDSA
signatures. So authentication has its own policy, ``off|prefer|require``, decided here and
nowhere else, and the scheme names users see ("ML-DSA-65", "ECDSA-P256-SHA256") come from one
table that the QUIC and TCP layers share.

*Post-quantum authentication* means more than an ML-DSA CertificateVerify: every certificate the
peer presented must be signed with ML-DSA too, or a forged classical signature on a leaf would
still let an attacker in. :func:`chain_is_post_quantum` is that rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .policy_level import PolicyLevel


class AuthPolicy(PolicyLevel):
    """How strongly a connection insists on post-quantum (ML-DSA) authentication."""

    OFF = "off"  # never offer or use ML-DSA (classical certificates only)
    PREFER = "prefer"  # ML-DSA when the peer can, a classical certificate otherwise
    REQUIRE = "require"  # ML-DSA or no connection at all

    @classmethod
    def _subject(cls) -> str:
        return "authentication"


@dataclass(frozen=True)
class SignatureScheme:
    """One TLS 1.3 SignatureScheme: its codepoint and the name this project reports."""

    name: str
    codepoint: int
    post_quantum: bool = False


#: ML-DSA in TLS 1.3 (draft-ietf-tls-mldsa): pure ML-DSA, empty FIPS 204 context string.
ML_DSA_44 = SignatureScheme("ML-DSA-44", 0x0904, post_quantum=True)
ML_DSA_65 = SignatureScheme("ML-DSA-65", 0x0905, post_quantum=True)
ML_DSA_87 = SignatureScheme("ML-DSA-87", 0x0906, post_quantum=True)

#: ML-DSA schemes in the order a client offers them (Chromium's order).
ML_DSA_SCHEMES = (ML_DSA_44, ML_DSA_65, ML_DSA_87)

#: Every scheme this project can name, post-quantum first.
SCHEMES: tuple[SignatureScheme, ...] = (
    *ML_DSA_SCHEMES,
    SignatureScheme("ECDSA-P256-SHA256", 0x0403),
    SignatureScheme("ECDSA-P384-SHA384", 0x0503),
    SignatureScheme("ECDSA-P521-SHA512", 0x0603),
    SignatureScheme("Ed25519", 0x0807),
    SignatureScheme("Ed448", 0x0808),
    SignatureScheme("RSA-PSS-RSAE-SHA256", 0x0804),
    SignatureScheme("RSA-PSS-RSAE-SHA384", 0x0805),
    SignatureScheme("RSA-PSS-RSAE-SHA512", 0x0806),
    SignatureScheme("RSA-PSS-PSS-SHA256", 0x0809),
    SignatureScheme("RSA-PSS-PSS-SHA384", 0x080A),
    SignatureScheme("RSA-PSS-PSS-SHA512", 0x080B),
    SignatureScheme("RSA-PKCS1-SHA256", 0x0401),
    SignatureScheme("RSA-PKCS1-SHA384", 0x0501),
    SignatureScheme("RSA-PKCS1-SHA512", 0x0601),
    SignatureScheme("RSA-PKCS1-SHA1", 0x0201),
    SignatureScheme("ECDSA-SHA1", 0x0203),
)
_BY_CODEPOINT = {s.codepoint: s for s in SCHEMES}

#: X.509 signature algorithm OIDs of ML-DSA-44/65/87 (RFC 9881).
ML_DSA_CERTIFICATE_OIDS = frozenset(
    {"2.16.840.1.101.3.4.3.17", "2.16.840.1.101.3.4.3.18", "2.16.840.1.101.3.4.3.19"}
)

#: A peer may list thousands of codepoints; logs and alert reasons name this many at most.
NAMES_SHOWN = 12


def scheme_by_codepoint(codepoint: int) -> SignatureScheme | None:
    return _BY_CODEPOINT.get(codepoint)


def scheme_name(codepoint: int) -> str:
    """A readable name for any codepoint, known or not (GREASE included)."""
    scheme = _BY_CODEPOINT.get(codepoint)
    if scheme is not None:
        return scheme.name
    if (codepoint & 0x0F0F) == 0x0A0A:
        return "GREASE"
    return f"0x{codepoint:04X}"


def scheme_names(codepoints: Iterable[int] | None, limit: int = NAMES_SHOWN) -> str:
    """Names of codepoints a peer sent, bounded in length: they end up in alerts and logs."""
    items = list(codepoints or [])
    names = [scheme_name(cp) for cp in items[:limit]]
    if len(items) > limit:
        names.append(f"and {len(items) - limit} more")
    return ", ".join(names) or "none"


def is_ml_dsa(codepoint: int) -> bool:
    scheme = _BY_CODEPOINT.get(codepoint)
    return scheme is not None and scheme.post_quantum


def chain_is_post_quantum(signature_oids: Iterable[str]) -> bool:
    """Whether every presented certificate (leaf first) is signed with ML-DSA."""
    oids = list(signature_oids)
    return bool(oids) and all(oid in ML_DSA_CERTIFICATE_OIDS for oid in oids)


#: Alert reasons name this many of the peer's schemes: the reason travels in a CONNECTION_CLOSE
#: that must fit one packet (see ``aioquic_binding/reasons.py``); logs name :data:`NAMES_SHOWN`.
NAMES_IN_ALERT = 3


def server_refusal(
    offered: Iterable[int] | None, accepted: Iterable[SignatureScheme], limit: int = NAMES_IN_ALERT
) -> str:
    """Why a ``require`` server turns a client away (short: it is sent in the alert)."""
    names = ", ".join(s.name for s in accepted) or "no ML-DSA certificate configured"
    return (
        f"client offered no ML-DSA signature scheme (offered: {scheme_names(offered, limit)}); "
        f"server auth policy is 'require' (accepts: {names})"
    )


def client_refusal(scheme: SignatureScheme | None, codepoint: int, chain_pq: bool) -> str:
    """Why a ``require`` client turns a server away, and what would fix it (short: it is sent
    in the alert; :data:`CLIENT_REFUSAL_HINT` goes into the log after it)."""
    if scheme is not None and scheme.post_quantum and not chain_pq:
        what = f"server signed with {scheme.name} but its certificate chain is not all ML-DSA"
        fix = "give the server an ML-DSA-signed chain"
    else:
        name = scheme.name if scheme is not None else scheme_name(codepoint)
        what = f"server authenticated with {name} (classical), not ML-DSA"
        fix = "give the server an ML-DSA certificate"
    return f"{what}; client auth policy is 'require': {fix} or use 'prefer'"


CLIENT_REFUSAL_HINT = (
    "`python -m pq_quic_plugin.devcert DIR --sig ml-dsa-65` makes a test chain. "
    "No connection was made."
)
