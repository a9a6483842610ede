"""What a tunnel connection does the same way on either transport: its streams by tunnel stream
ID, one task per stream the peer opens, closing once, and refusing a new connection.

The QUIC :class:`~.channel.TunnelConnection` and the HTTP/2
:class:`~.h2_transport.H2TunnelConnection` differ in how they learn of streams and of the end
(aioquic events, ``h2`` events and TCP), not in what follows: a stream handler that fails resets
its stream and is logged the same way, and a closing connection fails every stream with the
same reason before anyone waiting on ``closed_event`` or ``on_close`` hears of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .channel_base import ChannelBase
from .frames import ProtocolError, StreamReset

__all__ = ["STREAMS_PER_CONNECTION", "LinkBase"]

#: Tunnel streams (requests and WebSockets) one connection carries at once, on either
#: transport: the connector grants the edge this many (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS,
#: QUIC's MAX_STREAMS, topped up as streams end). No fewer than the edge's default
#: ``max-requests-per-tunnel`` (512), so that limit, with its clear 503, is what a busy tunnel
#: meets, not a silent wait for a stream (aioquic grants 128; cloudflared's quic-go has no limit).
STREAMS_PER_CONNECTION = 512

logger = logging.getLogger("pq_quic_plugin.tunnel")

ChannelT = TypeVar("ChannelT", bound=ChannelBase)


class LinkBase(Generic[ChannelT]):
    """The transport-neutral half of a tunnel connection (a mixin placed before the transport's
    own protocol class, whose ``__init__`` it passes its arguments to).

    A transport supplies ``close(error_code, reason_phrase)``, sets :attr:`handshake_done` and
    calls :meth:`_refuse` when its handshake ends, :meth:`_spawn` for each stream the peer
    opens, and :meth:`_mark_closed` when the connection ends, whichever side ended it.
    """

    #: Streams the peer opens go here, each in a task of its own (None: they are reset).
    stream_handler: Callable[[ChannelT], Awaitable[None]] | None = None
    #: The code :meth:`refuse_soon` closes with.
    REFUSAL_CODE: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Open streams by tunnel stream ID (0: the control stream).
        self.channels: dict[int, ChannelT] = {}
        self.closed = False
        self.close_reason = ""
        #: The code the connection closed with (transport or application), None while open
        #: and for a connection that ended without one.
        self.close_code: int | None = None
        self.handshake_done = False
        self.closed_event = asyncio.Event()
        #: Called once with the connection when it closes (for whatever reason).
        self.on_close: list[Callable[[Any], None]] = []
        self._refusal: str | None = None  # see refuse_soon
        self._tasks: set[asyncio.Task[None]] = set()

    if TYPE_CHECKING:

        def close(self, error_code: int = 0, reason_phrase: str = "") -> None: ...

    def refuse_soon(self, reason: str) -> None:
        """Close this new connection with ``reason`` as soon as the peer can read it.

        On QUIC a CONNECTION_CLOSE sent before the handshake ends goes out under the newest
        keys the server has (1-RTT) which the client cannot read yet, so it would just see a
        timeout; on HTTP/2 there is no GOAWAY before the connection preface. Closing at the end
        of the handshake lets the peer log the reason instead.
        """
        self._refusal = reason
        if self.handshake_done:
            self._refuse()

    def _refuse(self) -> None:
        if self._refusal is not None and not self.closed:
            self.close(self.REFUSAL_CODE, self._refusal)

    def _spawn(self, channel: ChannelT) -> None:
        """Run the stream handler on ``channel`` in a task of its own; a handler that fails
        resets the stream, and the stream is forgotten when the handler returns."""
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

    def forget(self, channel: ChannelT) -> None:
        """The stream is done with: drop it and whatever the transport holds for it."""
        self.channels.pop(channel.stream_id, None)
        self._forgotten(channel)

    def _forgotten(self, channel: ChannelT) -> None:
        """Settle what the transport holds for ``channel`` (now out of :attr:`channels`)."""

    def _mark_closed(self, code: int | None, reason: str) -> None:
        """The connection ended (once): every stream fails with ``reason``, then
        ``closed_event`` is set and ``on_close`` is told."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        for channel in list(self.channels.values()):
            channel.fail(StreamReset(f"tunnel connection closed: {reason}"))
        self._streams_failed()
        self.closed_event.set()
        for callback in list(self.on_close):
            callback(self)

    def _streams_failed(self) -> None:
        """Every stream has failed and ``on_close`` is still to be told: stop what writes."""
