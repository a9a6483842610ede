"""The outgoing side of one HTTP/2 tunnel connection, and everybody who waits on it.

Split from :mod:`.h2_transport` (which reads, and owns the streams' lifecycle) because writing
has rules of its own, all here: frames queued by many streams in one turn of the event loop
leave in one ``transport.write`` (or at once when :data:`FLUSH_BYTES` wait); a writer hands
HTTP/2 only what the peer's windows allow and waits for WINDOW_UPDATE otherwise; every writer
waits while the TLS transport is above its high-water mark (asyncio's ``pause_writing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import h2.connection
import h2.exceptions

from .frames import StreamReset

if TYPE_CHECKING:
    from .h2_channel import H2Channel

__all__ = ["FLUSH_BYTES", "H2Writer"]

#: Queued HTTP/2 output that is written at once instead of at the end of the loop's turn.
FLUSH_BYTES = 256 * 1024
_FRAME_HEADER = 9
_SMALL_FRAME = 13  # RST_STREAM, WINDOW_UPDATE
_RESPONSE_HEADERS = ((b":status", b"200"),)


class H2Writer:
    """What goes out of one ``H2Connection``, and the writers waiting for window or room."""

    def __init__(self, connection: h2.connection.H2Connection) -> None:
        self.h2 = connection
        self.transport: asyncio.Transport | None = None
        #: Set once the connection is closed: nothing more is written, every waiter wakes.
        self.closed = False
        self._writable = True
        self._write_waiters: list[asyncio.Future[None]] = []
        self._window_waiters: dict[int, asyncio.Future[None]] = {}
        self._unflushed = 0
        self._flush_handle: asyncio.Handle | None = None

    # ------------------------------------------------------------------ for channels

    def send_room(self, channel: H2Channel) -> int:
        """Bytes ``channel`` may hand to HTTP/2 now (peer's windows, frame size)."""
        try:
            window = self.h2.local_flow_control_window(channel.h2_stream_id)
        except h2.exceptions.StreamClosedError:
            channel.fail(StreamReset("stream closed"))
            return 0
        return min(window, self.h2.max_outbound_frame_size)

    def send_chunk(self, channel: H2Channel, data: bytes, end: bool) -> None:
        try:
            self._respond_once(channel)
            self.h2.send_data(channel.h2_stream_id, data, end_stream=end)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            channel.fail(StreamReset(f"stream closed: {exc}"))
            return
        self.queued(len(data) + _FRAME_HEADER)

    def end_stream(self, channel: H2Channel) -> None:
        try:
            self._respond_once(channel)
            self.h2.end_stream(channel.h2_stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError) as exc:
            channel.fail(StreamReset(f"stream closed: {exc}"))
            return
        self.queued(_FRAME_HEADER)

    def _respond_once(self, channel: H2Channel) -> None:
        """As the HTTP/2 server, answer a stream's HEADERS before its first DATA."""
        if channel.head_pending:
            channel.head_pending = False
            self.h2.send_headers(channel.h2_stream_id, _RESPONSE_HEADERS)

    def reset(self, h2_stream_id: int, code: int) -> None:
        """RST_STREAM, unless the stream is closed already (then there is nothing to reset)."""
        if self.closed:
            return
        try:
            self.h2.reset_stream(h2_stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return
        self.queued(_SMALL_FRAME)

    def open_window(self, channel: H2Channel, size: int) -> None:
        """The reader of ``channel`` took ``size`` bytes: let the peer send that much more."""
        if self.closed or size <= 0:
            return
        try:
            self.h2.increment_flow_control_window(size, channel.h2_stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            return
        self.queued(_SMALL_FRAME)

    async def wait_window(self, channel: H2Channel) -> None:
        """Wait for the peer to open ``channel``'s window (or the connection's)."""
        self.flush()  # what is queued may be what the peer needs to see first
        waiter = self._window_waiters.get(channel.h2_stream_id)
        if waiter is None or waiter.done():
            waiter = asyncio.get_running_loop().create_future()
            self._window_waiters[channel.h2_stream_id] = waiter
        await waiter

    def wake_writer(self, h2_stream_id: int) -> None:
        """The peer opened this stream's window, or the stream failed: its writer looks again."""
        waiter = self._window_waiters.pop(h2_stream_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_all_writers(self) -> None:
        """The connection's window (or the initial window, or the frame size) changed."""
        waiters, self._window_waiters = self._window_waiters, {}
        _wake(list(waiters.values()))

    async def wait_writable(self) -> None:
        """Wait while the TLS transport's buffer is above its high-water mark."""
        while not self._writable and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._write_waiters.append(waiter)
            await waiter

    # ------------------------------------------------------------------ for the connection

    def pause(self) -> None:
        self._writable = False

    def resume(self) -> None:
        self._writable = True
        _wake(self._write_waiters)

    def shut(self) -> None:
        """The connection closed: wake every waiter (they find it closed)."""
        self.closed = True
        self.wake_all_writers()
        _wake(self._write_waiters)

    def queued(self, size: int) -> None:
        """HTTP/2 has ``size`` more bytes to send: write now if much is waiting, else at the end
        of this turn of the event loop (so many streams' frames leave in one write)."""
        self._unflushed += size
        if self._unflushed >= FLUSH_BYTES:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write everything HTTP/2 has queued, in one ``transport.write``."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._unflushed = 0
        data = self.h2.data_to_send()
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    async def wait_flushed(self, timeout: float, stopped: Callable[[], bool] | None = None) -> int:
        """Wait up to ``timeout`` (or until ``stopped()``) until the transport holds nothing
        unsent; returns what is still waiting."""
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        transport = self.transport
        while transport is not None and not self.closed:
            pending = transport.get_write_buffer_size()
            if pending == 0 or loop.time() >= deadline or (stopped is not None and stopped()):
                return pending
            await asyncio.sleep(0.01)
        return 0


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()
