"""Several certificates per server, and the choice among them for each client.

aioquic holds one certificate and key per configuration. A server that wants post-quantum
authentication for new clients *and* service for old ones needs two: an ML-DSA chain for clients
that list ML-DSA in ``signature_algorithms`` and a classical (ECDSA) chain for the rest. A
:class:`Credential` is one such chain and key; :func:`choose_credential` is the per-client
decision, ruled by the authentication policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioquic import tls
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..auth_policy import (
    AuthPolicy,
    is_ml_dsa,
    scheme_by_codepoint,
    scheme_name,
    scheme_names,
    server_refusal,
)
from .reasons import bounded_reason
from .signatures import chain_signed_with_ml_dsa, schemes_for_private_key, sign


@dataclass(frozen=True)
class Credential:
    """One certificate chain (leaf first) and the leaf's private key."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: Any

    @classmethod
    def load(
        cls,
        certfile: str | Path,
        keyfile: str | Path | None = None,
        password: bytes | str | None = None,
    ) -> Credential:
        """Read a PEM chain (leaf first) and its key, as aioquic's ``load_cert_chain`` does."""
        certificates = tls.load_pem_x509_certificates(Path(certfile).read_bytes())
        if not certificates:
            raise ValueError(f"{certfile}: no PEM certificate found")
        key_pem = Path(keyfile).read_bytes() if keyfile is not None else Path(certfile).read_bytes()
        if isinstance(password, str):
            password = password.encode()
        key = serialization.load_pem_private_key(key_pem, password=password)
        credential = cls(certificates[0], tuple(certificates[1:]), key)
        credential.check()
        return credential

    def check(self) -> None:
        """Refuse a pair that could never complete a handshake: a key TLS 1.3 cannot sign with,
        or a key that is not the certificate's."""
        if not self.schemes:
            raise ValueError(
                f"the key for {self.certificate.subject.rfc4514_string()} cannot sign a TLS 1.3 "
                "handshake (use ML-DSA, ECDSA P-256/P-384, Ed25519, Ed448 or RSA)"
            )
        mine = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = self.certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if mine != theirs:
            raise ValueError(
                f"the private key does not belong to {self.certificate.subject.rfc4514_string()}"
            )

    @property
    def schemes(self) -> list[int]:
        return schemes_for_private_key(self.private_key)

    @property
    def ml_dsa(self) -> bool:
        """Whether this pair signs handshakes with ML-DSA."""
        return any(is_ml_dsa(cp) for cp in self.schemes)

    @property
    def post_quantum(self) -> bool:
        """ML-DSA key *and* every certificate of the chain signed with ML-DSA."""
        return self.ml_dsa and chain_signed_with_ml_dsa([self.certificate, *self.chain])

    def scheme_list(self) -> str:
        return ", ".join(scheme_name(cp) for cp in self.schemes)

    def certificate_message(self) -> tls.Certificate:
        return tls.Certificate(
            request_context=b"",
            certificates=[
                (c.public_bytes(serialization.Encoding.DER), b"")
                for c in (self.certificate, *self.chain)
            ],
        )

    def sign(self, codepoint: int, data: bytes) -> bytes:
        return sign(self.private_key, codepoint, data)


#: Where :func:`~.auth_config.configure_auth` keeps its :class:`AuthSettings` on a
#: ``QuicConfiguration`` (next to the key-exchange settings of :mod:`.hook`).
AUTH_ATTR = "_pq_quic_auth"


@dataclass(frozen=True)
class AuthSettings:
    """The authentication policy and the pairs a server holds beyond aioquic's own one."""

    policy: AuthPolicy = AuthPolicy.PREFER
    credentials: tuple[Credential, ...] = ()


#: What a connection gets when nobody called ``configure_auth`` (``install()``, or only
#: ``configure()``): offer and accept ML-DSA, and sign with whatever aioquic's pair is.
DEFAULT_AUTH = AuthSettings()


def choose_credential(
    credentials: Sequence[Credential], offered: Sequence[int] | None, policy: AuthPolicy
) -> tuple[Credential, int]:
    """Pick the pair and scheme for one ClientHello's ``signature_algorithms``.

    ``prefer`` and ``require``: the first ML-DSA pair whose scheme the client offers; otherwise
    ``require`` refuses and ``prefer`` falls back to the first classical pair the client can
    verify. ``off`` never uses an ML-DSA pair. Refusals are ``handshake_failure`` alerts whose
    reason names what the client offered (bounded) and what the server has.
    """
    offered = list(offered or [])
    if policy is not AuthPolicy.OFF:
        for credential in credentials:
            if credential.ml_dsa:
                for codepoint in credential.schemes:
                    if codepoint in offered:
                        return credential, codepoint
        if policy is AuthPolicy.REQUIRE:
            accepted = [
                s
                for c in credentials
                if c.ml_dsa
                for s in (scheme_by_codepoint(cp) for cp in c.schemes)
                if s is not None
            ]
            raise tls.AlertHandshakeFailure(bounded_reason(server_refusal(offered, accepted)))
    for credential in credentials:
        if not credential.ml_dsa:
            for codepoint in credential.schemes:
                if codepoint in offered:
                    return credential, codepoint
    usable = [c for c in credentials if policy is not AuthPolicy.OFF or not c.ml_dsa]
    has = ", ".join(c.scheme_list() for c in usable) or "none"
    raise tls.AlertHandshakeFailure(
        bounded_reason(
            f"No supported signature algorithm (client offered: {scheme_names(offered, 3)}; "
            f"server signs with: {has})"
        )
    )
