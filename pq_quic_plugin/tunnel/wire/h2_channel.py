"""One tunnel stream carried by one HTTP/2 stream: the same reader and writer of tunnel frames
as the QUIC :class:`~.channel.Channel` (both are a :class:`~.channel_base.ChannelBase`), so the
edge and the connector cannot tell them apart.

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
from typing import TYPE_CHECKING, ClassVar

from .channel_base import ChannelBase
from .frames import DATA_CHUNK, ERROR_CANCELLED, StreamReset

if TYPE_CHECKING:
    from .h2_transport import H2TunnelConnection

__all__ = ["SEND_BATCH", "H2Channel"]

#: :meth:`H2Channel.send_data` encodes this many bytes of body into tunnel frames at a time and
#: hands them to HTTP/2 as one piece (fewer, larger DATA frames; bounded extra memory).
SEND_BATCH = 16 * DATA_CHUNK


class H2Channel(ChannelBase):
    """One HTTP/2 stream as an async reader and writer of tunnel frames.

    ``stream_id`` is the tunnel's number for the stream, as on QUIC: 0 for the control stream
    (HTTP/2 stream 1, which the edge opens first), the HTTP/2 stream ID otherwise;
    ``h2_stream_id`` is the number on the wire.
    """

    SEND_PIECE: ClassVar[int] = SEND_BATCH

    def __init__(
        self,
        connection: H2TunnelConnection,
        h2_stream_id: int,
        stream_id: int,
        *,
        opened: bool,
        window: int,
    ) -> None:
        super().__init__(stream_id)
        self.connection = connection
        self._out = connection.writer
        self.h2_stream_id = h2_stream_id
        self._unacked = 0  # bytes the reader took whose window has not been reopened yet
        self._step = max(1, window // 4)
        self._opened: asyncio.Future[None] | None = None
        self.is_open = opened  # HEADERS exchanged: DATA may flow (see mark_open)
        self._reset_sent = False
        #: As the HTTP/2 server (connector), the stream's ``:status 200`` is still to be sent
        #: (with the first DATA or END_STREAM).
        self.head_pending = False

    # ------------------------------------------------------------------ receiving

    @property
    def buffered(self) -> int:
        """Bytes received on this stream that the reader has not taken yet (what it holds):
        whole frames, and the start of one still arriving."""
        return self._queued + self._parser.pending

    def padding(self, size: int) -> None:
        """``size`` bytes of HTTP/2 padding counted against the window: give them back."""
        self._unacked += size
        if self._unacked >= self._step:
            self._reopen()

    def mark_open(self) -> None:
        """The peer's HEADERS for this stream arrived: writes may go out."""
        self.is_open = True
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    def _wake_writers(self) -> None:
        self._out.wake_writer(self.h2_stream_id)
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    def _taken(self, size: int) -> None:
        self._unacked += size
        if self._unacked >= self._step:
            self._reopen()

    def _caught_up(self) -> None:
        if self._unacked:
            # The reader caught up: reopen everything now, so that a frame larger than the rest
            # of the window (a 1 MiB WebSocket message) can always arrive whole.
            self._reopen()

    def _reopen(self) -> None:
        size, self._unacked = self._unacked, 0
        if not self._eof and self._error is None:
            self._out.open_window(self, size)

    def release_credit(self) -> None:
        """Nothing to release: the stream's window lives in the HTTP/2 connection, which
        :meth:`~.h2_transport.H2TunnelConnection.forget` settles."""

    # ------------------------------------------------------------------ writing

    async def _write_end(self) -> None:
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
