"""What crosses the origin client's boundary: the request, the response head, the hop, the error.

These are shared by the HTTP/1.1, HTTP/3 and WebSocket paths, so they live apart from all
three; the connector builds an :class:`OriginRequest` and gets an :class:`OriginResponse` (or an
:class:`OriginError`) back whichever protocol the service speaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...asgi.types import Hop
from ...groups.base import Group
from ..config import Service
from ..headers import find, forwardable
from ..hop_auth import auth_of
from ..hostnames import format_hostport
from .errors import OriginError
from .framing import body_length, without_stale_length

__all__ = [
    "HOP_NAME",
    "HeadersFor",
    "OriginError",
    "OriginHop",
    "OriginRequest",
    "OriginResponse",
    "join_path",
]

HOP_NAME = "connector-origin"


@dataclass(frozen=True)
class OriginHop:
    """The connector-to-origin hop, as the origin learns it in ``pq-tunnel-hops``.

    A dataclass rather than the :class:`~pq_quic_plugin.asgi.types.Hop` mapping so responses
    can carry it and tests compare it; :meth:`as_dict` gives the wire form. ``transport`` is
    ``"tcp"`` or ``"quic"``, as on the visitor-edge hop; ``http_version`` says what ran over it
    (``"1.1"``, ``"2"``, ``"3"``) and ``tls`` marks TLS over TCP (``https://`` services).
    """

    name: str
    transport: str  # "tcp" or "quic"
    group: str | None
    post_quantum: bool
    tls: bool = False
    http_version: str | None = None
    signature_scheme: str | None = None  # the origin's CertificateVerify scheme (hop_auth.py)
    post_quantum_auth: bool = False

    @classmethod
    def over(
        cls,
        transport: str,
        group: Group | None = None,
        *,
        http_version: str | None = None,
        tls: bool = False,
        connection: Any = None,
    ) -> OriginHop:
        """The hop over ``transport`` that negotiated ``group`` (None: no key exchange, or
        not known), authenticated as ``connection``'s handshake says (None: no TLS); every
        origin path reports its hop this one way."""
        post_quantum = bool(group is not None and group.post_quantum)
        scheme, pq_auth = auth_of(connection) if connection is not None else (None, False)
        return cls(
            HOP_NAME,
            transport,
            group.name if group else None,
            post_quantum,
            tls=tls,
            http_version=http_version,
            signature_scheme=scheme.name if scheme is not None else None,
            post_quantum_auth=pq_auth,
        )

    def as_dict(self) -> Hop:
        out: Hop = {
            "hop": self.name,
            "transport": self.transport,
            "group": self.group,
            "post_quantum": self.post_quantum,
            "signature_scheme": self.signature_scheme,
            "post_quantum_auth": self.post_quantum_auth,
        }
        if self.http_version is not None:
            out["http_version"] = self.http_version
        if self.tls:
            out["tls"] = True
        return out


#: Given the origin hop (known only once connected, so its group is known), the full header
#: list to send; the connector uses it to append that hop to ``pq-tunnel-hops``.
HeadersFor = Callable[[OriginHop], list[tuple[str, str]]]


@dataclass(frozen=True)
class OriginRequest:
    """One request for the origin: where the ingress rule sends it and what the visitor asked.

    ``service`` is the rule's parsed service or its URL text (parsed once and cached).
    ``path`` is the visitor's path with its query; it is appended to the service's base path.
    ``headers`` keep the visitor's ``Host`` (``host_header`` replaces it); hop-by-hop headers
    are dropped on the way. ``body`` None means no body. ``headers_for``, when given, replaces
    ``headers`` with what it returns for the origin hop. ``ca_file`` and ``server_name``
    verify an ``https://`` origin (system roots and the service's host when None).
    ``protocol`` is the rule's ``origin-protocol``: ``auto`` (``https://``: TLS over TCP,
    HTTP/2 when the origin offers it by ALPN, else HTTP/1.1; ``http://``: HTTP/1.1),
    ``http1``, ``http2`` (``https://`` only) or ``http3`` (QUIC, ``https://`` only).
    ``timeout`` bounds the wait for the response head once the request body has been sent,
    and any stall of the upload; the response body has no timeout.

    The rest are a rule's ``originRequest`` (``None``: the client's own setting):
    ``connect_timeout`` and ``tls_timeout`` bound connecting and the TLS handshake (504 when
    over); ``verify`` False accepts any origin certificate (``noTLSVerify``); ``policy`` is the
    origin hop's key-exchange policy (``postQuantum``); ``keepalive_timeout`` and
    ``keepalive_connections`` say how long and how many idle connections are kept;
    ``chunked`` False sends a body of unknown length with a ``Content-Length``, read whole
    (``disableChunkedEncoding``). ``host_header`` is ``httpHostHeader``.
    """

    service: Service | str
    method: str = "GET"
    path: str = "/"
    headers: Sequence[tuple[str, str]] = ()
    body: AsyncIterator[bytes] | None = None
    ca_file: str | None = None
    server_name: str | None = None
    timeout: float = 30.0
    headers_for: HeadersFor | None = None
    host_header: str | None = None
    protocol: str = "auto"
    connect_timeout: float | None = None
    tls_timeout: float | None = None
    verify: bool = True
    policy: str | None = None
    keepalive_timeout: float | None = None
    keepalive_connections: int | None = None
    chunked: bool = True

    def headers_with(self, hop: OriginHop) -> list[tuple[str, str]]:
        """The headers to send once the hop is known (``headers_for``'s, else ``headers``)."""
        if self.headers_for is not None:
            return self.headers_for(hop)
        return list(self.headers)

    def headers_to_send(self, hop: OriginHop, service: Service) -> list[tuple[str, str]]:
        """:meth:`headers_with` as every protocol sends them: without hop-by-hop headers, with
        at most one ``Content-Length`` and none when ``Transfer-Encoding`` framed the body
        (:func:`~.framing.without_stale_length`), with the ``Host`` that :func:`with_host`
        picks."""
        out = without_stale_length(self.body_length, forwardable(self.headers_with(hop)))
        return with_host(out, self.host_header, service)

    @property
    def body_length(self) -> int | None:
        """The body's declared length (None: it ends with the stream), from ``headers``."""
        return body_length(self.headers)

    def target(self, service: Service) -> str:
        """The path to ask the origin for: the service's base path, then the visitor's."""
        return join_path(service.base_path, self.path)


@dataclass
class OriginResponse:
    """A response head from the origin; ``body`` yields the body as it arrives.

    Iterating ``body`` to the end releases the connection (HTTP/1.1: back to the pool). A body
    that breaks off raises :class:`OriginError` from the iterator. ``aclose()`` stops early and
    cancels the origin request (HTTP/3: RESET_STREAM/STOP_SENDING; HTTP/1.1: the connection is
    closed); it is safe to call at any time, also after the end.
    """

    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    hop: OriginHop

    async def aclose(self) -> None:
        close = getattr(self.body, "aclose", None)
        if close is not None:
            await close()


def join_path(base: str, path: str) -> str:
    """``/base`` + ``/x?y`` -> ``/base/x?y``; the request path keeps its query string."""
    if not path:
        path = "/"
    elif not path.startswith("/"):
        path = "/" + path
    base = base.rstrip("/")
    return base + path if base else path


def with_host(
    headers: list[tuple[str, str]], host_header: str | None, service: Service
) -> list[tuple[str, str]]:
    """Keep the visitor's Host; ``host_header`` replaces it; the service's when there is none."""
    if host_header is not None:
        headers = [(k, v) for k, v in headers if k.lower() != "host"]
        return [("host", host_header), *headers]
    if find(headers, "host") is None:
        own = "localhost" if service.is_unix else format_hostport(service.host, service.port)
        return [("host", own), *headers]
    return headers


class PeekedBody:
    """A request body whose first chunk has been read.

    Both paths must know before sending the head whether a body exists at all (HTTP/1.1 picks
    ``Content-Length: 0`` or chunked, HTTP/3 ends the stream with the head), without holding
    more than one chunk.
    """

    def __init__(self, first: bytes | None, rest: AsyncIterator[bytes]) -> None:
        self.first = first
        self.rest = rest

    @classmethod
    async def of(cls, body: AsyncIterator[bytes] | None) -> PeekedBody:
        """Read up to the first non-empty chunk (``first`` None: no body at all)."""
        if body is None:
            return cls(None, _nothing())
        it = body.__aiter__()
        while True:
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                return cls(None, it)
            if chunk:
                return cls(bytes(chunk), it)

    @property
    def empty(self) -> bool:
        return self.first is None

    async def collected(self, limit: int, what: str) -> PeekedBody:
        """The whole body as one chunk (for an origin that cannot take it chunked); over
        ``limit`` bytes it is a 413 for ``what`` (the origin), never a body held unbounded."""
        parts, size = [], 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise OriginError(
                    413,
                    f"{what}: the request body is over {limit} bytes and has no Content-Length; "
                    "disableChunkedEncoding needs it whole",
                )
            parts.append(chunk)
        return PeekedBody(b"".join(parts) or None, _nothing())

    async def chunks(self) -> AsyncIterator[bytes]:
        """Every non-empty chunk, the peeked one first."""
        if self.first is None:
            return
        yield self.first
        async for chunk in self.rest:
            if chunk:
                yield chunk


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def retrieve(task: asyncio.Future[Any] | None) -> BaseException | None:
    """A finished task's exception (marking it retrieved), else None."""
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()
