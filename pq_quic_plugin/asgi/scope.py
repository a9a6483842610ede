"""Read the connection facts that hypercorn-pq (and the tunnel) put into an ASGI scope.

The contract (filled by :mod:`pq_quic_plugin.hypercorn_binding`, documented in
``docs/hypercorn.md``)::

    scope["extensions"]["tls"]     = {"tls_version": 0x0304, "cipher_suite": 0x1302, ...}
    scope["extensions"]["pq_quic"] = {"transport": "quic", "group": "X25519MLKEM768",
                                      "codepoint": 4588, "post_quantum": True,
                                      "group_known": True,
                                      "signature_scheme": "ML-DSA-65",
                                      "signature_scheme_codepoint": 2309,
                                      "post_quantum_auth": True,
                                      "hops": [...]}          # only behind pq-tunnel

Key exchange (``group``, ``post_quantum``) and authentication (``signature_scheme``,
``post_quantum_auth``: an ML-DSA signature on an all-ML-DSA chain) are separate facts.

Tolerant by design: a scope from a server that adds nothing (stock hypercorn, uvicorn), or adds
something malformed, yields "group unknown, not post-quantum" rather than an exception, so apps
can call :func:`connection_facts` unconditionally. It fails closed: ``post_quantum`` counts only
when it is literally ``True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CIPHER_SUITES",
    "TLS_VERSIONS",
    "ConnectionFacts",
    "connection_facts",
    "protocol_name",
]

#: IANA TLS version numbers, named the way Python's ``ssl`` names them.
TLS_VERSIONS: dict[int, str] = {
    0x0304: "TLSv1.3",
    0x0303: "TLSv1.2",
    0x0302: "TLSv1.1",
    0x0301: "TLSv1",
    0x0300: "SSLv3",
}

#: The TLS 1.3 cipher suites (RFC 8446 B.4), by IANA number.
CIPHER_SUITES: dict[int, str] = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
}

_PROTOCOLS = {"3": "HTTP/3", "2": "HTTP/2", "2.0": "HTTP/2", "1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}


def protocol_name(http_version: str) -> str:
    """``"3"`` -> ``"HTTP/3"``, ``"2"`` -> ``"HTTP/2"``, ``"1.1"`` -> ``"HTTP/1.1"``."""
    return _PROTOCOLS.get(http_version, f"HTTP/{http_version}" if http_version else "unknown")


@dataclass(frozen=True)
class ConnectionFacts:
    """What is known about the connection a request arrived on and, behind pq-tunnel, about
    every hop before it.

    ``hops`` are dicts as the tunnel reports them (``hop``, ``transport``, ``group``,
    ``post_quantum``, ``signature_scheme``, ``post_quantum_auth``, ...), copied out of the
    scope; ``post_quantum`` (and ``post_quantum_auth`` where given) in each is a real bool.
    """

    transport: str
    """``"quic"``, ``"tcp"`` or ``"unknown"`` (inferred from the HTTP version when the server
    did not say)."""
    http_version: str
    """As in the scope: ``"3"``, ``"2"``, ``"1.1"``; ``""`` for scopes without one (lifespan)."""
    group: str | None
    """IANA name of the negotiated key-exchange group, e.g. ``"X25519MLKEM768"``, ``"x25519"``."""
    codepoint: int | None
    post_quantum: bool
    group_known: bool
    tls_version: str | None
    """``"TLSv1.3"``; None on plain HTTP or when the server did not report it."""
    cipher_suite: int | None
    """IANA number, e.g. ``0x1302``."""
    cipher_suite_name: str | None
    """``"TLS_AES_256_GCM_SHA384"`` for the TLS 1.3 suites, else None."""
    hops: tuple[dict[str, Any], ...] = field(default=(), hash=False)
    note: str | None = None
    secure: bool = False
    """True when the request came over TLS (``tls`` extension present, or an https/wss scheme)."""
    signature_scheme: str | None = None
    """The server's CertificateVerify scheme, e.g. ``"ML-DSA-65"``, ``"ECDSA-P256-SHA256"``;
    None when the server did not report it (resumed session, Python's ``ssl``, stock hypercorn)."""
    signature_scheme_codepoint: int | None = None
    post_quantum_auth: bool = False
    """Whether the server authenticated post-quantum (ML-DSA, on an all-ML-DSA chain)."""

    @property
    def all_hops_post_quantum(self) -> bool:
        """True when this connection and every hop before it used post-quantum key exchange."""
        return self.post_quantum and all(h["post_quantum"] for h in self.hops)

    @property
    def classical_hops(self) -> list[dict[str, Any]]:
        """The hops that were not post-quantum (in order)."""
        return [h for h in self.hops if not h["post_quantum"]]

    @property
    def protocol(self) -> str:
        """``"HTTP/3"``, ``"HTTP/2"``, ``"HTTP/1.1"``."""
        return protocol_name(self.http_version)

    @property
    def verdict(self) -> str:
        """A short human verdict: ``"post-quantum"``, ``"post-quantum on every hop"``,
        ``"not post-quantum (group unknown on TCP)"``, ``"not post-quantum"``..."""
        if self.hops:
            if self.all_hops_post_quantum:
                return "post-quantum on every hop"
            return "not post-quantum (not every hop is post-quantum)"
        if self.post_quantum:
            return "post-quantum"
        if self.group is None and self.transport == "tcp":
            return "not post-quantum (group unknown on TCP)"
        if self.group is None:
            return "not post-quantum (group unknown)"
        return "not post-quantum"

    @property
    def auth_verdict(self) -> str:
        """``"post-quantum"``, ``"classical"`` or ``"not reported"`` for authentication
        (separate from :attr:`verdict`, which is about key exchange)."""
        if self.post_quantum_auth:
            return "post-quantum"
        return "classical" if self.signature_scheme else "not reported"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the example app's ``/api/connection``)."""
        return {
            "http_version": self.http_version,
            "protocol": self.protocol,
            "transport": self.transport,
            "group": self.group,
            "codepoint": self.codepoint,
            "post_quantum": self.post_quantum,
            "group_known": self.group_known,
            "tls_version": self.tls_version,
            "cipher_suite": self.cipher_suite,
            "cipher_suite_name": self.cipher_suite_name,
            "hops": [dict(h) for h in self.hops],
            "all_hops_post_quantum": self.all_hops_post_quantum,
            "verdict": self.verdict,
            "signature_scheme": self.signature_scheme,
            "signature_scheme_codepoint": self.signature_scheme_codepoint,
            "post_quantum_auth": self.post_quantum_auth,
            "auth_verdict": self.auth_verdict,
            "note": self.note,
        }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hops(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    hops = []
    for raw in value:
        if isinstance(raw, Mapping):
            hop = dict(raw)
            hop["post_quantum"] = raw.get("post_quantum") is True
            if "post_quantum_auth" in raw:  # fails closed, as post_quantum does
                hop["post_quantum_auth"] = raw.get("post_quantum_auth") is True
            hops.append(hop)
    return tuple(hops)


def _tls_version(value: Any) -> str | None:
    number = _int(value)
    if number is not None:
        return TLS_VERSIONS.get(number, f"0x{number:04x}")
    return _str(value)  # a server that reports "TLSv1.3" as text


def _transport(pq: Mapping[str, Any], http_version: str) -> str:
    transport = _str(pq.get("transport"))
    if transport:
        return transport
    if http_version == "3":
        return "quic"
    if http_version in ("1.0", "1.1", "2", "2.0"):
        return "tcp"
    return "unknown"


def connection_facts(scope: Mapping[str, Any]) -> ConnectionFacts:
    """Read :class:`ConnectionFacts` from an ASGI scope; never raises on a mapping."""
    extensions = _mapping(scope.get("extensions"))
    pq = _mapping(extensions.get("pq_quic"))
    has_tls = isinstance(extensions.get("tls"), Mapping)
    tls = _mapping(extensions.get("tls"))
    raw_version = scope.get("http_version")
    http_version = raw_version if isinstance(raw_version, str) else ""
    if not http_version and scope.get("type") in ("http", "websocket"):
        http_version = "1.1"  # the ASGI default
    group = _str(pq.get("group"))
    group_known = pq.get("group_known")
    suite = _int(tls.get("cipher_suite"))
    return ConnectionFacts(
        transport=_transport(pq, http_version),
        http_version=http_version,
        group=group,
        codepoint=_int(pq.get("codepoint")),
        post_quantum=pq.get("post_quantum") is True,
        group_known=group_known if isinstance(group_known, bool) else group is not None,
        tls_version=_tls_version(tls.get("tls_version")),
        cipher_suite=suite,
        cipher_suite_name=CIPHER_SUITES.get(suite) if suite is not None else None,
        hops=_hops(pq.get("hops")),
        note=_str(pq.get("note")),
        secure=has_tls or scope.get("scheme") in ("https", "wss"),
        signature_scheme=_str(pq.get("signature_scheme")),
        signature_scheme_codepoint=_int(pq.get("signature_scheme_codepoint")),
        post_quantum_auth=pq.get("post_quantum_auth") is True,
    )
