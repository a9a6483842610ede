"""What the edge and the connector need from a tunnel transport, whichever it is.

Two transports carry the same tunnel streams (docs/protocol.md): QUIC (:mod:`.channel`:
``Channel`` on ``TunnelConnection``) and HTTP/2 over TLS over TCP (:mod:`.h2_channel` on
:mod:`.h2_transport`). The edge and the connector are written against these two protocols, so
a request, a registration or a drain cannot behave differently on the two; anything a transport
does beyond them (QUIC's PING, HTTP/2's settings) stays inside that transport. What both
implement the same way is written once: :class:`~.channel_base.ChannelBase` (reading, parsing,
failing, splitting a body into frames) and :class:`~.link_base.LinkBase` (streams by ID, a task
per stream the peer opens, closing and refusing).

Checked statically: :func:`_quic_satisfies` and :func:`_h2_satisfies` fail ``mypy`` the day
either class stops matching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .frames import ERROR_CANCELLED, FrameType, StreamReset

if TYPE_CHECKING:
    from .channel import Channel, TunnelConnection
    from .h2_channel import H2Channel
    from .h2_transport import H2TunnelConnection

__all__ = ["TunnelLink", "TunnelStream"]


class TunnelStream(Protocol):
    """One tunnel stream: a request, or the control stream. Frames in, frames out."""

    #: Called once with the error when the stream fails, whatever it was doing.
    on_fail: list[Callable[[StreamReset], None]]

    @property
    def stream_id(self) -> int:
        """The tunnel's number for the stream (0 is the control stream on both transports)."""
        ...

    @property
    def connection(self) -> TunnelLink: ...

    async def read(self) -> tuple[FrameType, bytes] | None:
        """The next frame; None at the end of the stream; raises StreamReset if cancelled."""
        ...

    async def read_json(self, expect: FrameType) -> dict[str, Any]: ...

    async def send(
        self, frame_type: FrameType, payload: bytes = b"", end: bool = False
    ) -> None: ...

    async def send_json(self, frame_type: FrameType, message: dict, end: bool = False) -> None: ...

    async def send_data(self, data: bytes, end: bool = False) -> None: ...

    async def end(self) -> None: ...

    async def drain(self) -> None: ...

    def reset(self, code: int = ERROR_CANCELLED) -> None: ...

    def fail(self, error: StreamReset) -> None: ...

    def release_credit(self) -> None: ...


class TunnelLink(Protocol):
    """One connection between an edge and a connector, carrying many :class:`TunnelStream`.

    Streams the peer opens go to the link's stream handler (set by whoever creates the link:
    its type names the transport's own stream class, so it is not part of this protocol).
    """

    #: The hop list's ``transport`` for this link: ``quic`` or ``tcp``.
    transport_name: str
    #: The connector's ``protocol`` that made it: ``quic`` or ``http2``.
    protocol_name: str

    @property
    def channels(self) -> Mapping[int, TunnelStream]:
        """Open streams by :attr:`TunnelStream.stream_id`; ``channels.get(0)`` is control."""
        ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_reason(self) -> str: ...

    @property
    def close_code(self) -> int | None: ...

    @property
    def handshake_done(self) -> bool: ...

    @property
    def closed_event(self) -> asyncio.Event: ...

    @property
    def on_close(self) -> list[Callable[[Any], None]]:
        """Called once with the link when it closes (for whatever reason)."""
        ...

    def open_channel(self) -> TunnelStream: ...

    def forget(self, channel: Any) -> None:
        """``channel`` (one of this link's) is done with: drop it and whatever it holds."""
        ...

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None: ...

    def transmit(self) -> None:
        """Send what is queued now (QUIC: build packets; HTTP/2: write the pending frames)."""
        ...

    def refuse_soon(self, reason: str) -> None:
        """Close a new connection with ``reason`` as soon as the peer can read it."""
        ...

    def peer_address(self) -> tuple[str, int]:
        """The other end's (host, port)."""
        ...

    async def wait_flushed(self, timeout: float, stopped: Callable[[], bool] | None = None) -> int:
        """Wait up to ``timeout`` until everything sent has left (QUIC: acknowledged by the
        peer; HTTP/2: handed to the kernel); returns the bytes still waiting (0: none)."""
        ...


if TYPE_CHECKING:

    def _quic_satisfies(link: TunnelConnection, stream: Channel) -> tuple[TunnelLink, TunnelStream]:
        return link, stream

    def _h2_satisfies(
        link: H2TunnelConnection, stream: H2Channel
    ) -> tuple[TunnelLink, TunnelStream]:
        return link, stream
