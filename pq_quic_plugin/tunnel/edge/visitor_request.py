"""What the edge takes from a visitor's request before routing it, and what it refuses.

Every request passes :func:`check_request` once, before any lookup or forwarding, so a bad one
costs the edge a bounded amount of work and gets a clear 4xx:

* a header list over the limits (:mod:`.limits`): ``431``;
* a ``Host`` (or ``:authority``) that names no valid host (:func:`hostnames.request_host`):
  ``400``, before the tunnel lookup, whose work grows with the name;
* ``Transfer-Encoding`` together with ``Content-Length``, a ``Content-Length`` that is not one
  number, or a ``Transfer-Encoding`` other than ``chunked``: ``400`` (RFC 9112 section 6.3:
  such a message is a request-smuggling vector, and a proxy that drops one header and forwards
  the other sends a length that does not describe the body);
* a path :func:`paths.normalize_path` refuses: ``400``.

What passes comes back as a :class:`VisitorRequest` holding the normalized host and path the
edge routes and forwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...asgi.types import Scope
from ..hostnames import request_host
from ..paths import normalize_path
from .limits import Refusal, header_problem

__all__ = ["VisitorRequest", "check_request"]


@dataclass(frozen=True)
class VisitorRequest:
    """A request the edge accepted: the host it names (normalized; ``""`` when it names none and
    the server's own address is unknown), its normalized path plus query, and the body length
    it declared (None: unknown, streamed)."""

    host: str
    path: str
    content_length: int | None
    #: The request can have no body: ``Content-Length: 0``, or HTTP/1.x with neither
    #: ``Content-Length`` nor ``Transfer-Encoding`` (RFC 9112 section 6.3). The edge then ends
    #: the tunnel stream with the request head, one write instead of two. (HTTP/2 and HTTP/3
    #: may send a body without a length: unknown there, False.)
    bodyless: bool = False


def check_request(scope: Scope) -> VisitorRequest | Refusal:
    """Accept ``scope`` (HTTP or WebSocket) as a :class:`VisitorRequest`, or say why not."""
    headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", [])
    problem = header_problem(headers)
    if problem is not None:
        return Refusal(431, f"Request header fields too large: {problem}.")
    host = _host(scope, headers)
    if host is None:
        return Refusal(400, "Bad request: the Host header does not name a valid host.")
    framing = _framing(headers)
    if isinstance(framing, Refusal):
        return framing
    length, chunked = framing
    raw = scope.get("raw_path") or scope.get("path", "/").encode()
    try:
        path = normalize_path(raw.decode("latin-1"))
    except ValueError as exc:
        return Refusal(400, f"Bad request: {exc}.")
    if scope.get("query_string"):
        path += "?" + scope["query_string"].decode("latin-1")
    bodyless = length == 0 or (
        length is None and not chunked and scope.get("http_version") in ("1.0", "1.1")
    )
    return VisitorRequest(host, path, length, bodyless)


def _host(scope: Scope, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The normalized host the request names, the server's address without one, or None when
    the named host is invalid."""
    for key, value in headers:
        if key in (b"host", b":authority"):
            return request_host(value.decode("latin-1")) or None
    server = scope.get("server")
    return str(server[0]) if server else ""


def _framing(headers: Sequence[tuple[bytes, bytes]]) -> tuple[int | None, bool] | Refusal:
    """The one body length the request declares and whether it is chunked, or why its framing
    is refused."""
    lengths: set[bytes] = set()
    chunked = False
    for key, value in headers:
        name = key.lower()
        if name == b"content-length":
            lengths.update(v.strip() for v in value.split(b","))
        elif name == b"transfer-encoding":
            if value.strip().lower() != b"chunked" or chunked:
                return Refusal(400, "Bad request: unsupported Transfer-Encoding.")
            chunked = True
    if not lengths:
        return None, chunked
    if chunked:
        return Refusal(400, "Bad request: both Transfer-Encoding and Content-Length are set.")
    if len(lengths) != 1:
        return Refusal(400, "Bad request: conflicting Content-Length values.")
    text = lengths.pop()
    if not (text.isdigit() and len(text) <= 18):
        return Refusal(400, "Bad request: Content-Length is not a number.")
    return int(text), False
