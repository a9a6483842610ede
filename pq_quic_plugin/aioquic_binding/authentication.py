"""Post-quantum authentication inside aioquic's TLS engine: offer, choose, sign, verify, record.

aioquic 1.7 signs and verifies CertificateVerify with classical schemes only, and holds one
certificate. :class:`AuthenticationMixin` is the part of
:class:`~.context.PostQuantumContext` that changes that, without touching key exchange:

* a client offers ML-DSA-44/65/87 (0x0904-0x0906) in ``signature_algorithms`` unless the
  authentication policy is ``off``;
* a server chooses among its pairs per ClientHello (:func:`~.certificates.choose_credential`)
  and signs with the chosen key;
* a client verifies an ML-DSA CertificateVerify itself (aioquic's verifier has no ML-DSA row)
  and, under ``require``, refuses a server that did not authenticate post-quantum. Certificate
  chains signed with ML-DSA need nothing extra: aioquic checks them through pyOpenSSL on the
  OpenSSL bundled with ``cryptography``, which verifies ML-DSA (a bad signature is
  ``bad_certificate``);
* both sides record :attr:`pq_signature_scheme` and :attr:`pq_post_quantum_auth`.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aioquic import tls
from aioquic.buffer import Buffer

from ..auth_policy import (
    CLIENT_REFUSAL_HINT,
    ML_DSA_SCHEMES,
    AuthPolicy,
    SignatureScheme,
    client_refusal,
    is_ml_dsa,
    scheme_by_codepoint,
    scheme_name,
    scheme_names,
)
from .certificates import AUTH_ATTR, DEFAULT_AUTH, AuthSettings, Credential, choose_credential
from .reasons import bounded_reason
from .signatures import chain_signed_with_ml_dsa, verify_ml_dsa

logger = logging.getLogger("pq_quic_plugin.tls")


class AuthenticationMixin(tls.Context):
    """Signature schemes and certificates for :class:`~.context.PostQuantumContext`."""

    # Class-level defaults: a context is converted in place (``adopt``), and these hold until
    # :func:`apply_auth` and the handshake set them on the instance.
    pq_auth: AuthSettings = DEFAULT_AUTH
    pq_signature_scheme: SignatureScheme | None = None
    """The CertificateVerify scheme of this handshake (None before it, or when resumed)."""
    pq_presented_certificate: Any = None
    """The leaf a server sent (one of its pairs), for the facts; None on a client."""
    pq_post_quantum_auth: bool = False
    """ML-DSA CertificateVerify, and every presented certificate signed with ML-DSA; on a
    client, also a chain that was verified (``verify_mode`` is not ``CERT_NONE``)."""

    # ------------------------------------------------------------------------------ client

    def _pq_offered_signature_algorithms(self) -> list[int]:
        """What a ClientHello lists: ML-DSA first (as Chromium does), then aioquic's own."""
        classical = [cp for cp in self._signature_algorithms if not is_ml_dsa(cp)]
        if self.pq_auth.policy is AuthPolicy.OFF:
            return classical
        return [s.codepoint for s in ML_DSA_SCHEMES] + classical

    def _check_certificate_verify_signature(self, verify: tls.CertificateVerify) -> None:
        """aioquic's check, plus ML-DSA and, for a client under ``require``, the refusal."""
        assert self._peer_certificate is not None and self.key_schedule is not None
        ml_dsa = is_ml_dsa(verify.algorithm)
        chain_pq = chain_signed_with_ml_dsa([self._peer_certificate, *self._peer_certificate_chain])
        scheme = scheme_by_codepoint(verify.algorithm)
        if self._is_client and self.pq_auth.policy is AuthPolicy.REQUIRE:
            if not (ml_dsa and chain_pq):
                reason = client_refusal(scheme, verify.algorithm, chain_pq)
                logger.error("refusing server: %s. %s", reason, CLIENT_REFUSAL_HINT)
                raise tls.AlertHandshakeFailure(bounded_reason(reason))
        if ml_dsa:
            if verify.algorithm not in self._pq_offered_signature_algorithms():
                raise tls.AlertDecryptError(
                    "CertificateVerify has a signature algorithm we did not advertise"
                )
            verify_ml_dsa(
                self._peer_certificate,
                verify.algorithm,
                verify.signature,
                self.key_schedule.certificate_verify_data(
                    tls.SERVER_CONTEXT_STRING if self._is_client else tls.CLIENT_CONTEXT_STRING
                ),
            )
        else:
            super()._check_certificate_verify_signature(verify)
        if self._is_client:
            verified = self._verify_mode != ssl.CERT_NONE
            self._pq_record_auth(verify.algorithm, ml_dsa and chain_pq and verified)

    # ------------------------------------------------------------------------------ server

    def _pq_choose_credential(self, offered: list[int] | None) -> tuple[Credential, int]:
        """The pair and scheme for this client: aioquic's pair first, then the extra ones."""
        assert self.certificate is not None and self.certificate_private_key is not None
        own = Credential(
            self.certificate, tuple(self.certificate_chain), self.certificate_private_key
        )
        try:
            return choose_credential([own, *self.pq_auth.credentials], offered, self.pq_auth.policy)
        except tls.AlertHandshakeFailure as exc:
            logger.warning(
                "refusing handshake: %s (client offered: %s)", exc, scheme_names(offered)
            )
            raise

    def _pq_send_certificate(
        self, credential: Credential, codepoint: int, handshake_buf: Buffer
    ) -> None:
        """Certificate and CertificateVerify for the chosen pair (RFC 8446 4.4.2, 4.4.3)."""
        assert self.key_schedule is not None
        with tls.push_message(self.key_schedule, handshake_buf):
            tls.push_certificate(handshake_buf, credential.certificate_message())
        signature = credential.sign(
            codepoint, self.key_schedule.certificate_verify_data(tls.SERVER_CONTEXT_STRING)
        )
        with tls.push_message(self.key_schedule, handshake_buf):
            tls.push_certificate_verify(
                handshake_buf, tls.CertificateVerify(algorithm=codepoint, signature=signature)
            )
        self.pq_presented_certificate = credential.certificate
        self._pq_record_auth(codepoint, credential.post_quantum)

    # ------------------------------------------------------------------------------ both

    def _pq_record_auth(self, codepoint: int, post_quantum: bool) -> None:
        self.pq_signature_scheme = scheme_by_codepoint(codepoint) or SignatureScheme(
            scheme_name(codepoint), codepoint
        )
        self.pq_post_quantum_auth = post_quantum
        logger.info(
            "%s: authentication with %s, %s [%s]",
            "client" if self._is_client else "server",
            self.pq_signature_scheme.name,
            "post-quantum" if post_quantum else "NOT post-quantum",
            self.pq_auth.policy.value,
        )


def apply_auth(context: tls.Context, configuration: Any) -> None:
    """Give a freshly adopted context the authentication settings of its configuration."""
    if isinstance(context, AuthenticationMixin):
        context.pq_auth = getattr(configuration, AUTH_ATTR, None) or DEFAULT_AUTH


def _context_of(connection: Any) -> Any:
    conn = getattr(connection, "_quic", connection)
    return getattr(conn, "tls", conn)


def negotiated_signature_scheme(connection: Any) -> SignatureScheme | None:
    """The CertificateVerify scheme of a finished handshake, on either side, or None.

    Accepts a ``QuicConnection``, an aioquic protocol or a TLS context. None for stock aioquic
    (policy off) and for a resumed session (no CertificateVerify was sent).
    """
    ctx = _context_of(connection)
    return ctx.pq_signature_scheme if isinstance(ctx, AuthenticationMixin) else None


def post_quantum_auth(connection: Any) -> bool:
    """Whether the handshake authenticated the server post-quantum (see the attribute)."""
    ctx = _context_of(connection)
    return isinstance(ctx, AuthenticationMixin) and ctx.pq_post_quantum_auth
