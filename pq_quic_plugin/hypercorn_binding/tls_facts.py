"""The per-connection TLS facts that go into an ASGI scope.

Hypercorn fills no ``scope["extensions"]["tls"]`` at all. For HTTP/3 the facts come from the
QUIC connection's TLS context; for the TCP listener from Python's ``ssl`` object, which can tell
the version and cipher suite but never the key-exchange group, so that is stated in the scope
instead of guessed.
"""

from __future__ import annotations

import ssl
from typing import Any

from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives.serialization import Encoding

from ..aioquic_binding import negotiated_group

TLS_1_3 = 0x0304
_TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}
_TLS13_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
}
TCP_NOTE = (
    "key-exchange group unknown on TCP: Python's ssl module can neither choose nor report it, "
    "and this OpenSSL has no ML-KEM; only HTTP/3 (QUIC) connections are post-quantum here"
)


def quic_facts(quic: QuicConnection) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tls, pq_quic)`` extension dicts for an HTTP/3 connection."""
    ctx = quic.tls
    schedule = getattr(ctx, "key_schedule", None)
    cert = getattr(ctx, "certificate", None)
    tls_ext: dict[str, Any] = {
        "server_cert": cert.public_bytes(Encoding.PEM).decode("ascii") if cert else None,
        "tls_version": TLS_1_3,
        "cipher_suite": int(schedule.cipher_suite) if schedule is not None else None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
    }
    group = negotiated_group(quic)
    pq: dict[str, Any] = {
        "transport": "quic",
        "group": group.name if group else None,
        "codepoint": group.codepoint if group else None,
        "post_quantum": bool(group and group.post_quantum),
        "group_known": group is not None,
    }
    if group is None:
        pq["note"] = "this QUIC listener runs stock aioquic (post-quantum policy off)"
    return tls_ext, pq


def tcp_facts(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, server_cert: str | None = None
) -> tuple[dict | None, dict]:
    """``(tls, pq_quic)`` for the TCP listener; ``tls`` is None on plain HTTP."""
    pq: dict[str, Any] = {
        "transport": "tcp",
        "group": None,
        "codepoint": None,
        "post_quantum": False,
        "group_known": False,
        "note": TCP_NOTE,
    }
    if ssl_object is None:
        pq["note"] = "plain HTTP: no TLS at all"
        return None, pq
    cipher = ssl_object.cipher()
    tls_ext: dict[str, Any] = {
        "server_cert": server_cert,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": _TLS13_SUITES.get(cipher[0]) if cipher else None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
    }
    return tls_ext, pq


def add_to_scope(scope: dict, tls_ext: dict | None, pq: dict) -> None:
    extensions = scope.setdefault("extensions", {})
    if tls_ext is not None:
        extensions["tls"] = tls_ext
    extensions["pq_quic"] = pq
