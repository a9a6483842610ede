"""Which request and response headers a proxy hop may pass on: one rule for the edge and the
connector.

RFC 9110 section 7.6.1: headers that describe one connection (``Connection`` and the names it
lists, ``Keep-Alive``, ``TE`` apart from ``trailers``, ``Transfer-Encoding``, ``Upgrade``, the
``Proxy-*`` family) end at each hop. The edge and the connector used to carry their own lists and
they drifted apart (the edge forwarded ``Connection``-named and ``proxy-*`` headers); both call
:func:`forwardable` now, each with the few extra names only it owns in ``drop``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..asgi.types import HOPS_HEADER

__all__ = [
    "EDGE_REPLACES",
    "HOP_BY_HOP",
    "ORIGIN_ONLY",
    "find",
    "forwardable",
    "forwarding_headers",
]

#: Headers that describe one connection, never forwarded (plus ``proxy-*`` and whatever the
#: ``Connection`` header names). ``te: trailers`` is the one TE value that is passed on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: What the edge sets itself from what it saw, so a visitor cannot choose it: the host it
#: matched, the hop list, and the forwarding headers (:func:`forwarding_headers`). The others
#: here say who the client is or where the app is mounted and are honoured by common
#: frameworks (``X-Real-IP``, ``X-Forwarded-Prefix``, ...); a visitor must never set them, and
#: the edge does not set them either.
EDGE_REPLACES = frozenset(
    {
        "host",
        HOPS_HEADER,
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
    }
)

#: Response headers the edge does not pass on from the origin: its server name, its date
#: (the edge's server writes one ``date``), and its ``alt-svc``, which names the origin's
#: own port: a browser told ``h3=":PORT"`` would try that port on the edge's host.
ORIGIN_ONLY = frozenset({"alt-svc", "date", "server"})


def forwarding_headers(
    client: str, host: str, proto: str, port: int | None
) -> list[tuple[str, str]]:
    """What the edge tells the origin about a visitor: ``X-Forwarded-*`` and RFC 7239
    ``Forwarded``, written from one set of facts so they never disagree.

    ``host`` is the normalized host (an IPv6 address without brackets); ``port`` the public
    port the visitor reached, if known.
    """
    authority = f"[{host}]" if ":" in host else host
    node = f'"[{client}]"' if ":" in client else (client or "unknown")
    headers = [
        ("x-forwarded-for", client),
        ("x-forwarded-proto", proto),
        ("x-forwarded-host", authority),
    ]
    if port:
        headers.append(("x-forwarded-port", str(port)))
    headers.append(("forwarded", f'for={node};host="{authority}";proto={proto}'))
    return headers


def _connection_tokens(headers: Sequence[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for k, v in headers
        if k.lower() == "connection"
        for token in v.split(",")
        if token.strip()
    }


def forwardable(
    headers: Sequence[tuple[str, str]], *, drop: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """Without hop-by-hop headers, ``proxy-*``, pseudo-headers and the names in ``drop``."""
    named = _connection_tokens(headers)
    out = []
    for k, v in headers:
        name = k.strip().lower()
        if not name or name.startswith(":") or name in drop:
            continue
        if name == "te":
            if v.strip().lower() == "trailers":
                out.append((k, v))
            continue
        if name in HOP_BY_HOP or name.startswith("proxy-") or name in named:
            continue
        out.append((k, v))
    return out


def find(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (lower-case), or None."""
    return next((v for k, v in headers if k.lower() == name), None)
