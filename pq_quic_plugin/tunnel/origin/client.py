"""The connector's side toward the origin: HTTP/1.1 (``http://``) and HTTP/3 (``https://``).

Bodies stream both ways and nothing holds a whole body:

* ``http://HOST:PORT[/base]``: HTTP/1.1 over TCP (h11). The request body is sent as it arrives
  (``Transfer-Encoding: chunked`` unless the visitor gave a ``Content-Length``), with TCP
  backpressure (``drain``); the response body is read from the socket only as the caller takes
  it. Connections are kept alive and reused per ``host:port``. This hop is plaintext inside the
  private network and is reported as classical.
* ``https://HOST:PORT[/base]``: HTTP/3 with the connector's post-quantum policy
  (:mod:`pq_quic_plugin.http3.client`), one QUIC connection per origin shared by all requests
  and reopened when it closed. The hop reports the negotiated group, so it is post-quantum
  when the origin runs ``hypercorn-pq --pq``. Upload backpressure comes from the stream's send
  buffer, download backpressure from QUIC flow control granted as the caller reads.
* WebSockets go over HTTP/1.1: ``ws://`` for ``http://`` services and TLS over TCP (``wss://``,
  verified against the rule's origin CA) for ``https://`` services. WebSockets over HTTP/3
  (RFC 9220, extended CONNECT) are out of scope: hypercorn's aioquic stack does not offer them.
  That hop's key exchange is whatever Python's OpenSSL negotiates; it cannot be read back, so
  it is reported with ``group=None, post_quantum=False``.

Every failure to reach the origin or to get a well-formed response head raises
:class:`OriginError` with the status the visitor should get (502, or 504 for timeouts) and a
plain reason naming the origin URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from ...http3.client import HTTP3Error, HTTP3Session, client_configuration, open_session
from ...policy import Policy
from ..headers import find, forwardable

logger = logging.getLogger("pq_quic_plugin.tunnel.origin")

#: Headers the WebSocket handshake makes itself.
WEBSOCKET_OWN = frozenset({
    "host", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
})
#: Methods that get ``Content-Length: 0`` when they arrive without a body or a length.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
READ_CHUNK = 64 * 1024
HOP_NAME = "connector-origin"


class OriginError(Exception):
    """The origin could not be reached or answered badly.

    ``status`` is what the visitor gets (502, or 504 for a timeout); ``reason`` is a plain
    sentence that names the origin URL.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Hop:
    """The connector-to-origin hop, as the origin learns it in ``pq-tunnel-hops``."""

    name: str
    transport: str  # "http/1.1" or "quic"
    group: str | None
    post_quantum: bool
    tls: bool = False  # HTTP/1.1 over TLS (a wss:// WebSocket to an https:// service)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hop": self.name, "transport": self.transport,
                               "group": self.group, "post_quantum": self.post_quantum}
        if self.tls:
            out["tls"] = True
        return out


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
    hop: Hop

    async def aclose(self) -> None:
        close = getattr(self.body, "aclose", None)
        if close is not None:
            await close()


#: ``hops_callback``: given the origin hop (known once connected), the full header list to send.
HeadersFor = Callable[[Hop], list[tuple[str, str]]]


@dataclass(frozen=True)
class _Service:
    text: str
    scheme: str
    host: str
    port: int
    base: str

    @property
    def hostport(self) -> str:
        return _hostport(self.host, self.port)


def _service(service_url: str) -> _Service:
    try:
        parts = urlsplit(service_url)
        port = parts.port
    except ValueError as exc:
        raise OriginError(502, f"origin {service_url}: not a valid service URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OriginError(502, f"origin {service_url}: not a valid service URL "
                               "(use http://HOST:PORT or https://HOST:PORT)")
    default = 443 if parts.scheme == "https" else 80
    return _Service(service_url, parts.scheme, parts.hostname, port or default,
                    parts.path.rstrip("/"))


def join_path(base: str, path: str) -> str:
    """``/base`` + ``/x?y`` -> ``/base/x?y``; the request path keeps its query string."""
    if not path:
        path = "/"
    elif not path.startswith("/"):
        path = "/" + path
    base = base.rstrip("/")
    return base + path if base else path


