"""One tunnel stream as an asyncio reader and writer of frames, and the QUIC connection that
hands out those streams (docs/protocol.md). The framing itself is in :mod:`.frames`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.buffer import size_uint_var
from aioquic.quic import events

from ...aioquic_binding.facade import peer_address, quic_of
from ...aioquic_binding.flow_control import ReceiveCredit, tune_windows
from ...aioquic_binding.send_backpressure import (
    ProgressSignal,
    wait_for_all_acked,
    wait_for_send_room,
)
from .frames import (
    DATA_CHUNK,
    ERROR_CANCELLED,
    FrameParser,
    FrameType,
    ProtocolError,
    StreamReset,
    encode_frame,
)

logger = logging.getLogger("pq_quic_plugin.tunnel")


class Channel:
    """One bidirectional QUIC stream as an async reader and writer of frames.

    The stream's receive window opens as :meth:`read` takes frames (not as they arrive), so a
    peer can be at most one window ahead of the reader: frames waiting here are bounded.
    """

    def __init__(self, connection: TunnelConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._credit = ReceiveCredit.of(quic_of(connection))
        self._credit.track(stream_id)
        self._parser = FrameParser()
        self._frames: collections.deque[tuple[FrameType, bytes]] = collections.deque()
        self._reader: asyncio.Future[None] | None = None  # read() waiting for a frame
        self._waiting = 0  # bytes (as sent) of the frames in _frames
        self._error: StreamReset | None = None
        self._ended = False
        self._eof = False  # the peer's FIN arrived after whole frames: the body is complete
        #: Called once with the error when the stream fails (reset either way, or the
        #: connection closed), even after its body ended: a relay pipes on a stream no one
        #: reads or writes any more (cluster/peer_serve.py).
        self.on_fail: list[Callable[[StreamReset], None]] = []

    # -- receiving (called by the connection)
    def release_credit(self) -> None:
        """Stop pacing this stream's receive window (it is finished with)."""
        self._credit.release(self.stream_id)

    def feed(self, data: bytes, end: bool) -> None:
        self._credit.delivered(self.stream_id, len(data))
        if self._error is not None:
            return  # nobody reads past a failure
        try:
            for frame in self._parser.feed(data):
                self._frames.append(frame)
                self._waiting += _wire_size(frame)
        except ProtocolError as exc:
            self.fail(StreamReset(f"protocol error: {exc}"))
            self.reset(ERROR_CANCELLED)
            return
        if end:
            if self._parser.pending:
                self.fail(StreamReset("stream ended inside a frame"))
            else:
                self._eof = True
        # Bytes of an incomplete frame count as taken: a frame larger than the window must be
        # able to arrive whole (the parser bounds it to MAX_FRAME). The limit goes out with
        # the packets this datagram's processing ends with.
        self._credit.waiting(self.stream_id, self._waiting)
        self._wake_reader()

    def fail(self, error: StreamReset) -> None:
        if self._error is None:
            self._error = error
            self._wake_reader()
            self.connection.progress.wake_all()  # a writer waiting in drain() stops now
            for callback in self.on_fail:
                callback(error)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    # -- reading
    async def read(self) -> tuple[FrameType, bytes] | None:
        """The next frame, or None at the end of the stream; raises StreamReset if cancelled."""
        while not self._frames:
            # A body that arrived whole stays whole: the connection closing after the peer's
            # FIN (a connector draining) must not turn a complete response into an error.
            if self._eof:
                return None
            if self._error is not None:
                raise self._error
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._take()

    def read_ready(self) -> tuple[FrameType, bytes] | None:
        """The next frame if it has arrived already, else None (never waits): lets the edge
        put the frames that came in together into one write to the visitor."""
        return self._take() if self._frames else None

    def _take(self) -> tuple[FrameType, bytes]:
        frame = self._frames.popleft()
        self._waiting -= _wire_size(frame)
        if self._credit.waiting(self.stream_id, self._waiting) and not self.connection.closed:
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
        quic = quic_of(self.connection)
        quic.send_stream_data(self.stream_id, encode_frame(frame_type, payload), end)
        self.connection.transmit_soon()
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
        quic_of(self.connection).send_stream_data(self.stream_id, b"", end_stream=True)
        self.connection.transmit()

    async def drain(self) -> None:
        """Wait while too much is queued for this stream: bounded memory for big bodies."""
        await wait_for_send_room(
            quic_of(self.connection),
            self.stream_id,
            self.connection.progress,
            stopped=lambda: self._error is not None or self.connection.closed,
        )
        if self.connection.closed and self._error is None:
            raise StreamReset("tunnel connection closed")

    def reset(self, code: int = ERROR_CANCELLED) -> None:
        """Cancel both directions (RESET_STREAM + STOP_SENDING)."""
        quic = quic_of(self.connection)
        # Frames written this turn (transmit_soon) go out first: aioquic drops a stream's unsent
        # data at RESET_STREAM, and a response head already written must reach the peer.
        if not self.connection.closed:
            self.connection.transmit()
        try:
            quic.reset_stream(self.stream_id, code)
        except Exception:  # noqa: BLE001 - already finished or not writable: nothing to reset
            pass
        try:
            quic.stop_stream(self.stream_id, code)
        except Exception:  # noqa: BLE001
            pass
        self.connection.transmit()
        self.fail(StreamReset("cancelled locally", code))


