"""HTTP/1.1 to origins (h11 over TCP): keep-alive pool, streamed bodies both ways.

The request body is sent as it arrives (``Transfer-Encoding: chunked`` unless the visitor gave a
``Content-Length``), with TCP backpressure (``drain``); the response body is read from the
socket only as the caller takes it. Connections are kept alive and reused per pool key:
``host:port`` for ``http://`` services, whose hop is plaintext inside the private network and
reported as classical; for ``https://`` services the TLS client (:mod:`.https`) hands in its
own key, connections and hop (with the group the handshake agreed on).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import h11

from ..config import Service
from ..headers import find, forwardable
from .errors import OriginError, plain
from .framing import latin1, wire_headers
from .request import OriginHop, OriginRequest, OriginResponse, PeekedBody, retrieve
from .sockets import PLAIN_HOP, READ_CHUNK, connect_limit, open_stream, plain_hop

__all__ = ["UNCHUNKED_LIMIT", "H1Client", "H1Connection", "H1Pool"]

#: Methods that get ``Content-Length: 0`` when they arrive without a body or a length.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: The most of a body of unknown length read whole under ``disableChunkedEncoding``.
UNCHUNKED_LIMIT = 16 * 1024 * 1024


class _Stale(Exception):
    """A reused keep-alive connection was closed by the origin before it answered."""


@dataclass
class H1Connection:
    """One TCP (or TLS) connection to an origin, its pool key, its hop and its h11 state."""

    key: Hashable
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hop: OriginHop = PLAIN_HOP
    conn: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    received: int = 0  # bytes of the current response
    keep: int | None = None  # idle connections its pool key keeps (None: the pool's default)

    def usable(self, now: float, max_idle: float) -> bool:
        return (
            now - self.idle_since < max_idle
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and self.conn.our_state is h11.IDLE
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(READ_CHUNK)
            self.received += len(data)
            self.conn.receive_data(data)


class H1Pool:
    """Idle keep-alive connections per pool key, at most ``max_idle`` of each."""

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self.closed = False
        self._idle: dict[Hashable, list[H1Connection]] = {}

    def take(self, key: Hashable, max_idle_seconds: float) -> H1Connection | None:
        """The most recently used connection that is still usable, or None."""
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            c = pool.pop()
            if c.usable(now, max_idle_seconds):
                return c
            c.close()
        return None

    def release(self, c: H1Connection) -> None:
        """A connection whose exchange completed cleanly goes back (or closes, if full: the
        rule's ``keepAliveConnections``, else the pool's ``max_idle``)."""
        pool = self._idle.setdefault(c.key, [])
        keep = self.max_idle if c.keep is None else c.keep
        if self.closed or len(pool) >= keep:
            c.close()
            return
        c.idle_since = time.monotonic()
        c.received = 0
        pool.append(c)

    def close(self) -> None:
        self.closed = True
        for pool in self._idle.values():
            for c in pool:
                c.close()
        self._idle.clear()


class H1Body(AsyncIterator[bytes]):
    """The response body from an HTTP/1.1 origin, read off the socket as it is taken."""

    def __init__(
        self, pool: H1Pool, c: H1Connection, upload: asyncio.Task[None], service: Service
    ) -> None:
        self._pool, self._c, self._upload, self._service = pool, c, upload, service
        self._done = False

    def __aiter__(self) -> H1Body:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            try:
                event = await self._c.next_event()
            except (OSError, h11.RemoteProtocolError) as exc:
                self._abort()
                failure = retrieve(self._upload)
                if failure is not None and not isinstance(failure, OSError):
                    raise failure from None  # the request body failed: that is the story
                raise OriginError(
                    502,
                    f"origin {self._service.text} broke off the response body: {plain(exc)}",
                ) from None
            if isinstance(event, h11.Data):
                if event.data:
                    return bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self._complete()
        raise StopAsyncIteration

    def _complete(self) -> None:
        self._done = True
        upload, c = self._upload, self._c
        if upload.done():
            self._release()
        elif c.conn.our_state is h11.DONE:
            # The request is all written; the upload task is only finishing its last drain.
            upload.add_done_callback(lambda _: self._release())
        else:
            # The origin answered without taking the whole request body: not reusable.
            upload.cancel()
            c.close()

    def _release(self) -> None:
        upload, c = self._upload, self._c
        if (
            not upload.cancelled()
            and retrieve(upload) is None
            and c.conn.our_state is h11.DONE
            and c.conn.their_state is h11.DONE
        ):
            c.conn.start_next_cycle()
            self._pool.release(c)
        else:
            c.close()

    def _abort(self) -> None:
        self._done = True
        if not self._upload.done():
            self._upload.cancel()
        retrieve(self._upload)
        self._c.close()

    async def aclose(self) -> None:
        if not self._done:
            self._abort()


class _Exchange:
    """One request and its response head on one connection: the upload runs alongside the
    wait for the head, so an origin that answers early (or echoes) cannot deadlock us."""

    def __init__(
        self,
        c: H1Connection,
        service: Service,
        request: h11.Request,
        body: PeekedBody,
        timeout: float,
    ) -> None:
        self.c, self.service, self.request, self.body = c, service, request, body
        self.timeout = timeout

    def _what(self) -> str:
        return f"{self.request.method.decode()} {self.request.target.decode()}"

    async def _write(self, data: bytes) -> None:
        writer = self.c.writer
        transport = writer.transport
        writer.write(data)
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
            # At or below the low-water mark the transport is not paused: drain() returns
            # at once (raising if the socket died) without yielding, so a small request is
            # written completely before the response can be read.
            await writer.drain()
            return
        try:
            await asyncio.wait_for(writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise OriginError(
                504,
                f"origin {self.service.text} stopped reading the request body for "
                f"{self.timeout:g}s",
            ) from None

    async def _upload(self) -> None:
        conn = self.c.conn
        try:
            await self._write(conn.send(self.request))
            async for chunk in self.body.chunks():
                await self._write(conn.send(h11.Data(data=chunk)))
            await self._write(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            self.c.close()
            raise OriginError(
                502,
                f"origin {self.service.text}: the request body does not match its "
                f"Content-Length ({exc})",
            ) from None
        except BaseException:
            self.c.close()  # the socket or the visitor's body failed (or we were cancelled)
            raise

    async def _head(self) -> h11.Response:
        while True:
            event = await self.c.next_event()
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")

    async def run(self, pool: H1Pool, hop: OriginHop) -> OriginResponse:
        uploading = asyncio.ensure_future(self._upload())
        reading = asyncio.ensure_future(self._head())
        try:
            response = await self._race_head(reading, uploading)
        except BaseException:
            for task in (uploading, reading):
                if not task.done():
                    task.cancel()
            self.c.close()
            for task in (uploading, reading):
                with contextlib.suppress(BaseException):
                    await task
            raise
        headers = forwardable(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers]
        )
        body = H1Body(pool, self.c, uploading, self.service)
        return OriginResponse(response.status_code, headers, body, hop)

    async def _race_head(
        self, reading: asyncio.Task[h11.Response], uploading: asyncio.Task[None]
    ) -> h11.Response:
        """Wait for the response head while the body goes up; the clock runs after the upload."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            waiting: set[asyncio.Future[Any]] = {reading}
            if not uploading.done():
                waiting.add(uploading)
            elif deadline is None:
                deadline = loop.time() + self.timeout
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            if reading in done:
                try:
                    return reading.result()
                except (OSError, h11.RemoteProtocolError) as exc:
                    failure = retrieve(uploading)
                    if failure is not None and not isinstance(failure, OSError):
                        raise failure from None
                    if self.c.received == 0:
                        raise _Stale() from None
                    raise OriginError(
                        502,
                        f"origin {self.service.text} sent no valid response to "
                        f"{self._what()}: {plain(exc)}",
                    ) from None
            if uploading in done:
                failure = retrieve(uploading)
                if failure is not None and not isinstance(failure, OSError):
                    raise failure
                # An OSError while uploading: the origin may still have answered; read on.
                continue
            if not done:
                raise OriginError(
                    504,
                    f"origin {self.service.text} did not answer {self._what()} within "
                    f"{self.timeout:g}s",
                )


