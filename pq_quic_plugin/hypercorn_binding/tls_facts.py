"""The per-connection TLS facts that go into an ASGI scope.

Hypercorn fills no ``scope["extensions"]["tls"]`` at all. For HTTP/3 the facts come from the
QUIC connection's TLS context; for the TCP listener from the connection's TLS object: the
post-quantum layer's (``pq`` prefer/require), which reports the negotiated group like QUIC does,
or Python's ``ssl`` (``pq`` off), which cannot report it, so that is stated in the scope instead
of guessed. ``tls`` follows the ASGI TLS extension on both transports.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..aioquic_binding import negotiated_group
from ..aioquic_binding.authentication import negotiated_signature_scheme, post_quantum_auth
from ..auth_policy import SignatureScheme
from ..groups.base import Group

TLS_1_3 = 0x0304
_TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}
#: IANA numbers of the suites OpenSSL may name: TLS 1.3's, and the TLS 1.2 ECDHE AEAD suites
#: (hypercorn's default ``ciphers`` is ``ECDHE+AESGCM``).
_CIPHER_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
}
TCP_STDLIB_NOTE = (
    "key-exchange group unknown: this TCP listener runs Python's ssl (post-quantum policy off), "
    "which can neither choose nor report it; hypercorn-pq --pq makes TCP post-quantum too"
)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


def _group_facts(
    transport: str,
    group: Group | None,
    scheme: SignatureScheme | None = None,
    post_quantum_auth: bool = False,
) -> dict[str, Any]:
    """Key exchange (``group``, ``post_quantum``) and authentication (``signature_scheme``,
    ``post_quantum_auth``): two separate questions, reported side by side."""
    return {
        "transport": transport,
        "group": group.name if group else None,
        "codepoint": group.codepoint if group else None,
        "post_quantum": bool(group and group.post_quantum),
        "group_known": group is not None,
        "signature_scheme": scheme.name if scheme else None,
        "signature_scheme_codepoint": scheme.codepoint if scheme and scheme.codepoint else None,
        "post_quantum_auth": bool(post_quantum_auth),
    }


def _tls_extension(
    server_cert: str | None,
    version: int | None,
    suite: int | None,
    client_chain: list[str] | None = None,
) -> dict[str, Any]:
    chain = client_chain or []
    name = None
    if chain:
        name = x509.load_pem_x509_certificate(chain[0].encode("ascii")).subject.rfc4514_string()
    return {
        "server_cert": server_cert,
        "tls_version": version,
        "cipher_suite": suite,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,  # a certificate that failed verification fails the handshake
    }


def quic_facts(quic: QuicConnection) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tls, pq_quic)`` extension dicts for an HTTP/3 connection."""
    ctx = quic.tls
    schedule = getattr(ctx, "key_schedule", None)
    # The leaf this handshake presented (the ML-DSA or the classical pair), else aioquic's own.
    cert = getattr(ctx, "pq_presented_certificate", None) or getattr(ctx, "certificate", None)
    tls_ext = _tls_extension(
        cert.public_bytes(Encoding.PEM).decode("ascii") if cert else None,
        TLS_1_3,
        int(schedule.cipher_suite) if schedule is not None else None,
    )
    pq = _group_facts(
        "quic",
        negotiated_group(quic),
        negotiated_signature_scheme(quic),
        post_quantum_auth(quic),
    )
    if not pq["group_known"]:
        pq["note"] = "this QUIC listener runs stock aioquic (post-quantum policy off)"
    return tls_ext, pq


def _post_quantum_object(tls: Any) -> Any:
    """The post-quantum layer's TLS object behind ``tls`` (itself, or a trio ``SSLStream``'s),
    or None for Python's ``ssl``. The layer is looked up, not imported: with policy off it may
    be absent (no ML-KEM in this OpenSSL), and then no connection can be one of its own."""
    tls_binding = sys.modules.get("pq_quic_plugin.tls_binding")
    return tls_binding.tls_object_of(tls) if tls_binding is not None else None


def _client_chain(tls: Any) -> list[str]:
    """The client's certificates as PEM, leaf first; empty when it sent none."""
    try:
        leaf = tls.getpeercert(binary_form=True)
    except (ValueError, AttributeError):
        return []
    if not leaf:
        return []
    unverified = getattr(tls, "get_unverified_chain", None)  # the layer, and ssl on 3.13+
    ders = list(unverified()) if callable(unverified) else []
    ders = ders or [leaf]
    return [
        x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM).decode("ascii")
        for der in ders
    ]


def tcp_facts(tls: Any, server_cert: str | None = None) -> tuple[dict | None, dict]:
    """``(tls, pq_quic)`` for the TCP listener; ``tls`` is None on plain HTTP.

    ``tls`` is the connection's TLS object, or a trio ``SSLStream`` (which forwards
    ``cipher``, ``version`` and ``getpeercert`` to it); ``server_cert`` the PEM of the listener's
    certificate file, of which the first certificate is reported.
    """
    if tls is None:
        pq = _group_facts("tcp", None)
        pq["note"] = "plain HTTP: no TLS at all"
        return None, pq
    post_quantum = _post_quantum_object(tls)
    if post_quantum is None:
        pq = _group_facts("tcp", None)
        pq["note"] = TCP_STDLIB_NOTE
    else:
        pq = _group_facts(
            "tcp",
            post_quantum.pq_group,
            post_quantum.signature_scheme(),
            post_quantum.pq_post_quantum_auth,
        )
        server_cert = post_quantum.server_certificate_pem or server_cert
    cipher = tls.cipher()
    first_cert = _PEM_CERT.search(server_cert) if server_cert else None
    tls_ext = _tls_extension(
        first_cert.group(0) if first_cert else server_cert,
        _TLS_VERSIONS.get(tls.version() or ""),
        _CIPHER_SUITES.get(cipher[0]) if cipher else None,
        _client_chain(post_quantum if post_quantum is not None else tls),
    )
    return tls_ext, pq


def add_to_scope(scope: dict, tls_ext: dict | None, pq: dict) -> None:
    extensions = scope.setdefault("extensions", {})
    if tls_ext is not None:
        extensions["tls"] = tls_ext
    extensions["pq_quic"] = pq