def _wire_size(frame: tuple[FrameType, bytes]) -> int:
    """The bytes ``frame`` took on the stream (type, length, payload)."""
    return 1 + size_uint_var(len(frame[1])) + len(frame[1])


StreamHandler = Callable[[Channel], Awaitable[None]]


class TunnelConnection(QuicConnectionProtocol):
    """A QUIC connection whose streams become :class:`Channel` objects.

    Streams the peer opens are handed to ``stream_handler`` in their own task; streams this
    side opens come from :meth:`open_channel`.
    """

    stream_handler: StreamHandler | None = None
    #: What the hop list and the operations pages call this transport (HTTP/2's: tcp, http2).
    transport_name = "quic"
    protocol_name = "quic"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Streams start with a small window that grows while their reader keeps up, so a
        # visitor that stops reading holds little of the tunnel (flow_control.tune_windows).
        tune_windows(self._quic)
        self.channels: dict[int, Channel] = {}
        self.closed = False
        self.close_reason = ""
        #: The CONNECTION_CLOSE's error code (transport or application), None while open.
        self.close_code: int | None = None
        self.handshake_done = False
        self._refusal: str | None = None  # see refuse_soon
        self.closed_event = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self.on_close: list[Callable[[TunnelConnection], None]] = []
        self._last_peer_stream = -1
        self.progress = ProgressSignal()  # wakes writers waiting in Channel.drain
        self._transmit_pending = False

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        super().datagram_received(data, addr)
        self.progress.notify()

    def transmit_soon(self) -> None:
        """Send what the streams queued once this turn of the event loop is over.

        A connector relaying an origin's body writes one small frame per origin datagram, often
        for many streams at once; transmitting after each would put each frame in a datagram of
        its own (half empty, and a packet to build, encrypt and acknowledge). Frames written in
        the same turn share datagrams instead.
        """
        if not self._transmit_pending:
            self._transmit_pending = True
            asyncio.get_running_loop().call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._transmit_pending = False
        if not self.closed:
            self.transmit()

    def error_received(self, exc: Exception) -> None:
        """The socket reported an error (on a connected socket: ICMP port unreachable when
        nothing listens on the peer's port). Waiting for the idle timeout would only delay
        the same outcome, so close now and say why."""
        if self.closed:
            return
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            reason = "UDP unreachable (ICMP port unreachable: nothing listens there)"
        elif isinstance(exc, PermissionError):
            reason = "UDP blocked (sending was not permitted: a local firewall drops UDP)"
        self.close(error_code=0x0, reason_phrase=reason)

    def peer_address(self) -> tuple[str, int]:
        return peer_address(self)

    async def wait_flushed(self, timeout: float, stopped: Callable[[], bool] | None = None) -> int:
        """Wait up to ``timeout`` until the peer acknowledged every byte sent on any stream;
        returns what is still unacknowledged (0: all), for a drain that must not cut a
        response whose writer already finished."""
        return await wait_for_all_acked(self._quic, self.progress.wait, timeout, stopped=stopped)

    def refuse_soon(self, reason: str) -> None:
        """Close this new connection with ``reason`` as soon as the peer can read it.

        A CONNECTION_CLOSE sent before the handshake ends goes out under the newest keys the
        server has (1-RTT) which the client cannot read yet, so it would just see a timeout;
        closing at the end of the handshake lets it log the reason instead.
        """
        self._refusal = reason
        if self.handshake_done:
            self._refuse()

    def _refuse(self) -> None:
        if self._refusal is not None and not self.closed:
            self.close(error_code=0x2, reason_phrase=self._refusal)  # CONNECTION_REFUSED

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
            channel.feed(event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            channel = self.channels.get(event.stream_id)
            if channel is not None:
                channel.fail(StreamReset("reset by peer", event.error_code))
        elif isinstance(event, events.StopSendingReceived):
            channel = self.channels.get(event.stream_id)
            if channel is not None:
                channel.fail(StreamReset("peer stopped reading", event.error_code))
        elif isinstance(event, events.HandshakeCompleted):
            self.handshake_done = True
            self._refuse()
        elif isinstance(event, events.ConnectionTerminated):
            self.closed = True
            self.close_code = event.error_code
            self.close_reason = event.reason_phrase or f"error 0x{event.error_code:X}"
            for channel in self.channels.values():
                channel.fail(StreamReset(f"tunnel connection closed: {self.close_reason}"))
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
        channel.release_credit()