#: Opens a new connection for a request (plain TCP, or TLS whose ALPN chose HTTP/1.1).
Connect = Callable[[], Awaitable[H1Connection]]


class H1Client:
    """Requests over pooled HTTP/1.1 connections.

    Keep-alive connections idle longer than ``keepalive`` seconds are not reused.
    """

    def __init__(self, connect_timeout: float, keepalive: float, max_idle_per_origin: int) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.pool = H1Pool(max_idle_per_origin)

    def close(self) -> None:
        self.pool.close()

    async def request(
        self,
        service: Service,
        request: OriginRequest,
        body: PeekedBody,
        *,
        key: Hashable | None = None,
        connect: Connect | None = None,
        fresh: H1Connection | None = None,
    ) -> OriginResponse:
        """Send ``request`` over a pooled connection, or a new one.

        Without ``key`` and ``connect`` the service is an ``http://`` one: pooled by
        ``host:port``, reached over plain TCP. ``fresh`` is a connection opened for this very
        request (the TLS client's, once ALPN chose HTTP/1.1), used before any pooled one.
        """
        pool_key: Hashable = _plain_key(service) if key is None else key
        open_new = connect or (lambda: self._connect(service, request))
        length = None
        if not request.chunked and request.body_length is None and not body.empty:
            body = await body.collected(UNCHUNKED_LIMIT, f"origin {service.text}")
            length = len(body.first or b"")
        # A kept-alive connection may have been closed by the origin just now. Reuse one only
        # when the request can be replayed (no body) or the connection was idle very briefly.
        keepalive = self.keepalive_for(request)
        max_idle = keepalive if body.empty else min(keepalive, 1.0)
        for attempt in (1, 2):
            reused = None
            if attempt == 1 and fresh is not None:
                c = fresh
            else:
                reused = self.pool.take(pool_key, max_idle) if attempt == 1 else None
                c = reused or await open_new()
            c.keep = request.keepalive_connections
            try:
                wire = _wire_request(service, request, body, c.hop, length)
            except OriginError:
                self.pool.release(c)  # nothing was sent: the connection is as good as before
                raise
            try:
                return await _Exchange(c, service, wire, body, request.timeout).run(
                    self.pool, c.hop
                )
            except _Stale:
                c.close()
                if reused is not None and body.empty:
                    continue
                raise OriginError(
                    502, f"origin {service.text} closed the connection without answering"
                ) from None
        raise AssertionError("unreachable")

    def keepalive_for(self, request: OriginRequest) -> float:
        """How long an idle connection may be reused: the rule's ``keepAliveTimeout``, else
        the client's."""
        if request.keepalive_timeout is None:
            return self.keepalive
        return request.keepalive_timeout

    async def _connect(self, service: Service, request: OriginRequest) -> H1Connection:
        limit = connect_limit(request, self.connect_timeout)
        reader, writer = await open_stream(service, limit)
        return H1Connection(_plain_key(service), reader, writer, hop=plain_hop(service))


def _plain_key(service: Service) -> Hashable:
    """The pool key of a service without TLS: its address, or its socket path."""
    return ("unix", service.socket_path) if service.is_unix else service.address


def _wire_request(
    service: Service,
    request: OriginRequest,
    body: PeekedBody,
    hop: OriginHop,
    length: int | None = None,
) -> h11.Request:
    """The request head as h11 sends it; the framing headers follow from the body (``length``:
    a body read whole for ``disableChunkedEncoding``, sent with that ``Content-Length``)."""
    out = request.headers_to_send(hop, service)
    if find(out, "content-length") is None:
        if length is not None:
            out.append(("content-length", str(length)))
        elif not body.empty:
            out.append(("transfer-encoding", "chunked"))
        elif request.method.upper() in BODY_METHODS:
            out.append(("content-length", "0"))
    try:
        return h11.Request(
            method=latin1(request.method, "method"),
            target=latin1(request.target(service), "path"),
            headers=wire_headers(out, lower=False),
        )
    except h11.LocalProtocolError as exc:
        raise OriginError(
            502, f"origin {service.text}: cannot send this request over HTTP/1.1: {exc}"
        ) from None
