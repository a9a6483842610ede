"""A small HTTP/3 client on aioquic with a post-quantum policy, for the demo, tests and tunnel.

It exists because every hop that this project makes post-quantum needs a client that can say
which group it negotiated; general-purpose HTTP/3 clients do not expose that.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from ..aioquic_binding import configure, negotiated_group
from ..aioquic_binding.facade import quic_of, send_buffered
from ..aioquic_binding.flow_control import ReceiveCredit
from ..groups.base import Group
from ..policy import Policy

SEND_BUFFER_HIGH = 512 * 1024  # bytes queued per stream before an upload waits


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    group: Group | None
    http_version: str = "3"

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k == key:
                return v.decode("latin-1")
        return None


@dataclass
class _Pending:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    done: asyncio.Future[None] | None = None
    queue: asyncio.Queue[bytes | None] | None = None
    upload: asyncio.Task[None] | None = None
    ended: bool = False
    # Streaming requests (stream_request) only: a reset stream or a closed connection ends the
    # body with ``error`` rather than silently, and 1xx heads are skipped.
    strict: bool = False
    error: BaseException | None = None
    stop_sending: bool = False


class HTTP3Error(ConnectionError):
    """The connection ended before a response; carries the peer's reason when there was one."""


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending: dict[int, _Pending] = {}
        self.terminated: events.ConnectionTerminated | None = None
        self._progress: list[asyncio.Future[None]] = []
        # Streamed responses (stream_request) get a window that opens as the reader takes
        # chunks, so a slow reader of a fast response holds at most one window.
        self.credit = ReceiveCredit.of(self._quic)

    # -- flow control for streamed bodies (see pq_quic_plugin.aioquic_binding.flow_control)

    def consumed(self, stream_id: int, size: int) -> None:
        """The reader took ``size`` bytes of a streamed response: grant credit when due."""
        if self.credit.consumed(stream_id, size) and self.terminated is None:
            self.transmit()  # writes MAX_STREAM_DATA

    def send_buffered(self, stream_id: int) -> int:
        """Bytes written to ``stream_id`` that the peer has not acknowledged yet."""
        return send_buffered(self._quic, stream_id)

    async def wait_progress(self, timeout: float = 0.05) -> None:
        """Wait until a datagram arrives (acknowledgements, credit) or ``timeout`` passes."""
        waiter = asyncio.get_running_loop().create_future()
        self._progress.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            if waiter in self._progress:
                self._progress.remove(waiter)

    def _wake(self) -> None:
        waiters, self._progress = self._progress, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        if self._progress:
            self._wake()

    async def wait_connected(self) -> None:
        try:
            await super().wait_connected()
        except asyncio.CancelledError:
            # A handshake abandoned (say by a timeout) fails its waiter later, when nobody
            # listens any more: mark that failure as seen so asyncio does not report it.
            waiter = self._connected_waiter
            if waiter is not None:
                waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise

    # -- events

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.ConnectionTerminated):
            self.terminated = event
            reason = event.reason_phrase or "connection closed"
            for p in self.pending.values():
                if p.strict and p.error is None and not p.ended:
                    p.error = HTTP3Error(f"connection closed before the response ended: {reason}")
                if p.done is not None and not p.done.done():
                    p.done.set_exception(HTTP3Error(reason))
                if p.queue is not None:
                    p.queue.put_nowait(None)
            self._wake()
        elif isinstance(event, events.StreamReset):
            reset = self.pending.get(event.stream_id)
            if reset is not None and reset.strict:
                self.fail(reset, HTTP3Error(
                    f"the server reset the stream (HTTP/3 error 0x{event.error_code:x})"))
        elif isinstance(event, events.StopSendingReceived):
            stopped = self.pending.get(event.stream_id)
            if stopped is not None:
                stopped.stop_sending = True  # the server wants no more request body
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def fail(self, pending: _Pending, error: BaseException) -> None:
        """End a streaming request with ``error`` (raised by the head wait or the body)."""
        if pending.ended or pending.error is not None:
            return
        pending.error = error
        if pending.done is not None and not pending.done.done():
            pending.done.set_exception(error)
            pending.done.exception()  # retrieved: no "never retrieved" warning if unused
        if pending.queue is not None:
            pending.queue.put_nowait(None)

    def _h3_event(self, event: H3Event) -> None:
        pending = self.pending.get(getattr(event, "stream_id", -1))
        if pending is None:
            return
        if pending.strict and (pending.error is not None or pending.ended):
            return
        if isinstance(event, HeadersReceived):
            if pending.strict and not pending.headers and _informational(event.headers):
                return  # 1xx: the final head follows
            if not pending.headers:
                pending.headers = list(event.headers)
                if pending.done is not None and pending.queue is not None:
                    pending.done.set_result(None)  # streaming: headers are enough
        elif isinstance(event, DataReceived):
            if pending.queue is not None:
                if event.data or not pending.strict:
                    self.credit.delivered(event.stream_id, len(event.data))
                    pending.queue.put_nowait(event.data)
            else:
                pending.body += event.data
        if getattr(event, "stream_ended", False):
            if pending.strict and not pending.headers:
                self.fail(pending, HTTP3Error("the stream ended without a response head"))
                return
            pending.ended = True
            if pending.queue is not None:
                pending.queue.put_nowait(None)
            if pending.done is not None and not pending.done.done():
                pending.done.set_result(None)


