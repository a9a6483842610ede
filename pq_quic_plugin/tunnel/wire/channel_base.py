"""What a tunnel stream is on either transport: the frames that arrived, handed to one reader in
order, and the frames a writer sends (docs/protocol.md).

The QUIC :class:`~.channel.Channel` and the HTTP/2 :class:`~.h2_channel.H2Channel` carry the
same byte stream of tunnel frames, so parsing, the order of end-of-body against failure, the
header handshake (:meth:`ChannelBase.read_json`) and the split of a body into DATA frames are
decided here, once: the edge and the connector cannot see the two transports differ. A
transport class adds only what is really its own, through the hooks below: how bytes go out and
wait for room (``_write``, ``_write_end``, ``drain``), how receive credit is given back as the
reader takes frames (``_taken``), how a reset is put on the wire (``reset``), and whom a failure
must wake besides the reader (``_wake_writers``).
"""

from __future__ import annotations

import abc
import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

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

__all__ = ["ChannelBase", "wire_size"]

Frame = tuple[FrameType, bytes]


def wire_size(frame: Frame) -> int:
    """The bytes ``frame`` took on the stream (type, length, payload): what a receive window
    counts, so what is given back when the reader takes the frame."""
    return 1 + size_uint_var(len(frame[1])) + len(frame[1])


class ChannelBase(abc.ABC):
    """One tunnel stream as an async reader and writer of frames, whatever carries it.

    Received frames wait here until :meth:`read` takes them; the transport's receive window
    reopens only as they are taken (``_taken``), so the frames held are bounded by one window.
    """

    #: :meth:`send_data` hands the transport this many bytes of body (as DATA frames of at most
    #: :data:`~.frames.DATA_CHUNK` each) per ``_write``, and waits for room between pieces.
    SEND_PIECE: ClassVar[int] = DATA_CHUNK

    def __init__(self, stream_id: int) -> None:
        #: The tunnel's number for the stream (0: the control stream, on both transports).
        self.stream_id = stream_id
        self._parser = FrameParser()
        self._frames: deque[Frame] = deque()
        self._queued = 0  # bytes (as sent) of the frames in _frames
        self._reader: asyncio.Future[None] | None = None  # read() waiting for a frame
        self._error: StreamReset | None = None
        self._eof = False  # the peer's end came after whole frames: the body is complete
        #: Nothing more will be written: :meth:`end` ran (over HTTP/2 also: END_STREAM went
        #: out with the last data, or the stream was reset).
        self.ended = False
        #: Called once with the error when the stream fails (reset either way, or the
        #: connection closed), even after its body ended: a relay pipes on a stream no one
        #: reads or writes any more (cluster/peer_serve.py).
        self.on_fail: list[Callable[[StreamReset], None]] = []

    # ------------------------------------------------------------------ receiving

    def feed(self, data: bytes, end: bool = False) -> None:
        """Bytes of the stream arrived, ``end`` if the peer's end of stream came with them
        (called by the connection)."""
        if not self._accept(len(data)):
            return
        if data:
            try:
                frames = self._parser.feed(data)
            except ProtocolError as exc:
                self.fail(StreamReset(f"protocol error: {exc}"))
                self.reset(ERROR_CANCELLED)
                return
            self._frames.extend(frames)
            for frame in frames:
                self._queued += wire_size(frame)
        if end:
            if self._parser.pending:
                self.fail(StreamReset("stream ended inside a frame"))
            else:
                self._eof = True
        self._fed()
        self._wake_reader()

    def fail(self, error: StreamReset) -> None:
        """The stream failed with ``error`` (only the first failure counts): the reader gets it
        once the frames before it are read, writers stop, and ``on_fail`` is told."""
        if self._error is None:
            self._error = error
            self._wake_reader()
            self._wake_writers()
            for callback in self.on_fail:
                callback(error)

    def _wake_reader(self) -> None:
        waiter = self._reader
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reading

    async def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream; raises StreamReset if cancelled.

        Frames that arrived before a failure are still handed out, and a body that arrived
        whole stays whole: the connection closing after the peer's end (a connector draining)
        must not turn a complete response into an error.
        """
        while not self._frames:
            if self._eof:
                return None
            if self._error is not None:
                raise self._error
            self._caught_up()
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._take()

    def read_ready(self) -> Frame | None:
        """The next frame if it has arrived already, else None (never waits): lets a relay put
        the frames that came in together into one write of its own."""
        return self._take() if self._frames else None

    def _take(self) -> Frame:
        frame = self._frames.popleft()
        size = wire_size(frame)
        self._queued -= size
        self._taken(size)
        return frame

    async def read_json(self, expect: FrameType) -> dict[str, Any]:
        """The next frame, a JSON object of type ``expect``; the peer's ERROR frame is raised
        as :class:`StreamReset` (its reason and status), any other frame is a protocol error."""
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
        """``data`` as DATA frames of at most :data:`~.frames.DATA_CHUNK` bytes (the same frames
        on both transports), handed to the transport :attr:`SEND_PIECE` bytes at a time."""
        if not data:
            if end:
                await self.end()
            return
        if self._error is not None:
            raise self._error
        view = memoryview(data)
        total = len(data)
        for start in range(0, total, self.SEND_PIECE):
            stop = min(start + self.SEND_PIECE, total)
            blob = b"".join(
                encode_frame(FrameType.DATA, bytes(view[i : min(i + DATA_CHUNK, stop)]))
                for i in range(start, stop, DATA_CHUNK)
            )
            await self._write(blob, end and stop == total)

    async def end(self) -> None:
        """End this side of the stream (QUIC's FIN, HTTP/2's END_STREAM), once."""
        if self.ended or self._error is not None:
            return
        self.ended = True
        await self._write_end()

    # ------------------------------------------------------------------ the transport's part

    def _accept(self, size: int) -> bool:
        """``size`` bytes arrived: account for them; False drops them unread."""
        return True

    def _fed(self) -> None:  # noqa: B027 - an optional hook: QUIC paces its window here
        """What arrived is parsed (``_queued`` is up to date)."""

    def _caught_up(self) -> None:  # noqa: B027 - optional: HTTP/2 reopens its window here
        """The reader has taken every frame and is about to wait for more."""

    @abc.abstractmethod
    def _taken(self, size: int) -> None:
        """The reader took a frame of ``size`` bytes: give the peer credit for it."""

    @abc.abstractmethod
    def _wake_writers(self) -> None:
        """The stream failed: a writer waiting for room or credit must stop waiting."""

    @abc.abstractmethod
    async def _write(self, data: bytes, end: bool) -> None:
        """Send ``data`` (whole tunnel frames), with the end of stream if ``end``, and wait
        while too much is queued; raises the stream's error once it has failed."""

    @abc.abstractmethod
    async def _write_end(self) -> None:
        """Send the end of stream alone."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait while too much is queued for this stream: bounded memory for big bodies."""

    @abc.abstractmethod
    def reset(self, code: int = ERROR_CANCELLED) -> None:
        """Cancel both directions with ``code``, then fail the stream."""

    @abc.abstractmethod
    def release_credit(self) -> None:
        """The stream is finished with: drop whatever flow-control state it holds."""
