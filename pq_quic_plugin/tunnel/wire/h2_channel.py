"""One tunnel stream carried by one HTTP/2 stream: the same reader and writer of tunnel frames
as the QUIC :class:`~.channel.Channel`, so the edge and the connector cannot tell them apart.

The stream's payload is the tunnel's byte stream (``type | length | payload`` frames, exactly as
on a QUIC stream); HTTP/2 adds only its own framing around it. Memory stays bounded per stream
in both directions:

- receiving, the stream's HTTP/2 window reopens as :meth:`H2Channel.read` hands frames to the
  reader (in quarter-window steps, and all at once whenever the reader has caught up), never as
  bytes arrive: the peer is at most one window ahead of the reader;
- sending, a writer hands HTTP/2 no more than the peer's window allows and then waits for the
  peer's WINDOW_UPDATE, and waits while the TCP transport's buffer is above its high-water mark.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aioquic.buffer import size_uint_var

from .frames import (
    DATA_CHUNK,
    ERROR_CANCELLED,
    FrameParser,
    FrameType,
    ProtocolError,
    StreamReset,
    encode_frame,
)

if TYPE_CHECKING:
    from .h2_transport import H2TunnelConnection

__all__ = ["SEND_BATCH", "H2Channel"]

#: :meth:`H2Channel.send_data` encodes this many bytes of body into tunnel frames at a time and
#: hands them to HTTP/2 as one piece (fewer, larger DATA frames; bounded extra memory).
SEND_BATCH = 16 * DATA_CHUNK


class H2Channel:
    """One HTTP/2 stream as an async reader and writer of tunnel frames.

    ``stream_id`` is the tunnel's number for the stream, as on QUIC: 0 for the control stream
    (HTTP/2 stream 1, which the edge opens first), the HTTP/2 stream ID otherwise;
    ``h2_stream_id`` is the number on the wire.
    """

    def __init__(
        self,
        connection: H2TunnelConnection,
        h2_stream_id: int,
        stream_id: int,
        *,
        opened: bool,
        window: int,
    ) -> None:
        self.connection = connection
        self._out = connection.writer
        self.h2_stream_id = h2_stream_id
        self.stream_id = stream_id
        self._parser = FrameParser()
        self._frames: deque[tuple[FrameType, bytes]] = deque()
        self._held = 0  # bytes received and not yet handed to the reader (frames + partial)
        self._unacked = 0  # bytes the reader took whose window has not been reopened yet
        self._step = max(1, window // 4)
        self._reader: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[None] | None = None
        self.is_open = opened  # HEADERS exchanged: DATA may flow (see mark_open)
        self._error: StreamReset | None = None
        self._eof = False  # the peer's END_STREAM came after whole frames: the body is complete
        self.ended = False  # we sent END_STREAM, or reset the stream: nothing more to write
        self._reset_sent = False
        #: Called once with the error when the stream fails (as ``Channel.on_fail``).
        self.on_fail: list[Callable[[StreamReset], None]] = []
        #: As the HTTP/2 server (connector), the stream's ``:status 200`` is still to be sent
        #: (with the first DATA or END_STREAM).
        self.head_pending = False

    # ------------------------------------------------------------------ receiving

    @property
    def buffered(self) -> int:
        """Bytes received on this stream that the reader has not taken yet (what it holds)."""
        return self._held

    def feed(self, data: bytes, end: bool = False) -> None:
        """Bytes of the stream's payload arrived (called by the connection)."""
        if data:
            self._held += len(data)
            try:
                frames = self._parser.feed(data)
            except ProtocolError as exc:
                self.fail(StreamReset(f"protocol error: {exc}"))
                self.reset(ERROR_CANCELLED)
                return
            self._frames.extend(frames)
        if end:
            if self._parser.pending:
                self.fail(StreamReset("stream ended inside a frame"))
            else:
                self._eof = True
        self._wake_reader()

    def padding(self, size: int) -> None:
        """``size`` bytes of HTTP/2 padding counted against the window: give them back."""
        self._unacked += size
        if self._unacked >= self._step:
            self._reopen()

    def fail(self, error: StreamReset) -> None:
        if self._error is None:
            self._error = error
            self._wake_reader()
            self._out.wake_writer(self.h2_stream_id)
            if self._opened is not None and not self._opened.done():
                self._opened.set_result(None)
            for callback in self.on_fail:
                callback(error)

    def mark_open(self) -> None:
        """The peer's HEADERS for this stream arrived: writes may go out."""
        self.is_open = True
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    def _wake_reader(self) -> None:
        waiter = self._reader
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _reopen(self) -> None:
        size, self._unacked = self._unacked, 0
        if not self._eof and self._error is None:
            self._out.open_window(self, size)

    # ------------------------------------------------------------------ reading

    async def read(self) -> tuple[FrameType, bytes] | None:
        """The next frame, or None at the end of the stream; raises StreamReset if cancelled.

        Frames that arrived before a reset are still handed out; a body whose END_STREAM
        arrived stays whole even if the connection closes afterwards (as on QUIC).
        """
        while not self._frames:
            if self._eof:
                return None
            if self._error is not None:
                raise self._error
            if self._unacked:
                # The reader caught up: reopen everything now, so that a frame larger than the
                # rest of the window (a 1 MiB WebSocket message) can always arrive whole.
                self._reopen()
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._take()

    def read_ready(self) -> tuple[FrameType, bytes] | None:
        """The next frame if one has arrived already, else None (never waits): lets a relay
        put the frames that came in one TCP read into one write of its own."""
        return self._take() if self._frames else None

    def _take(self) -> tuple[FrameType, bytes]:
        frame = self._frames.popleft()
        size = 1 + size_uint_var(len(frame[1])) + len(frame[1])
        self._held -= size
        self._unacked += size
        if self._unacked >= self._step:
            self._reopen()
        return frame

    async def read_json(self, expect: FrameType) -> dict[str, Any]:
        frame = await self.read()
        if frame is None:
            raise StreamReset("stream ended before its header")
        kind, payload = frame
        if kind == FrameType.ERROR:
            message = json.loads(payload)
            raise StreamReset(message.get("reason", "error from peer"), message.get("status"))
        if kind != expect:
            raise ProtocolError(f"expected {expect.name}, got {kind.name}")
        value = json.loads(payload)
        if not isinstance(value, dict):
            raise ProtocolError(f"{expect.name} payload is not an object")
        return value

    # ------------------------------------------------------------------ writing

    async def send(self, frame_type: FrameType, payload: bytes = b"", end: bool = False) -> None:
        if self._error is not None:
            raise self._error
        await self._write(encode_frame(frame_type, payload), end)

    async def send_json(self, frame_type: FrameType, message: dict, end: bool = False) -> None:
        await self.send(frame_type, json.dumps(message, separators=(",", ":")).encode(), end)

    async def send_data(self, data: bytes, end: bool = False) -> None:
        """``data`` as DATA frames of at most :data:`~.frames.DATA_CHUNK` bytes (the same
        frames as on QUIC), handed to HTTP/2 :data:`SEND_BATCH` bytes at a time."""
        if not data:
            if end:
                await self.end()
            return
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        total = len(data)
        for start in range(0, total, SEND_BATCH):
            stop = min(start + SEND_BATCH, total)
            blob = b"".join(
                encode_frame(FrameType.DATA, bytes(view[i : min(i + DATA_CHUNK, stop)]))
                for i in range(start, stop, DATA_CHUNK)
            )
            await self._write(blob, end and stop == total)

    async def end(self) -> None:
        if self.ended or self._error is not None:
            return
        self.ended = True
        if not self.is_open:
            await self._wait_open()
        self._out.end_stream(self)

    async def _write(self, data: bytes, end: bool) -> None:
        """Hand ``data`` to HTTP/2 as the peer's window allows, waiting for more window."""
        if self.ended:
            raise StreamReset("stream already ended")
        if not self.is_open:
            await self._wait_open()
        link = self.connection
        total = len(data)
        offset = 0
        while True:
            if self._error is not None:
                raise self._error
            if link.closed:
                raise StreamReset(f"tunnel connection closed: {link.close_reason}")
            take = min(self._out.send_room(self), total - offset)
            last = offset + take == total
            if take > 0 or (last and end):
                chunk = data if take == total else data[offset : offset + take]
                if end and last:
                    self.ended = True
                self._out.send_chunk(self, chunk, end and last)
                offset += take
                if last:
                    break
            else:
                await self._out.wait_window(self)
        await self.drain()

    async def _wait_open(self) -> None:
        """The control stream of a connector exists before the edge's HEADERS for it arrive
        (the connector says hello first on QUIC): its writes wait for them (or a failure)."""
        if self._error is not None:
            raise self._error
        if self._opened is None:
            self._opened = asyncio.get_running_loop().create_future()
        await self._opened
        if not self.is_open:
            raise self._error or StreamReset(
                f"tunnel connection closed: {self.connection.close_reason}"
            )

    async def drain(self) -> None:
        """Wait while the TCP transport's buffer is full: bounded memory for big bodies."""
        await self._out.wait_writable()
        if self.connection.closed and self._error is None:
            raise StreamReset("tunnel connection closed")

    def reset(self, code: int = ERROR_CANCELLED) -> None:
        """Cancel both directions (RST_STREAM: HTTP/2 has one reset for both)."""
        if not self._reset_sent:
            self._reset_sent = True
            self.ended = True
            self._out.reset(self.h2_stream_id, code)
        self.fail(StreamReset("cancelled locally", code))

    def release_credit(self) -> None:
        """Nothing to release: the stream's window lives in the HTTP/2 connection, which
        :meth:`~.h2_transport.H2TunnelConnection.forget` settles."""