def _informational(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    status = dict(headers).get(b":status", b"")
    return len(status) == 3 and status.startswith(b"1")


def client_configuration(
    policy: Policy | str = Policy.PREFER,
    groups: Sequence[str] | None = None,
    cafile: str | None = None,
    server_name: str | None = None,
    verify: bool = True,
) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=server_name)
    if cafile:
        config.load_verify_locations(cafile)
    if not verify:
        config.verify_mode = ssl.CERT_NONE
    if Policy.parse(policy) is not Policy.OFF:
        configure(config, policy, groups=groups)
    return config


class HTTP3Session:
    """One QUIC connection; several requests (also concurrent) can share it."""

    def __init__(self, protocol: _Protocol, authority: str) -> None:
        self._protocol = protocol
        self.authority = authority

    @property
    def group(self) -> Group | None:
        return negotiated_group(self._protocol)

    @property
    def closed(self) -> bool:
        return self._protocol.terminated is not None

    def _send_request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        more_body: bool = False,
    ) -> int:
        quic = quic_of(self._protocol)
        stream_id = quic.get_next_available_stream_id()
        authority = self.authority.encode()
        rest = []
        for k, v in headers:  # HTTP/3 carries the host in :authority
            if k.lower() == b"host":
                authority = v
            else:
                rest.append((k, v))
        self._protocol.h3.send_headers(
            stream_id,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", path.encode()),
                *rest,
            ],
            end_stream=not body and not more_body,
        )
        if body:
            self._protocol.h3.send_data(stream_id, body, end_stream=True)
        self._protocol.transmit()
        return stream_id

    async def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
        timeout: float = 30.0,
    ) -> Response:
        loop = asyncio.get_running_loop()
        pending = _Pending(done=loop.create_future())
        stream_id = self._send_request(method, path, headers, body)
        self._protocol.pending[stream_id] = pending
        try:
            assert pending.done is not None
            await asyncio.wait_for(pending.done, timeout)
        finally:
            self._protocol.pending.pop(stream_id, None)
        status = int(dict(pending.headers).get(b":status", b"0"))
        headers_out = [(k, v) for k, v in pending.headers if not k.startswith(b":")]
        return Response(status, headers_out, bytes(pending.body), self.group)

    async def stream(
        self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        """Start a request and return the response head plus an iterator over the body."""
        return await self.stream_request(method, path, headers, None)

    async def stream_request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: AsyncIterator[bytes] | None,
        timeout: float = 60.0,
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        """Stream a request body (with backpressure) and the response body, concurrently.

        ``body`` None sends the head with END_STREAM (no body). Otherwise the upload runs in its
        own task so an origin that answers while still reading (an echo) cannot deadlock
        against us; it stops taking chunks from ``body`` while more than
        :data:`SEND_BUFFER_HIGH` bytes wait unacknowledged. A ``host`` header becomes
        ``:authority``. ``timeout`` bounds the wait for the response head once the request
        body has been sent (a long upload does not count) and any stall of the upload (the
        server taking no body bytes); on timeout (``asyncio.TimeoutError``) or any other
        failure the stream is cancelled.

        The returned iterator is a :class:`ResponseBody`: it raises :class:`HTTP3Error` when
        the server resets the stream or the connection closes before the body ended (a silent
        end always means a complete body), grants the server credit only as chunks are taken
        (bounded memory for a slow reader), and ``await body.aclose()`` cancels the request.
        If ``body`` raises, the stream is cancelled and that exception is raised here or from
        the response body iterator.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(done=loop.create_future(), queue=asyncio.Queue(), strict=True)
        stream_id = self._send_request(method, path, headers, None, more_body=body is not None)
        self._protocol.pending[stream_id] = pending
        self._protocol.credit.track(stream_id)
        if body is not None:
            pending.upload = asyncio.ensure_future(
                self._upload(stream_id, body, pending, timeout)
            )
        assert pending.done is not None
        try:
            if pending.upload is not None:  # the clock starts when the body is sent
                await asyncio.wait(
                    {pending.done, pending.upload}, return_when=asyncio.FIRST_COMPLETED
                )
            await asyncio.wait_for(asyncio.shield(pending.done), timeout)
        except BaseException:
            self._abandon(stream_id, pending)
            raise
        status = int(dict(pending.headers).get(b":status", b"0"))
        headers_out = [(k, v) for k, v in pending.headers if not k.startswith(b":")]
        return status, headers_out, ResponseBody(self, stream_id, pending)

    async def _upload(
        self, stream_id: int, body: AsyncIterator[bytes], pending: _Pending, timeout: float
    ) -> None:
        protocol = self._protocol
        loop = asyncio.get_running_loop()

        def stopped() -> bool:
            return (
                protocol.terminated is not None
                or pending.error is not None
                or pending.stop_sending
            )

        try:
            async for chunk in body:
                if stopped():
                    return
                if not chunk:
                    continue
                protocol.h3.send_data(stream_id, bytes(chunk), end_stream=False)
                protocol.transmit()
                buffered, since = protocol.send_buffered(stream_id), loop.time()
                while buffered > SEND_BUFFER_HIGH and not stopped():
                    await protocol.wait_progress()
                    now = protocol.send_buffered(stream_id)
                    if now < buffered:
                        buffered, since = now, loop.time()
                    elif loop.time() - since > timeout:
                        self.cancel(stream_id)
                        protocol.fail(pending, asyncio.TimeoutError(
                            f"the server took no request body for {timeout:g}s"))
                        return
            if not stopped():
                protocol.h3.send_data(stream_id, b"", end_stream=True)
                protocol.transmit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller's body failed: cancel the request
            if stopped():
                return  # the stream was already over; nothing to report
            self.cancel(stream_id)
            protocol.fail(pending, exc)

    def _abandon(self, stream_id: int, pending: _Pending) -> None:
        """Forget a streaming request; cancel it on the wire unless it completed."""
        self._protocol.pending.pop(stream_id, None)
        self._protocol.credit.release(stream_id)
        upload = pending.upload
        if upload is not None and not upload.done():
            upload.cancel()
        if not pending.ended or (upload is not None and not upload.done()):
            if self._protocol.terminated is None:
                self.cancel(stream_id)

    def cancel(self, stream_id: int) -> None:
        """Abort a request in both directions."""
        quic = quic_of(self._protocol)
        for action in (quic.reset_stream, quic.stop_stream):
            try:
                action(stream_id, ErrorCode.H3_REQUEST_CANCELLED)
            except Exception:  # noqa: BLE001 - already finished
                pass
        self._protocol.transmit()


class ResponseBody(AsyncIterator[bytes]):
    """The body of a :meth:`HTTP3Session.stream_request` response, chunk by chunk.

    Ends quietly only when the server ended the stream; a reset or a closed connection raises
    :class:`HTTP3Error`. ``aclose()`` before the end cancels the request (RESET_STREAM and
    STOP_SENDING), so the server stops producing.
    """

    def __init__(self, session: HTTP3Session, stream_id: int, pending: _Pending) -> None:
        self._session = session
        self._protocol = session._protocol
        self.stream_id = stream_id
        self._pending = pending
        self._finished = False

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        pending = self._pending
        if self._finished:
            raise StopAsyncIteration
        assert pending.queue is not None
        chunk = await pending.queue.get()
        if chunk is None:
            self._finish()
            if pending.error is not None:
                raise pending.error
            if not pending.ended:
                raise HTTP3Error("connection closed before the response ended")
            raise StopAsyncIteration
        self._protocol.consumed(self.stream_id, len(chunk))
        return chunk

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._session._abandon(self.stream_id, self._pending)

    async def aclose(self) -> None:
        self._finish()


class open_session:  # noqa: N801 - used as ``async with open_session(...)``
    """``async with open_session(url, configuration) as session: ...``"""

    def __init__(self, url: str, configuration: QuicConfiguration) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ValueError(f"HTTP/3 needs an https:// URL, got {url!r}")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 443
        self._authority = parts.netloc
        if configuration.server_name is None:
            configuration.server_name = self._host
        self._configuration = configuration
        self._cm: Any = None

    async def __aenter__(self) -> HTTP3Session:
        created: list[_Protocol] = []

        def create_protocol(*args: Any, **kwargs: Any) -> _Protocol:
            created.append(_Protocol(*args, **kwargs))
            return created[-1]

        self._cm = connect(
            self._host, self._port, configuration=self._configuration,
            create_protocol=create_protocol,
        )
        try:
            protocol = await self._cm.__aenter__()
        except ConnectionError as exc:
            # aioquic raises a bare ConnectionError; the reason (e.g. the post-quantum
            # binding's explanation of a refused handshake) is on the terminated event.
            terminated = created[0].terminated if created else None
            if terminated is not None and not isinstance(exc, HTTP3Error):
                raise HTTP3Error(
                    terminated.reason_phrase or f"handshake failed (error {terminated.error_code})"
                ) from exc
            raise
        return HTTP3Session(protocol, self._authority)

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)


async def fetch(
    url: str,
    policy: Policy | str = Policy.PREFER,
    groups: Sequence[str] | None = None,
    cafile: str | None = None,
    method: str = "GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a new connection; returns the response and the negotiated group."""
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    config = client_configuration(policy, groups, cafile, server_name=parts.hostname)
    async with open_session(url, config) as session:
        return await session.request(method, path, headers, body, timeout)
