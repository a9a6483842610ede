"""The ``originRequest`` field table: cloudflared's origin settings, one row per key.

Its own module only to keep ``fields.py`` short; ``fields.py`` imports it and lists it in
``TABLES``, so it is declared once like every other key, and ``docs.py`` documents it.
"""

from __future__ import annotations

from ...policy import Policy
from .kinds import (
    BoolValue,
    ChoiceValue,
    DurationValue,
    HostHeaderValue,
    HostnameValue,
    IntValue,
    PathValue,
)
from .origin_request import OriginSettings
from .table import ConfigField, FieldTable, ValueKind

__all__ = ["ORIGIN_REQUEST_FIELDS"]


def _origin(key: str, attr: str, kind: ValueKind, default_doc: str, doc: str) -> ConfigField:
    """An ``originRequest`` key: cloudflared's camelCase name; ``None`` when not given, so a
    rule's value can be laid over the top level's (``OriginSettings.over``)."""
    return ConfigField(key, attr, kind, doc, default_doc=default_doc)


ORIGIN_REQUEST_FIELDS = FieldTable(
    "origin-request",
    "originRequest",
    (
        _origin(
            "connectTimeout",
            "connect_timeout",
            DurationValue(),
            "`10s`",
            "how long connecting to the origin may take: the TCP (or Unix socket) connection, "
            "or the QUIC handshake of an HTTP/3 origin; over it the visitor gets a 504",
        ),
        _origin(
            "tlsTimeout",
            "tls_timeout",
            DurationValue(),
            "`10s`",
            "how long the TLS handshake with the origin may take once connected; over it the "
            "visitor gets a 504. TLS services only",
        ),
        _origin(
            "keepAliveTimeout",
            "keep_alive_timeout",
            DurationValue(),
            "`4s`",
            "a kept-alive connection to the origin (HTTP/1.1, or the HTTP/2 connection) idle "
            "longer than this is closed, not reused; a request whose body cannot be replayed "
            "reuses only one idle under 1s",
        ),
        _origin(
            "keepAliveConnections",
            "keep_alive_connections",
            IntValue(0, None),
            "`16`",
            "how many idle HTTP/1.1 connections to keep open per origin; one more is closed "
            "when its response ends; `0` keeps none (a connection per request)",
        ),
        _origin(
            "noTLSVerify",
            "no_tls_verify",
            BoolValue(),
            "`false`",
            "`true`: accept any certificate from the origin (neither its issuer nor its name "
            "is checked); the key exchange still follows `postQuantum`. TLS services only",
        ),
        _origin(
            "caPool",
            "ca_pool",
            PathValue(must_exist=True),
            "the system's trust store",
            "a CA (PEM) to trust for the origin's certificate (the rule's `origin-ca-file` "
            "says the same); relative to this file; must exist. TLS services only",
        ),
        _origin(
            "originServerName",
            "origin_server_name",
            HostnameValue(wildcard=False),
            "the service's host (`localhost` for `unix+tls:`)",
            "the TLS server name sent to the origin (SNI) and checked in its certificate (the "
            "rule's `origin-server-name` says the same). TLS services only",
        ),
        _origin(
            "httpHostHeader",
            "http_host_header",
            HostHeaderValue(),
            "the visitor's `Host`",
            "the `Host` header (HTTP/2 and HTTP/3: `:authority`) the origin gets, WebSockets "
            "included",
        ),
        _origin(
            "disableChunkedEncoding",
            "disable_chunked_encoding",
            BoolValue(),
            "`false`",
            "`true`: a request body of unknown length (no `Content-Length`) is read whole, up "
            "to 16 MiB (more gets a `413`), and sent to an HTTP/1.1 origin with a "
            "`Content-Length` instead of `Transfer-Encoding: chunked`, for servers that cannot "
            "read chunked bodies (many WSGI servers). HTTP/2 and HTTP/3 have no chunked "
            "encoding and are not affected",
        ),
        _origin(
            "http2Origin",
            "http2_origin",
            BoolValue(),
            "`false`",
            "`true`: HTTP/2 over TLS to the origin, the same as `origin-protocol: http2` (an "
            "origin that does not offer `h2` by ALPN is a 502). `false`: as `origin-protocol` "
            "says (`auto`: HTTP/2 when the origin offers it). TLS services only",
        ),
        _origin(
            "postQuantum",
            "post_quantum",
            ChoiceValue([p.value for p in Policy]),
            "`require` with `post-quantum: true`, else `prefer`",
            "the key exchange of the connector-origin hop (ours, not cloudflared's): `require` "
            "offers post-quantum groups only (a classical origin gets no request: 502, logged "
            "with the reason), `prefer` offers post-quantum first and accepts classical "
            "(logged), `off` offers classical groups only. TLS services only",
        ),
    ),
)
ORIGIN_REQUEST_FIELDS.check_dataclass(OriginSettings)
