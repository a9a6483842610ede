"""HTTP/2 to ``https://`` origins that offer it by ALPN (the ``h2`` library over TLS on TCP).

One connection per origin carries every request at once, each on its own stream. Flow control
is what bounds memory: a stream's response data is acknowledged (WINDOW_UPDATE, for the stream
and the connection alike) only when the caller takes it, so at most :data:`STREAM_WINDOW` bytes
of one response wait in memory, and a request body is sent only as far as the origin's windows
allow, so a slow origin slows the visitor down.

No visitor's stall may stall another's request, and the connection's window is shared: so it
is as large as every stream's window together (:data:`CONNECTION_WINDOW` =
:data:`MAX_STREAMS` x :data:`STREAM_WINDOW`), and no more than :data:`MAX_STREAMS` streams are
open at once. Streams whose readers took nothing hold at most their own windows, and there is
always connection window left for the others. (It used to be 16 MiB: 16 stalled downloads held
all of it and every other response on the connection stopped.) Memory stays bounded by the
stream windows: :data:`STREAM_WINDOW` per open stream, at most ``MAX_STREAMS`` of them. The
alternatives were weighed: giving connection credit back on arrival bounds memory the same way
but needs our own WINDOW_UPDATE batching beside h2's; opening another connection when the
window is tied up needs the pool to track windows, and spreads one origin over many
connections. A larger window costs nothing until data is really held. Cancelling a request
resets its stream (RST_STREAM CANCEL); the connection stays up for the others. This module is
the connection; one request's life on it is :mod:`.h2_request`.

A response whose body breaks its framing costs that one stream, not the connection: the ``h2``
library treats a body that does not match ``Content-Length`` as an error of the whole
connection (it sends GOAWAY and every other request on it fails), including the empty final
DATA frame that servers send after a ``304`` that states the length of the resource. So frames
are handed to ``h2`` one at a time, and each DATA frame is first checked against the stream's
:class:`~pq_quic_plugin.message_framing.BodyFraming`: a response that has no body (``HEAD``,
``204``, ``304``) is complete with its head, and a body that breaks its length resets its
stream (PROTOCOL_ERROR); either way the frame's bytes are given back to the connection window.
So is a head whose ``Content-Length`` is not a number (h2 leaves it to the framing:
:func:`~pq_quic_plugin.h2_binding.client_connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ...h2_binding import client_connection
from ..config import Service
from ..headers import forwardable
from .errors import OriginError, plain
from .h1 import READ_CHUNK
from .h2_head import head_problem
from .h2_stream import OriginStream, StreamGone, StreamRefused
from .request import OriginHop, PeekedBody

__all__ = [
    "CONNECTION_WINDOW",
    "MAX_FRAME_SIZE",
    "MAX_STREAMS",
    "STREAM_WINDOW",
    "H2Session",
    "OriginStream",
    "StreamGone",
    "StreamRefused",
]

#: The most of one response body held unread: the stream receive window we grant.
STREAM_WINDOW = 1024 * 1024
#: The most streams open at once on one connection (fewer if the origin says so).
MAX_STREAMS = 100
#: Requests per connection; then the next opens a new one. Servers stop at 1,000 (hypercorn,
#: nginx), hypercorn with a GOAWAY that strands the responses in flight for its 5 s keep-alive.
MAX_REQUESTS = 1000
#: The connection's receive window, shared by all streams: room for every stream's whole
#: window, so streams whose readers stalled never hold it all (100 MiB, under HTTP/2's 2 GiB).
CONNECTION_WINDOW = MAX_STREAMS * STREAM_WINDOW
#: The request and response headers we accept from an origin, in bytes (HPACK-decoded).
MAX_HEADER_LIST = 256 * 1024
#: The largest DATA frame the origin may send us (HTTP/2's default is 16 KiB): fewer, larger
#: frames cost the origin and the connector less per byte; the windows still bound memory.
MAX_FRAME_SIZE = 256 * 1024


class H2Session:
    """One HTTP/2 connection to an origin, shared by concurrent requests.

    ``hop`` is the connector-origin hop (TLS over TCP, with the group the handshake agreed on).
    Built on a connection whose ALPN chose ``h2``; :meth:`start` sends the preface.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        service: Service,
        hop: OriginHop,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.service = service
        self.hop = hop
        # h2's outbound checks (no connection-specific headers, ``te`` only ``trailers``,
        # pseudo-headers first and known, ``:authority`` and ``:path`` present) hold by
        # construction in :func:`~.h2_request.send_request` (``forwardable`` and
        # ``wire_headers``, which also check what h2 does not), so they are not run twice per
        # request. Normalising stays on: it marks credentials never-indexed in HPACK. Inbound
        # validation is ours, per stream (:mod:`.h2_head`): h2's fails the whole connection.
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            validate_inbound_headers=False,
        )
        self.conn = client_connection(config)  # a bad content-length: one stream's error
        self.conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            },
        )
        # Settings given at construction are in force from the start (the origin reads them in
        # our preface), but h2 took its inbound frame limit from the defaults it had before.
        self.conn.max_inbound_frame_size = MAX_FRAME_SIZE
        self.streams: dict[int, OriginStream] = {}
        self.closed_reason: str | None = None
        self.draining = False  # no new streams: GOAWAY, MAX_REQUESTS, or retired by the pool
        self.requests = 0
        self._closing: asyncio.Task[None] | None = None
        self.idle_since = time.monotonic()
        self._capacity = asyncio.Event()  # a stream slot or send window may have opened
        self._reading: asyncio.Task[None] | None = None
        self._inbox = bytearray()  # received bytes not yet split into frames

    # ------------------------------------------------------------------ the connection

    def start(self) -> None:
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._flush()
        self._reading = asyncio.ensure_future(self._read_loop())

    @property
    def usable(self) -> bool:
        """Whether a new request may use this connection."""
        return self.closed_reason is None and not self.draining and not self.writer.is_closing()

    @property
    def has_room(self) -> bool:
        """Whether a stream may open now. The origin's limit counts streams open on the wire;
        ours every stream a caller has not finished with, an unread response included: that
        is what holds connection window."""
        limit = self.conn.remote_settings.max_concurrent_streams
        return self.conn.open_outbound_streams < limit and len(self.streams) < MAX_STREAMS

    def idle_for(self) -> float:
        """Seconds without an open stream (0 while one is open)."""
        return 0.0 if self.streams else time.monotonic() - self.idle_since

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def _drain(self, timeout: float) -> None:
        """Wait while the socket's send buffer is full (TCP backpressure toward the origin)."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except asyncio.TimeoutError:
            raise OriginError(
                504,
                f"origin {self.service.text} stopped reading the request body for {timeout:g}s",
            ) from None
        except (OSError, ssl.SSLError):
            raise StreamGone() from None

    async def _read_loop(self) -> None:
        reason = "the origin closed the connection"
        try:
            while True:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    break
                self._receive(data)
                self._flush()
        except h2.exceptions.ProtocolError as exc:
            reason = f"HTTP/2 protocol error: {exc}"
            with contextlib.suppress(Exception):
                self._flush()  # the GOAWAY h2 queued
        except (OSError, ssl.SSLError) as exc:
            reason = f"connection lost: {plain(exc)}"
        except asyncio.CancelledError:
            reason = "the connector closed the connection"
            raise
        finally:
            self._lost(reason)

    def _receive(self, data: bytes) -> None:
        """Hand complete frames to ``h2`` one by one, each after the events of those before it
        are dispatched (a DATA frame is judged by the head its stream got)."""
        inbox = self._inbox
        inbox += data
        offset = 0
        while len(inbox) - offset >= 9:
            length = int.from_bytes(inbox[offset : offset + 3], "big")
            end = offset + 9 + length
            if end > len(inbox):
                break
            frame = bytes(inbox[offset:end])
            offset = end
            if frame[3] == 0 and self._judged(frame, length):  # DATA
                continue
            for event in self.conn.receive_data(frame):
                self._dispatch(event)
        del inbox[:offset]

    def _judged(self, frame: bytes, length: int) -> bool:
        """Whether a DATA frame was handled here rather than by ``h2``: the end of a response
        that has no body, or a body that breaks its length (its stream is reset)."""
        stream = self.streams.get(int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF)
        if stream is None or stream.closed_by_us or stream.status == 0 or stream.ended:
            return False
        flags = frame[4]
        padding = frame[9] + 1 if flags & 0x8 and length else 0
        framing = stream.framing
        broken = framing.data(max(0, length - padding))
        if broken is None and flags & 0x1:
            broken = framing.end()
        if broken is None and framing.expected != 0:
            return False  # a well-framed body: h2 takes it (and checks it too)
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            if length:
                self.conn.increment_flow_control_window(length)  # the bytes h2 never saw
            if broken is not None:
                stream.error = f"malformed response: {broken}"
                self.conn.reset_stream(stream.id, ErrorCodes.PROTOCOL_ERROR)
            elif flags & 0x1:
                stream.ended = True  # complete with its head
                self.conn.reset_stream(stream.id, ErrorCodes.NO_ERROR)
        stream.wake()
        return True

    def _lost(self, reason: str) -> None:
        """The connection is gone: every stream still open fails with ``reason``."""
        if self.closed_reason is None:
            self.closed_reason = reason
        for stream in self.streams.values():
            if not stream.ended and stream.error is None:
                stream.error = reason
                stream.retryable = stream.status == 0
            stream.wake()
        self._capacity.set()
        with contextlib.suppress(Exception):
            self.writer.close()

    def _head(self, stream: OriginStream, raw: list[tuple[bytes, bytes]]) -> None:
        """The final response head arrived: checked (:func:`~.h2_head.head_problem`), then
        kept for the caller as text without the fields no hop forwards."""
        problem = head_problem(raw)
        if problem is not None:
            self._malformed(stream, f"malformed response head: {problem}")
            return
        headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in raw]
        status = int(next(v for k, v in headers if k == ":status"))  # three digits: checked
        lengths = [v for k, v in headers if k == "content-length"]
        broken = stream.framing.head(status, lengths)
        if broken is not None:
            self._malformed(stream, f"malformed response head: {broken}")
            return
        stream.status = status
        stream.headers = forwardable(headers)  # drops pseudo-headers and hop-by-hop ones
        stream.wake()

    def _malformed(self, stream: OriginStream, reason: str) -> None:
        """A stream error (RFC 9113 8.1.1): reset this stream only (PROTOCOL_ERROR); its
        caller fails with ``reason`` (a 502 before the head, a cut-off body after it)."""
        stream.error = reason
        with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
            self.conn.reset_stream(stream.id, ErrorCodes.PROTOCOL_ERROR)
        stream.wake()

    def _dispatch(self, event: Any) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            self._head(stream, event.headers)
        elif isinstance(event, h2.events.InformationalResponseReceived) and stream is not None:
            problem = head_problem(event.headers)  # not passed on, but part of the response
            if problem is not None:
                self._malformed(stream, f"malformed response head: {problem}")
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            problem = head_problem(event.headers, trailers=True)  # never passed on
            if problem is not None:
                self._malformed(stream, f"malformed trailers: {problem}")
        elif isinstance(event, h2.events.DataReceived):
            if stream is None or stream.closed_by_us:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                stream.data.append((bytes(event.data or b""), event.flow_controlled_length))
                stream.wake()
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = stream.error is None  # a malformed response does not end well
            stream.wake()
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            if not stream.ended or stream.status == 0:
                code = _error_name(event.error_code)
                stream.error = f"the origin reset the stream ({code})"
                stream.retryable = event.error_code == ErrorCodes.REFUSED_STREAM
            stream.wake()
            self._capacity.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.draining = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for sid, waiting in self.streams.items():
                if sid > last and waiting.error is None:
                    waiting.error = "the origin is closing the connection (GOAWAY)"
                    waiting.retryable = True
                    waiting.wake()
            self._capacity.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self._capacity.set()

    async def aclose(self) -> None:
        """Close the connection politely (GOAWAY), whatever streams are open."""
        if self.closed_reason is None:
            with contextlib.suppress(Exception):
                self.conn.close_connection()
                self._flush()
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(BaseException):
                await self._reading
        self._lost("the connector closed the connection")

    # ------------------------------------------------------------------ streams

    async def open_stream(
        self, headers: list[tuple[bytes, bytes]], end: bool, timeout: float
    ) -> OriginStream:
        """A new stream carrying ``headers``, once the origin allows another one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.usable:
                raise StreamRefused(self.closed_reason or "the origin is closing the connection")
            if self.has_room:
                break
            limit = min(self.conn.remote_settings.max_concurrent_streams, MAX_STREAMS)
            await self._await_capacity(
                deadline, f"no HTTP/2 stream free within {timeout:g}s ({limit} are open at once)"
            )
        try:
            stream_id = self.conn.get_next_available_stream_id()
        except h2.exceptions.NoAvailableStreamIDError:
            self.draining = True  # used up: the next request opens a new connection
            raise StreamRefused("no stream IDs left on this connection") from None
        stream = OriginStream(stream_id, dict(headers).get(b":method", b"GET"))
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            # h2 validates while it HPACK-encodes, so the encoder's table may now differ from
            # the origin's decoder: no further request may use this connection.
            self.draining = True
            raise OriginError(
                502, f"origin {self.service.text}: cannot send this request over HTTP/2: {exc}"
            ) from None
        self.streams[stream_id] = stream
        self.requests += 1
        if self.requests >= MAX_REQUESTS:
            self.draining = True  # the pool opens the next one; this closes once idle
        self._flush()
        return stream

    async def _await_capacity(self, deadline: float, failure: str) -> None:
        """Wait until a stream slot or send window may have opened (the next frame from the
        origin wakes us); past ``deadline`` (loop time) the request fails with a 504 saying
        ``failure``."""
        self._capacity.clear()
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise OriginError(504, f"origin {self.service.text}: {failure}")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._capacity.wait(), remaining)

    def _window(self, stream: OriginStream) -> int:
        if stream.error is not None or self.closed_reason is not None:
            raise StreamGone()
        try:
            return min(
                self.conn.local_flow_control_window(stream.id), self.conn.max_outbound_frame_size
            )
        except (h2.exceptions.StreamClosedError, KeyError):
            raise StreamGone() from None

    async def upload(self, stream: OriginStream, body: PeekedBody, timeout: float) -> None:
        """Send the request body within the origin's flow-control windows, then END_STREAM."""
        loop = asyncio.get_running_loop()
        async for chunk in body.chunks():
            view = memoryview(chunk)
            while view:
                deadline = loop.time() + timeout
                while (window := self._window(stream)) <= 0:
                    await self._await_capacity(
                        deadline, f"stopped reading the request body for {timeout:g}s"
                    )
                size = min(window, len(view))
                self.conn.send_data(stream.id, view[:size].tobytes())
                view = view[size:]
                self._flush()
                await self._drain(timeout)
        self._window(stream)  # still open?
        self.conn.end_stream(stream.id)
        self._flush()

    def taken(self, stream: OriginStream, flow: int) -> None:
        """The caller took ``flow`` bytes of ``stream``: let the origin send that much more."""
        if flow and self.closed_reason is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.acknowledge_received_data(flow, stream.id)
                self._flush()

    def cancel(self, stream: OriginStream) -> None:
        """Stop ``stream`` (RST_STREAM CANCEL unless it is over) and return its unread data's
        share of the connection window."""
        if stream.closed_by_us:
            return
        stream.closed_by_us = True
        if self.closed_reason is None:
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):
                if not (stream.ended and stream.error is None and self._sent_all(stream)):
                    self.conn.reset_stream(stream.id, ErrorCodes.CANCEL)
            unread = sum(flow for _, flow in stream.data)
            stream.data.clear()
            if unread:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.conn.acknowledge_received_data(unread, stream.id)
            self._flush()
        self.forget(stream)

    def _sent_all(self, stream: OriginStream) -> bool:
        h2_stream = self.conn.streams.get(stream.id)
        return h2_stream is None or h2_stream.closed

    def forget(self, stream: OriginStream) -> None:
        if self.streams.pop(stream.id, None) is not None and not self.streams:
            self.idle_since = time.monotonic()
            if self.draining:
                self.retire()
        self._capacity.set()

    def retire(self) -> None:
        """Take no new requests; close once the ones in flight are done."""
        self.draining = True
        if not self.streams and self._closing is None and self.closed_reason is None:
            self._closing = asyncio.ensure_future(self.aclose())


def _error_name(code: int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error 0x{code:x}"
