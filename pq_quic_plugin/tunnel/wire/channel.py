"""One tunnel stream as an asyncio reader and writer of frames, and the QUIC connection that
hands out those streams (docs/protocol.md). The framing itself is in :mod:`.frames`; what a
stream and a connection do the same way on HTTP/2 is in :mod:`.channel_base` and
:mod:`.link_base`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.quic import events

from ...aioquic_binding.facade import allow_concurrent_streams, peer_address, quic_of
from ...aioquic_binding.flow_control import ReceiveCredit, tune_windows
from ...aioquic_binding.send_backpressure import (
    ProgressSignal,
    wait_for_all_acked,
    wait_for_send_room,
)
from .channel_base import ChannelBase
from .frames import ERROR_CANCELLED, StreamReset
from .link_base import STREAMS_PER_CONNECTION, LinkBase


class Channel(ChannelBase):
    """One bidirectional QUIC stream as an async reader and writer of frames.

    The stream's receive window opens as :meth:`read` takes frames (not as they arrive), so a
    peer can be at most one window ahead of the reader: frames waiting here are bounded.
    """

    def __init__(self, connection: TunnelConnection, stream_id: int) -> None:
        super().__init__(stream_id)
        self.connection = connection
        self._credit = ReceiveCredit.of(quic_of(connection))
        self._credit.track(stream_id)

    # -- receiving: the stream's window follows the reader (flow_control.ReceiveCredit)
    def release_credit(self) -> None:
        """Stop pacing this stream's receive window (it is finished with)."""
        self._credit.release(self.stream_id)

    def _accept(self, size: int) -> bool:
        self._credit.delivered(self.stream_id, size)
        return self._error is None  # nobody reads past a failure

    def _fed(self) -> None:
        # Bytes of an incomplete frame count as taken: a frame larger than the window must be
        # able to arrive whole (the parser bounds it to MAX_FRAME). The limit goes out with
        # the packets this datagram's processing ends with.
        self._credit.waiting(self.stream_id, self._queued)

    def _taken(self, size: int) -> None:
        if self._credit.waiting(self.stream_id, self._queued) and not self.connection.closed:
            self.connection.transmit()  # carries the MAX_STREAM_DATA

    def _wake_writers(self) -> None:
        self.connection.progress.wake_all()  # a writer waiting in drain() stops now

    # -- writing
    async def _write(self, data: bytes, end: bool) -> None:
        if self._error is not None:
            raise self._error
        quic_of(self.connection).send_stream_data(self.stream_id, data, end)
        self.connection.transmit_soon()
        await self.drain()

    async def _write_end(self) -> None:
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


StreamHandler = Callable[[Channel], Awaitable[None]]


class TunnelConnection(LinkBase[Channel], QuicConnectionProtocol):
    """A QUIC connection whose streams become :class:`Channel` objects.

    Streams the peer opens are handed to ``stream_handler`` in their own task; streams this
    side opens come from :meth:`open_channel`.
    """

    #: What the hop list and the operations pages call this transport (HTTP/2's: tcp, http2).
    transport_name = "quic"
    protocol_name = "quic"
    #: CONNECTION_REFUSED, closing a connection refused with :meth:`refuse_soon`.
    REFUSAL_CODE: ClassVar[int] = 0x2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Streams start with a small window that grows while their reader keeps up, so a
        # visitor that stops reading holds little of the tunnel (flow_control.tune_windows).
        tune_windows(self._quic)
        allow_concurrent_streams(self._quic, STREAMS_PER_CONNECTION)
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
            reason = event.reason_phrase or f"error 0x{event.error_code:X}"
            self._mark_closed(event.error_code, reason)

    def _is_new_peer_stream(self, stream_id: int) -> bool:
        """Peers open streams in increasing order, so a new one is above all seen before."""
        peer_bit = 1 if self._quic.configuration.is_client else 0
        if stream_id & 1 != peer_bit or stream_id <= self._last_peer_stream:
            return False
        self._last_peer_stream = stream_id
        return True

    def _forgotten(self, channel: Channel) -> None:
        channel.release_credit()
