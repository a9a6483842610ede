"""The edge-connector wire protocol: frames on QUIC streams (see docs/protocol.md).

Every stream carries frames ``type (1 byte) | length (QUIC varint) | payload``. The stream's FIN
ends the body; a QUIC RESET_STREAM / STOP_SENDING cancels the request in either direction. One
module holds the framing and the async stream wrapper so the edge and the connector cannot
disagree about the format.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError, encode_uint_var, size_uint_var
from aioquic.quic import events

from ..flow_control import ReceiveCredit, send_buffered

ALPN = "pq-tunnel/1"
PROTOCOL_VERSION = 1
CONTROL_STREAM_ID = 0  # the connector's first bidirectional stream
MAX_FRAME = 1 << 20
DATA_CHUNK = 64 * 1024
SEND_BUFFER_HIGH = 512 * 1024  # pause writers above this many unsent bytes per stream

#: Application error codes for RESET_STREAM / STOP_SENDING and CONNECTION_CLOSE.
ERROR_CANCELLED = 0x10
ERROR_SHUTDOWN = 0x11
ERROR_AUTH = 0x12

#: The header that tells the origin which groups each hop used; the edge strips it from
#: visitors' requests so it cannot be spoofed.
HOPS_HEADER = "pq-tunnel-hops"

logger = logging.getLogger("pq_quic_plugin.tunnel")


class FrameType(enum.IntEnum):
    DATA = 0x00
    HEADERS = 0x01
    WS_TEXT = 0x02
    WS_BINARY = 0x03
    WS_CLOSE = 0x04
    CONTROL = 0x05
    ERROR = 0x06


class ProtocolError(Exception):
    """The peer broke the framing; the stream (or connection) is closed."""


class StreamReset(ConnectionError):
    """The peer reset or stopped the stream, or the connection went away."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