def _with_host(headers: list[tuple[str, str]], host_header: str | None,
               service: _Service) -> list[tuple[str, str]]:
    """Keep the visitor's Host; ``host_header`` replaces it; the service's when there is none."""
    if host_header is not None:
        headers = [(k, v) for k, v in headers if k.lower() != "host"]
        return [("host", host_header), *headers]
    if find(headers, "host") is None:
        return [("host", service.hostport), *headers]
    return headers


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _plain(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


async def _peek(body: AsyncIterator[bytes]) -> tuple[bytes | None, AsyncIterator[bytes]]:
    """The first non-empty chunk (None: no body at all) and an iterator over the rest."""
    it = body.__aiter__()
    while True:
        try:
            chunk = await it.__anext__()
        except StopAsyncIteration:
            return None, it
        if chunk:
            return bytes(chunk), it


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        if chunk:
            yield chunk


def _retrieve(task: asyncio.Task[Any] | None) -> BaseException | None:
    """A finished task's exception (marking it retrieved), else None."""
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()


# ---------------------------------------------------------------------------- HTTP/1.1


class _Stale(Exception):
    """A reused keep-alive connection was closed by the origin before it answered."""


@dataclass
class _H1Connection:
    key: tuple[str, int]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    received: int = 0  # bytes of the current response

    def usable(self, now: float, max_idle: float) -> bool:
        return (now - self.idle_since < max_idle and not self.writer.is_closing()
                and not self.reader.at_eof() and self.conn.our_state is h11.IDLE)

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


class _H1Body(AsyncIterator[bytes]):
    """The response body from an HTTP/1.1 origin, read off the socket as it is taken."""

    def __init__(self, client: OriginClient, c: _H1Connection, upload: asyncio.Task[None],
                 service: _Service) -> None:
        self._client, self._c, self._upload, self._service = client, c, upload, service
        self._done = False

    def __aiter__(self) -> _H1Body:
        return self

    async def __anext__(self) -> bytes:
        while not self._done:
            try:
                event = await self._c.next_event()
            except (OSError, h11.RemoteProtocolError) as exc:
                self._abort()
                failure = _retrieve(self._upload)
                if failure is not None and not isinstance(failure, OSError):
                    raise failure from None  # the request body failed: that is the story
                raise OriginError(502, f"origin {self._service.text} broke off the response "
                                       f"body: {_plain(exc)}") from None
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
        if not upload.cancelled() and _retrieve(upload) is None \
                and c.conn.our_state is h11.DONE and c.conn.their_state is h11.DONE:
            c.conn.start_next_cycle()
            self._client._h1_release(c)
        else:
            c.close()

    def _abort(self) -> None:
        self._done = True
        if not self._upload.done():
            self._upload.cancel()
        _retrieve(self._upload)
        self._c.close()

    async def aclose(self) -> None:
        if not self._done:
            self._abort()


# ---------------------------------------------------------------------------- the client


@dataclass
class _Session:
    cm: Any
    session: HTTP3Session


class OriginClient:
    """One per connector: hands proxied requests to origins.

    ``policy`` is the post-quantum policy for ``https://`` (HTTP/3) origins: ``"prefer"`` (the
    default) or ``"require"`` (what the tunnel passes with ``--post-quantum``: only
    post-quantum groups are offered and a classical-only origin is refused, never used).
    ``connect_timeout`` bounds a TCP connect or a QUIC handshake; keep-alive HTTP/1.1
    connections idle longer than ``keepalive`` seconds are not reused.
    """

    def __init__(self, policy: str = "prefer", *, connect_timeout: float = 10.0,
                 keepalive: float = 4.0, max_idle_per_origin: int = 16) -> None:
        self.policy = Policy.parse(policy).value  # a bad policy fails here, not per request
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.max_idle_per_origin = max_idle_per_origin
        self._sessions: dict[tuple[str, int, str | None, str | None], _Session] = {}
        self._session_locks: dict[tuple[str, int, str | None, str | None], asyncio.Lock] = {}
        self._idle: dict[tuple[str, int], list[_H1Connection]] = {}
        self._closed = False

    async def aclose(self) -> None:
        """Close pooled connections (QUIC sessions and idle HTTP/1.1 connections)."""
        self._closed = True
        for pool in self._idle.values():
            for c in pool:
                c.close()
        self._idle.clear()
        sessions, self._sessions = list(self._sessions.values()), {}
        for entry in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(entry.cm.__aexit__(None, None, None), 5)

    # ------------------------------------------------------------------ HTTP

    async def request(
        self,
        service_url: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: AsyncIterator[bytes],
        *,
        origin_ca_file: str | None = None,
        origin_server_name: str | None = None,
        timeout: float = 30.0,
        hops_callback: HeadersFor | None = None,
        host_header: str | None = None,
    ) -> OriginResponse:
        """Send one request to the origin behind ``service_url``; return once the head is in.

        ``path`` is the visitor's path with its query; it is appended to the service's base
        path. ``headers`` keep the visitor's ``Host`` (``host_header`` replaces it);
        hop-by-hop headers are dropped. ``hops_callback``, when given, is called with the
        origin :class:`Hop` once the connection is up (so its group is known) and returns the
        header list to send instead of ``headers``. ``timeout`` bounds connecting, the wait
        for the response head once the request body has been sent, and any stall of the
        upload (the origin not taking request body bytes); the response body has no timeout.

        Raises :class:`OriginError` (502/504). An exception raised by ``body`` (say the
        visitor went away) is not an origin error: the origin request is cancelled and that
        exception propagates unchanged, here or from the response body iterator.
        """
        service = _service(service_url)
        target = join_path(service.base, path)
        first, rest = await _peek(body)
        if service.scheme == "https":
            return await self._h3(service, method, target, headers, first, rest,
                                  origin_ca_file, origin_server_name, timeout, hops_callback,
                                  host_header)
        return await self._h1(service, method, target, headers, first, rest, timeout,
                              hops_callback, host_header)

    # -- HTTP/3

    async def _h3_session(self, service: _Service, ca: str | None, sni: str | None,
                          timeout: float) -> HTTP3Session:
        key = (service.host, service.port, ca, sni)
        lock = self._session_locks.setdefault(key, asyncio.Lock())
        async with lock:  # one handshake per origin at a time; other origins do not wait
            entry = self._sessions.get(key)
            if entry is not None and not entry.session.closed:
                return entry.session
            if entry is not None:
                self._sessions.pop(key, None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(entry.cm.__aexit__(None, None, None), 1)
            limit = min(timeout, self.connect_timeout)
            where = f"{service.hostport} (UDP)"
            try:
                config = client_configuration(self.policy, cafile=ca,
                                              server_name=sni or service.host)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise OriginError(502, f"origin {service.text}: cannot use the origin CA file "
                                       f"{ca}: {_plain(exc)}") from None
            try:
                cm = open_session(f"https://{service.hostport}", config)
                session = await asyncio.wait_for(cm.__aenter__(), limit)
            except asyncio.TimeoutError:
                raise OriginError(504, f"origin {service.text}: no answer to the QUIC handshake "
                                       f"from {where} within {limit:g}s (is it serving HTTP/3 "
                                       "there?)") from None
            except HTTP3Error as exc:
                raise OriginError(502, f"origin {service.text}: QUIC handshake with {where} "
                                       f"failed: {exc}") from None
            except (ConnectionError, OSError, ssl.SSLError, ValueError) as exc:
                raise OriginError(502, f"origin {service.text}: cannot open an HTTP/3 "
                                       f"connection to {where}: {_plain(exc)}") from None
            self._sessions[key] = _Session(cm, session)
            group = session.group
            logger.info("origin %s: HTTP/3 connection up, key exchange %s (%s)", service.text,
                        group.name if group else "unknown",
                        "post-quantum" if group is not None and group.post_quantum
                        else "classical")
            return session

    async def _h3(self, service: _Service, method: str, target: str,
                  headers: list[tuple[str, str]], first: bytes | None,
                  rest: AsyncIterator[bytes], ca: str | None, sni: str | None, timeout: float,
                  hops_callback: HeadersFor | None, host_header: str | None) -> OriginResponse:
        for attempt in (1, 2):
            session = await self._h3_session(service, ca, sni, timeout)
            group = session.group
            hop = Hop(HOP_NAME, "quic", group.name if group else None,
                      bool(group is not None and group.post_quantum))
            chosen = hops_callback(hop) if hops_callback is not None else headers
            out = _with_host(forwardable(chosen), host_header, service)
            h3_headers = [(k.strip().lower().encode("latin-1", "replace"),
                           v.encode("latin-1", "replace")) for k, v in out]
            send_body = None if first is None else _chain(first, rest)
            try:
                status, head, chunks = await session.stream_request(
                    method, target, h3_headers, send_body, timeout=timeout)
            except asyncio.TimeoutError:
                raise OriginError(504, f"origin {service.text} did not answer {method} "
                                       f"{target} within {timeout:g}s") from None
            except HTTP3Error as exc:
                if attempt == 1 and session.closed and send_body is None:
                    continue  # the pooled connection died under us: one fresh try
                raise OriginError(502, f"origin {service.text}: HTTP/3 request failed: "
                                       f"{exc}") from None
            except ConnectionError as exc:
                raise OriginError(502, f"origin {service.text}: HTTP/3 request failed: "
                                       f"{_plain(exc)}") from None
            response_headers = forwardable(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in head])
            return OriginResponse(status, response_headers, _H3Body(chunks, service), hop)
        raise AssertionError("unreachable")

    # -- HTTP/1.1

    def _h1_take(self, key: tuple[str, int], max_idle: float) -> _H1Connection | None:
        pool = self._idle.get(key)
        now = time.monotonic()
        while pool:
            c = pool.pop()
            if c.usable(now, max_idle):
                return c
            c.close()
        return None

    def _h1_release(self, c: _H1Connection) -> None:
        pool = self._idle.setdefault(c.key, [])
        if self._closed or len(pool) >= self.max_idle_per_origin:
            c.close()
            return
        c.idle_since = time.monotonic()
        c.received = 0
        pool.append(c)

    async def _h1_connect(self, service: _Service, timeout: float) -> _H1Connection:
        reader, writer = await _open_tcp(service, min(timeout, self.connect_timeout))
        return _H1Connection((service.host, service.port), reader, writer)

    async def _h1(self, service: _Service, method: str, target: str,
                  headers: list[tuple[str, str]], first: bytes | None,
                  rest: AsyncIterator[bytes], timeout: float,
                  hops_callback: HeadersFor | None, host_header: str | None) -> OriginResponse:
        hop = Hop(HOP_NAME, "http/1.1", None, False)
        chosen = hops_callback(hop) if hops_callback is not None else headers
        out = _with_host(forwardable(chosen), host_header, service)
        if find(out, "content-length") is None:
            if first is not None:
                out.append(("transfer-encoding", "chunked"))
            elif method.upper() in BODY_METHODS:
                out.append(("content-length", "0"))
        try:
            request = h11.Request(method=method, target=target, headers=out)
        except h11.LocalProtocolError as exc:
            raise OriginError(502, f"origin {service.text}: cannot send this request over "
                                   f"HTTP/1.1: {exc}") from None
        # A kept-alive connection may have been closed by the origin just now. Reuse one only
        # when the request can be replayed (no body) or the connection was idle very briefly.
        max_idle = self.keepalive if first is None else min(self.keepalive, 1.0)
        for attempt in (1, 2):
            reused = self._h1_take((service.host, service.port), max_idle) \
                if attempt == 1 else None
            c = reused or await self._h1_connect(service, timeout)
            try:
                return await self._h1_exchange(c, service, request, first, rest, timeout, hop)
            except _Stale:
                c.close()
                if reused is not None and first is None:
                    continue
                raise OriginError(502, f"origin {service.text} closed the connection without "
                                       "answering") from None
        raise AssertionError("unreachable")

    async def _h1_exchange(self, c: _H1Connection, service: _Service, request: h11.Request,
                           first: bytes | None, rest: AsyncIterator[bytes], timeout: float,
                           hop: Hop) -> OriginResponse:
        conn, writer = c.conn, c.writer

        transport = writer.transport

        async def write(data: bytes) -> None:
            writer.write(data)
            if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[0]:
                # At or below the low-water mark the transport is not paused: drain() returns
                # at once (raising if the socket died) without yielding, so a small request is
                # written completely before the response can be read.
                await writer.drain()
                return
            try:
                await asyncio.wait_for(writer.drain(), timeout)
            except asyncio.TimeoutError:
                raise OriginError(504, f"origin {service.text} stopped reading the request "
                                       f"body for {timeout:g}s") from None

        async def upload() -> None:
            try:
                await write(conn.send(request))
                if first is not None:
                    await write(conn.send(h11.Data(data=first)))
                    async for chunk in rest:
                        if chunk:
                            await write(conn.send(h11.Data(data=chunk)))
                await write(conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError as exc:
                c.close()
                raise OriginError(502, f"origin {service.text}: the request body does not "
                                       f"match its Content-Length ({exc})") from None
            except OSError:
                c.close()
                raise
            except BaseException:
                c.close()  # the visitor's body failed (or we were cancelled): abort
                raise

        async def head() -> h11.Response:
            while True:
                event = await c.next_event()
                if isinstance(event, h11.Response):
                    return event
                if not isinstance(event, h11.InformationalResponse):
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")

        uploading = asyncio.ensure_future(upload())
        reading = asyncio.ensure_future(head())
        try:
            response = await self._race_head(reading, uploading, timeout, service, request, c)
        except BaseException:
            for task in (uploading, reading):
                if not task.done():
                    task.cancel()
            c.close()
            for task in (uploading, reading):
                with contextlib.suppress(BaseException):
                    await task
            raise
        response_headers = forwardable(
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers])
        return OriginResponse(response.status_code, response_headers,
                              _H1Body(self, c, uploading, service), hop)

    async def _race_head(self, reading: asyncio.Task[h11.Response],
                         uploading: asyncio.Task[None],
                         timeout: float, service: _Service, request: h11.Request,
                         c: _H1Connection) -> h11.Response:
        """Wait for the response head while the body goes up; the clock runs after the upload."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            waiting: set[asyncio.Future[Any]] = {reading}
            if not uploading.done():
                waiting.add(uploading)
            elif deadline is None:
                deadline = loop.time() + timeout
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(waiting, timeout=remaining,
                                         return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                try:
                    return reading.result()
                except (OSError, h11.RemoteProtocolError) as exc:
                    failure = _retrieve(uploading)
                    if failure is not None and not isinstance(failure, OSError):
                        raise failure from None
                    if c.received == 0:
                        raise _Stale() from None
                    raise OriginError(502, f"origin {service.text} sent no valid response to "
                                           f"{request.method.decode()} "
                                           f"{request.target.decode()}: {_plain(exc)}") from None
            if uploading in done:
                failure = _retrieve(uploading)
                if failure is not None and not isinstance(failure, OSError):
                    raise failure
                # An OSError while uploading: the origin may still have answered; read on.
                continue
            if not done:
                raise OriginError(504, f"origin {service.text} did not answer "
                                       f"{request.method.decode()} {request.target.decode()} "
                                       f"within {timeout:g}s")

    # ------------------------------------------------------------------ WebSocket

    async def websocket(
        self,
        service_url: str,
        path: str,
        headers: list[tuple[str, str]],
        subprotocols: list[str],
        *,
        origin_ca_file: str | None = None,
        origin_server_name: str | None = None,
        timeout: float = 30.0,
        host_header: str | None = None,
        hops_callback: HeadersFor | None = None,
    ) -> OriginWebSocket:
        """Open a WebSocket to the origin over HTTP/1.1 (wsproto).

        ``http://`` services get ``ws://``; ``https://`` services get TLS over TCP (``wss://``)
        on the same host and port, verified against ``origin_ca_file`` (system roots when
        None) and ``origin_server_name``. WebSockets over HTTP/3 (RFC 9220) are out of scope:
        hypercorn's HTTP/3 stack does not offer them, so this hop's key exchange is Python
        OpenSSL's TLS and is reported as ``group=None, post_quantum=False`` even under the
        ``require`` policy (the origin sees that in the hop list).

        ``hops_callback`` works as for :meth:`request` (called with the WebSocket's hop).

        Returns an :class:`OriginWebSocket` whose ``status`` is 101 when accepted or the
        origin's refusal status. Raises :class:`OriginError` when the origin cannot be
        reached or gives no valid handshake answer.
        """
        service = _service(service_url)
        tls = service.scheme == "https"
        limit = min(timeout, self.connect_timeout)
        context: ssl.SSLContext | None = None
        if tls:
            try:
                context = ssl.create_default_context(cafile=origin_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise OriginError(502, f"origin {service.text}: cannot load the origin CA "
                                       f"file {origin_ca_file}: {_plain(exc)}") from None
            context.set_alpn_protocols(["http/1.1"])
        reader, writer = await _open_tcp(service, limit, context,
                                         (origin_server_name or service.host) if tls else None)
        hop = Hop(HOP_NAME, "http/1.1", None, False, tls=tls)
        chosen = hops_callback(hop) if hops_callback is not None else headers
        host = host_header or find(chosen, "host") or service.hostport
        extra = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                 for k, v in forwardable(chosen, drop=WEBSOCKET_OWN)]
        ws = WSConnection(ConnectionType.CLIENT)
        origin = OriginWebSocket(ws, reader, writer, hop, service)
        try:
            writer.write(ws.send(Request(host=host, target=join_path(service.base, path),
                                         subprotocols=list(subprotocols),
                                         extra_headers=extra)))
            await asyncio.wait_for(origin._handshake(), timeout)
        except asyncio.TimeoutError:
            origin._abort()
            raise OriginError(504, f"origin {service.text} did not answer the WebSocket "
                                   f"handshake within {timeout:g}s") from None
        except OriginError:
            origin._abort()
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, wsproto protocol errors
            origin._abort()
            raise OriginError(502, f"origin {service.text}: WebSocket handshake failed: "
                                   f"{_plain(exc)}") from None
        return origin


async def _open_tcp(
    service: _Service,
    limit: float,
    context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (or TLS) connection to the origin; failures become an :class:`OriginError` that
    names the origin and says what to check."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(
            service.host, service.port, ssl=context, limit=READ_CHUNK,
            server_hostname=server_hostname), limit)
    except asyncio.TimeoutError:
        raise OriginError(504, f"origin {service.text}: no {'TLS ' if context else 'TCP '}"
                               f"connection to {service.hostport} within {limit:g}s") from None
    except ssl.SSLError as exc:
        raise OriginError(502, f"origin {service.text}: TLS with {service.hostport} "
                               f"failed: {exc.reason or exc}") from None
    except OSError as exc:
        if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
            reason = f"{service.hostport} refused the connection (is the origin running?)"
        else:
            reason = f"cannot connect to {service.hostport}: {_plain(exc)}"
        raise OriginError(502, f"origin {service.text}: {reason}") from None


class _H3Body(AsyncIterator[bytes]):
    """Turns HTTP/3 stream failures into :class:`OriginError` for the caller."""

    def __init__(self, chunks: AsyncIterator[bytes], service: _Service) -> None:
        self._chunks, self._service = chunks, service

    def __aiter__(self) -> _H3Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except HTTP3Error as exc:
            raise OriginError(502, f"origin {self._service.text} broke off the response body: "
                                   f"{exc}") from None

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


# ---------------------------------------------------------------------------- WebSocket


class OriginWebSocket:
    """A WebSocket to the origin: whole messages in, whole messages out.

    ``receive()`` returns ``str`` or ``bytes`` messages and ``None`` once the connection is
    closed (then ``close_code``/``close_reason`` say how; 1006 when it just dropped). At most
    :attr:`QUEUE` messages wait unread: after that the socket is not read, so a slow consumer
    slows the origin down instead of filling memory. Messages sent after the close are
    dropped. Pings are answered automatically.
    """

    QUEUE = 16

    def __init__(self, ws: WSConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, hop: Hop, service: _Service) -> None:
        self._ws, self._reader, self._writer = ws, reader, writer
        self._service = service
        self.hop = hop
        self.status = 0
        self.subprotocol: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""  # the refusal's body (status != 101), at most 64 KiB
        self.close_code: int | None = None
        self.close_reason = ""
        self._queue: asyncio.Queue[str | bytes | None] = asyncio.Queue(self.QUEUE)
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self._pump: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._finished = False  # None queued for the reader
        self._eof = False  # the reader got None
        self._rejecting = False  # reading a refusal's body

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def _handshake(self) -> None:
        await self._writer.drain()
        pending: list[Any] = []
        while self.status == 0 or (self.status != 101 and self._rejecting):
            data = await self._reader.read(READ_CHUNK)
            if not data:
                if self.status:
                    break  # a refusal whose body ends with the connection
                raise OriginError(502, f"origin {self._service.text} closed the connection "
                                       "during the WebSocket handshake")
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    self.status, self.subprotocol = 101, event.subprotocol
                    self.headers = _decoded(event.extra_headers)
                elif isinstance(event, RejectConnection):
                    self.status = event.status_code
                    self.headers = _decoded(event.headers)
                    self._rejecting = event.has_body
                elif isinstance(event, RejectData):
                    if len(self.body) < 65536:
                        self.body += bytes(event.data)[: 65536 - len(self.body)]
                    if event.body_finished:
                        self._rejecting = False
                elif self.status == 101:
                    pending.append(event)  # a message in the same read as the 101
        if self.status != 101:
            self._closed.set()
            self._finish()
            return
        for event in pending:
            await self._handle(event)
        self._pump = asyncio.ensure_future(self._read_loop())

    async def _handle(self, event: Any) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                await self._queue.put("".join(self._text))
                self._text.clear()
        elif isinstance(event, BytesMessage):
            self._bytes.append(bytes(event.data))
            if event.message_finished:
                await self._queue.put(b"".join(self._bytes))
                self._bytes.clear()
        elif isinstance(event, Ping):
            self._write(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self.close_code is None:
                self.close_code, self.close_reason = event.code, event.reason or ""
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._write(self._ws.send(event.response()))
            self._closed.set()

    async def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                self._ws.receive_data(data)
                for event in self._ws.events():
                    await self._handle(event)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # noqa: BLE001 - a protocol violation by the origin
            logger.warning("origin %s: WebSocket error: %s", self._service.text, exc)
            if self.close_code is None:
                self.close_code = 1002
        finally:
            if self.close_code is None:
                self.close_code = 1006  # closed without a close frame
            self._closed.set()
            self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        with contextlib.suppress(Exception):
            self._writer.close()
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            # The reader is behind; it gets None after the queued messages.
            asyncio.ensure_future(self._queue.put(None))

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    def _abort(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        with contextlib.suppress(Exception):
            self._writer.close()

    async def send(self, message: str | bytes) -> None:
        """Send one message (waits while the origin is not reading: TCP backpressure)."""
        if self._ws.state is not ConnectionState.OPEN or self._writer.is_closing():
            return
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        self._write(self._ws.send(event))
        with contextlib.suppress(OSError):
            await self._writer.drain()

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the WebSocket is closed."""
        if self._eof:
            return None
        message = await self._queue.get()
        if message is None:
            self._eof = True
        return message

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Close with ``code``; waits (up to ``timeout``) for the origin's close frame."""
        if self._ws.state is ConnectionState.OPEN and not self._writer.is_closing():
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            with contextlib.suppress(OSError):
                await self._writer.drain()
            if self.close_code is None:
                self.close_code, self.close_reason = code, reason
            if self._pump is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), timeout)
        self._abort()
        self._closed.set()
        self._finish()


def _decoded(headers: Any) -> list[tuple[str, str]]:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in headers or []]
