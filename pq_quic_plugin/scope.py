"""Reading the connection facts that hypercorn-pq (and the tunnel) put into an ASGI scope.

Tolerant by design: a scope from a server that adds nothing (stock hypercorn, uvicorn) yields
"unknown, not post-quantum" rather than an exception, so apps can call this unconditionally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TLS_VERSIONS = {0x0304: "TLSv1.3", 0x0303: "TLSv1.2", 0x0302: "TLSv1.1", 0x0301: "TLSv1"}
CIPHER_SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}


@dataclass(frozen=True)
class ConnectionFacts:
    """What is known about the connection a request arrived on (and, behind the tunnel, every
    hop before it)."""

    transport: str  # "quic", "tcp" or "unknown"
    http_version: str
    group: str | None
    codepoint: int | None
    post_quantum: bool
    group_known: bool
    tls_version: str | None
    cipher_suite: int | None
    cipher_suite_name: str | None
    hops: tuple[dict[str, Any], ...] = field(default=())
    note: str | None = None

    @property
    def all_hops_post_quantum(self) -> bool:
        """True when this connection and every hop before it used post-quantum key exchange."""
        if not self.post_quantum:
            return False
        return all(bool(h.get("post_quantum")) for h in self.hops)

    @property
    def protocol(self) -> str:
        return {"3": "HTTP/3", "2": "HTTP/2", "1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}.get(
            self.http_version, f"HTTP/{self.http_version}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "http_version": self.http_version,
            "protocol": self.protocol,
            "transport": self.transport,
            "group": self.group,
            "codepoint": self.codepoint,
            "post_quantum": self.post_quantum,
            "group_known": self.group_known,
            "tls_version": self.tls_version,
            "cipher_suite": self.cipher_suite_name,
            "hops": list(self.hops),
            "all_hops_post_quantum": self.all_hops_post_quantum,
        }


def connection_facts(scope: dict[str, Any]) -> ConnectionFacts:
    extensions = scope.get("extensions") or {}
    pq = extensions.get("pq_quic") or {}
    tls = extensions.get("tls") or {}
    version = tls.get("tls_version")
    suite = tls.get("cipher_suite")
    return ConnectionFacts(
        transport=str(pq.get("transport") or "unknown"),
        http_version=str(scope.get("http_version", "1.1")),
        group=pq.get("group"),
        codepoint=pq.get("codepoint"),
        post_quantum=bool(pq.get("post_quantum", False)),
        group_known=bool(pq.get("group_known", False)),
        tls_version=TLS_VERSIONS.get(version) if isinstance(version, int) else None,
        cipher_suite=suite if isinstance(suite, int) else None,
        cipher_suite_name=CIPHER_SUITES.get(suite) if isinstance(suite, int) else None,
        hops=tuple(h for h in pq.get("hops", ()) if isinstance(h, dict)),
        note=pq.get("note"),
    )