def encode_frame(frame_type: FrameType, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return bytes([frame_type]) + encode_uint_var(len(payload)) + payload


def encode_json(frame_type: FrameType, message: dict[str, Any]) -> bytes:
    return encode_frame(frame_type, json.dumps(message, separators=(",", ":")).encode())


class FrameParser:
    """Incremental parser: feed bytes, get complete frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[FrameType, bytes]]:
        self._buf += data
        frames: list[tuple[FrameType, bytes]] = []
        while self._buf:
            buf = Buffer(data=bytes(self._buf[:9]))
            try:
                kind = buf.pull_uint8()
                length = buf.pull_uint_var()
            except BufferReadError:
                break
            if length > MAX_FRAME:
                raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
            start = buf.tell()
            if len(self._buf) < start + length:
                break
            try:
                frame_type = FrameType(kind)
            except ValueError:
                raise ProtocolError(f"unknown frame type 0x{kind:02X}") from None
            frames.append((frame_type, bytes(self._buf[start : start + length])))
            del self._buf[: start + length]
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)


class Channel:
    """One bidirectional QUIC stream as an async reader and writer of frames.

    The stream's receive window opens as :meth:`read` takes frames (not as they arrive), so a
    peer can be at most one window ahead of the reader: frames waiting here are bounded.
    """

    def __init__(self, connection: TunnelConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._credit = ReceiveCredit.of(connection._quic)
        self._credit.track(stream_id)
        self._parser = FrameParser()
        self._frames: asyncio.Queue[tuple[FrameType, bytes] | None] = asyncio.Queue()
        self._error: StreamReset | None = None
        self._ended = False

    # -- receiving (called by the connection)
    def _feed(self, data: bytes, end: bool) -> None:
        self._credit.delivered(self.stream_id, len(data))
        try:
            for frame in self._parser.feed(data):
                self._frames.put_nowait(frame)
        except ProtocolError as exc:
            self._fail(StreamReset(f"protocol error: {exc}"))
            self.reset(ERROR_CANCELLED)
            return
        if end:
            if self._parser.pending:
                self._fail(StreamReset("stream ended inside a frame"))
            else:
                self._frames.put_nowait(None)

    def _fail(self, error: StreamReset) -> None:
        if self._error is None:
            self._error = error
            self._frames.put_nowait(None)

    # -- reading
    async def read(self) -> tuple[FrameType, bytes] | None:
        """The next frame, or None at the end of the stream; raises StreamReset if cancelled."""
        if self._error is not None and self._frames.empty():
            raise self._error
        frame = await self._frames.get()
        if frame is None:
            if self._error is not None:
                raise self._error
            self._frames.put_nowait(None)  # keep returning None
            return None
        wire_size = 1 + size_uint_var(len(frame[1])) + len(frame[1])
        if self._credit.consumed(self.stream_id, wire_size) and not self.connection.closed:
            self.connection.transmit()  # carries the MAX_STREAM_DATA
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

    # -- writing
    async def send(self, frame_type: FrameType, payload: bytes = b"", end: bool = False) -> None:
        if self._error is not None:
            raise self._error
        quic = self.connection._quic
        quic.send_stream_data(self.stream_id, encode_frame(frame_type, payload), end)
        self.connection.transmit()
        await self.drain()

    async def send_json(self, frame_type: FrameType, message: dict, end: bool = False) -> None:
        await self.send(frame_type, json.dumps(message, separators=(",", ":")).encode(), end)

    async def send_data(self, data: bytes, end: bool = False) -> None:
        for i in range(0, len(data), DATA_CHUNK):
            chunk = data[i : i + DATA_CHUNK]
            await self.send(FrameType.DATA, chunk, end and i + DATA_CHUNK >= len(data))
        if not data:
            await self.end() if end else None

    async def end(self) -> None:
        if self._ended or self._error is not None:
            return
        self._ended = True
        self.connection._quic.send_stream_data(self.stream_id, b"", end_stream=True)
        self.connection.transmit()

    async def drain(self) -> None:
        """Wait while too much is queued for this stream: bounded memory for big bodies."""
        quic = self.connection._quic
        while (
            send_buffered(quic, self.stream_id) > SEND_BUFFER_HIGH
            and self._error is None
            and not self.connection.closed
        ):
            await asyncio.sleep(0.002)
        if self.connection.closed and self._error is None:
            raise StreamReset("tunnel connection closed")

    def reset(self, code: int = ERROR_CANCELLED) -> None:
        """Cancel both directions (RESET_STREAM + STOP_SENDING)."""
        quic = self.connection._quic
        try:
            quic.reset_stream(self.stream_id, code)
        except Exception:  # noqa: BLE001 - already finished or not writable: nothing to reset
            pass
        try:
            quic.stop_stream(self.stream_id, code)
        except Exception:  # noqa: BLE001
            pass
        self.connection.transmit()
        self._fail(StreamReset("cancelled locally", code))


StreamHandler = Callable[[Channel], Awaitable[None]]


class TunnelConnection(QuicConnectionProtocol):
    """A QUIC connection whose streams become :class:`Channel` objects.

    Streams the peer opens are handed to ``stream_handler`` in their own task; streams this
    side opens come from :meth:`open_channel`.
    """

    stream_handler: StreamHandler | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channels: dict[int, Channel] = {}
        self.closed = False
        self.close_reason = ""
        self.closed_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.on_close: list[Callable[[TunnelConnection], None]] = []
        self._last_peer_stream = -1

    def open_channel(self) -> Channel:
        if self.closed:
            raise StreamReset("tunnel connection closed")
        stream_id = self._quic.get_next_available_stream_id()
        channel = Channel(self, stream_id)
        self.channels[stream_id] = channel
        return channel

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived):
            channel = self.channels.get(event.stream_id)
            if channel is None:
                if not self._is_new_peer_stream(event.stream_id):
                    return  # late data for a stream already done with: nobody reads it
                channel = Channel(self, event.stream_id)
                self.channels[event.stream_id] = channel
                self._spawn(channel)
            channel._feed(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            channel = self.channels.get(event.stream_id)
            if channel is not None:
                channel._fail(StreamReset("reset by peer", event.error_code))
        elif isinstance(event, events.StopSendingReceived):
            channel = self.channels.get(event.stream_id)
            if channel is not None:
                channel._fail(StreamReset("peer stopped reading", event.error_code))
        elif isinstance(event, events.ConnectionTerminated):
            self.closed = True
            self.close_reason = event.reason_phrase or f"error 0x{event.error_code:X}"
            for channel in self.channels.values():
                channel._fail(StreamReset(f"tunnel connection closed: {self.close_reason}"))
            self.closed_event.set()
            for callback in list(self.on_close):
                callback(self)

    def _is_new_peer_stream(self, stream_id: int) -> bool:
        """Peers open streams in increasing order, so a new one is above all seen before."""
        peer_bit = 1 if self._quic.configuration.is_client else 0
        if stream_id & 1 != peer_bit or stream_id <= self._last_peer_stream:
            return False
        self._last_peer_stream = stream_id
        return True

    def _spawn(self, channel: Channel) -> None:
        handler = self.stream_handler
        if handler is None:
            channel.reset()
            return

        async def run() -> None:
            try:
                await handler(channel)
            except (StreamReset, ProtocolError) as exc:
                logger.debug("stream %d ended: %s", channel.stream_id, exc)
                channel.reset()
            except Exception:
                logger.exception("stream %d handler failed", channel.stream_id)
                channel.reset()
            finally:
                self.forget(channel)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, channel: Channel) -> None:
        """The stream is done with: drop it and its flow-control state."""
        self.channels.pop(channel.stream_id, None)
        channel._credit.release(channel.stream_id)
