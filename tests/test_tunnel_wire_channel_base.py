"""The QUIC and the HTTP/2 tunnel stream read, fail and close alike (wire/channel_base.py,
wire/link_base.py).

Both stream classes used to carry their own copy of the reading, parsing and failing logic, and
both connection classes their own copy of the stream tasks and of closing; they now share one
base each. These tests feed the same bytes to a real :class:`Channel` (on a real aioquic
connection) and a real :class:`H2Channel` (on a real ``h2`` connection), in-process and without
a network, and expect the same frames, the same ends and the same errors from both, so that the
two transports cannot drift apart again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from pq_quic_plugin.tunnel.wire import (
    ALPN,
    FrameType,
    ProtocolError,
    StreamReset,
    TunnelConnection,
    encode_frame,
    encode_json,
)
from pq_quic_plugin.tunnel.wire.channel_base import ChannelBase
from pq_quic_plugin.tunnel.wire.h2_channel import H2Channel
from pq_quic_plugin.tunnel.wire.h2_transport import STREAM_WINDOW, H2TunnelConnection

Made = tuple[Any, ChannelBase, Callable[[], None]]


class _Sink(asyncio.DatagramProtocol):
    """Where the QUIC link's packets go (nobody answers: its handshake never ends)."""


async def _quic() -> Made:
    """A client link on a real UDP socket, so that resets and credit updates are transmitted."""
    loop = asyncio.get_running_loop()
    sink, _ = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    address = sink.get_extra_info("sockname")
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=[ALPN]))
    transport, link = await loop.create_datagram_endpoint(
        lambda: TunnelConnection(quic), remote_addr=address
    )
    link.connect(address)

    def close() -> None:
        transport.close()
        sink.close()

    return link, link.open_channel(), close


async def _h2() -> Made:
    """An edge link before its TLS connection: frames written to it stay queued in ``h2``."""
    link = H2TunnelConnection("edge")
    channel = H2Channel(link, 3, 3, opened=True, window=STREAM_WINDOW)
    link.channels[3] = channel
    return link, channel, lambda: None


TRANSPORTS: dict[str, Callable[[], Awaitable[Made]]] = {"quic": _quic, "http2": _h2}


def _close(link: Any, reason: str) -> None:
    """End ``link`` the way its transport learns of it (not through the shared code)."""
    if isinstance(link, TunnelConnection):
        link.quic_event_received(events.ConnectionTerminated(0x11, None, reason))
    else:
        link.connection_lost(ConnectionResetError(reason))


def _run(transport: str, body: Callable[[Any, ChannelBase], Awaitable[None]]) -> None:
    async def main() -> None:
        link, channel, close = await TRANSPORTS[transport]()
        try:
            await asyncio.wait_for(body(link, channel), 5)
        finally:
            close()

    asyncio.run(main())


async def _read_all(channel: ChannelBase) -> list[tuple[FrameType, bytes]]:
    frames = []
    while (frame := await channel.read()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_frames_split_anyhow_come_out_whole_and_in_order(transport: str) -> None:
    wire = encode_json(FrameType.HEADERS, {"status": 200}) + b"".join(
        encode_frame(FrameType.DATA, bytes([i]) * (i * 1000)) for i in range(1, 6)
    )

    async def body(link: Any, channel: ChannelBase) -> None:
        pieces = [wire[i : i + 777] for i in range(0, len(wire), 777)]
        for piece in pieces[:-1]:
            channel.feed(piece, False)
        reader = asyncio.ensure_future(_read_all(channel))
        await asyncio.sleep(0)
        channel.feed(pieces[-1], True)
        frames = await reader
        assert frames[0] == (FrameType.HEADERS, b'{"status":200}')
        assert frames[1:] == [(FrameType.DATA, bytes([i]) * (i * 1000)) for i in range(1, 6)]
        assert channel.read_ready() is None

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_read_ready_hands_out_only_what_is_in(transport: str) -> None:
    async def body(link: Any, channel: ChannelBase) -> None:
        assert channel.read_ready() is None
        channel.feed(
            encode_frame(FrameType.DATA, b"a") + encode_frame(FrameType.DATA, b"b")[:2], False
        )
        assert channel.read_ready() == (FrameType.DATA, b"a")
        assert channel.read_ready() is None  # the second frame is not whole yet

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_whole_body_stays_whole_when_the_connection_closes(transport: str) -> None:
    async def body(link: Any, channel: ChannelBase) -> None:
        channel.feed(encode_frame(FrameType.DATA, b"complete"), True)
        _close(link, "connector shutting down")
        assert await _read_all(channel) == [(FrameType.DATA, b"complete")]

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_closing_fails_an_unfinished_stream_after_what_arrived(transport: str) -> None:
    closed: list[Any] = []
    failures: list[StreamReset] = []

    async def body(link: Any, channel: ChannelBase) -> None:
        link.on_close.append(closed.append)
        channel.on_fail.append(failures.append)
        channel.feed(encode_frame(FrameType.DATA, b"part"), False)
        _close(link, "went away")
        _close(link, "again")  # a second end changes nothing
        assert await channel.read() == (FrameType.DATA, b"part")
        with pytest.raises(StreamReset, match="tunnel connection closed: .*went away"):
            await channel.read()
        assert link.closed and link.closed_event.is_set()
        assert "went away" in link.close_reason
        assert closed == [link]
        assert len(failures) == 1
        with pytest.raises(StreamReset, match="tunnel connection closed"):
            await channel.send(FrameType.DATA, b"late")

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_end_inside_a_frame_is_an_error(transport: str) -> None:
    async def body(link: Any, channel: ChannelBase) -> None:
        channel.feed(encode_frame(FrameType.DATA, b"0123456789")[:-3], True)
        with pytest.raises(StreamReset, match="stream ended inside a frame"):
            await channel.read()

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_broken_frame_resets_the_stream(transport: str) -> None:
    failures: list[StreamReset] = []

    async def body(link: Any, channel: ChannelBase) -> None:
        channel.on_fail.append(failures.append)
        channel.feed(encode_frame(FrameType.DATA, b"ok") + b"\x7f\x00", False)  # unknown type 0x7F
        # The frame before the broken one was never handed out: the whole piece is refused.
        with pytest.raises(StreamReset, match="protocol error: unknown frame type 0x7F"):
            await channel.read()
        assert [str(f) for f in failures] == ["protocol error: unknown frame type 0x7F"]
        channel.feed(encode_frame(FrameType.DATA, b"after"), True)
        await channel.end()  # nothing to end on a failed stream: no error either
        with pytest.raises(StreamReset, match="protocol error"):
            await channel.send_data(b"x")

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("wire", "error", "match"),
    [
        (b"", StreamReset, "stream ended before its header"),
        (
            encode_json(FrameType.ERROR, {"reason": "no such host", "status": 404}),
            StreamReset,
            "no such host",
        ),
        (encode_frame(FrameType.DATA, b"{}"), ProtocolError, "expected HEADERS, got DATA"),
        (encode_frame(FrameType.HEADERS, b"[1]"), ProtocolError, "HEADERS payload is not an"),
    ],
)
def test_read_json_refuses_what_is_not_the_expected_object(
    transport: str, wire: bytes, error: type[Exception], match: str
) -> None:
    async def body(link: Any, channel: ChannelBase) -> None:
        channel.feed(wire, True)
        with pytest.raises(error, match=match) as caught:
            await channel.read_json(FrameType.HEADERS)
        if wire.startswith(bytes([FrameType.ERROR])):
            assert isinstance(caught.value, StreamReset) and caught.value.code == 404

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_reset_fails_the_stream_once_with_its_code(transport: str) -> None:
    failures: list[StreamReset] = []

    async def body(link: Any, channel: ChannelBase) -> None:
        channel.on_fail.append(failures.append)
        channel.reset(0x10)
        channel.reset(0x10)
        with pytest.raises(StreamReset, match="cancelled locally") as caught:
            await channel.read()
        assert caught.value.code == 0x10
        assert len(failures) == 1

    _run(transport, body)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_failing_stream_handler_resets_its_stream_and_is_forgotten(transport: str) -> None:
    """The task each stream the peer opens runs in (``LinkBase._spawn``), on both links."""
    seen: list[int] = []

    async def handler(channel: Any) -> None:
        seen.append(channel.stream_id)
        raise RuntimeError("the handler broke")

    async def body(link: Any, channel: ChannelBase) -> None:
        link.stream_handler = handler
        link._spawn(channel)
        for _ in range(10):
            await asyncio.sleep(0)
        assert seen == [channel.stream_id]
        assert channel.stream_id not in link.channels
        with pytest.raises(StreamReset, match="cancelled locally"):
            await channel.read()

    _run(transport, body)


@pytest.mark.parametrize(("transport", "code"), [("quic", 0x2), ("http2", 0x11)])
def test_a_refusal_waits_for_the_handshake(transport: str, code: int) -> None:
    """QUIC closes with CONNECTION_REFUSED once its handshake is done, HTTP/2 with a GOAWAY
    ERROR_SHUTDOWN (its handshake is done by the time it exists here)."""

    async def body(link: Any, channel: ChannelBase) -> None:
        link.refuse_soon("edge shutting down")
        assert not link.closed  # the peer could not read the reason yet
        if isinstance(link, TunnelConnection):
            link.quic_event_received(events.HandshakeCompleted("pq-tunnel/1", False, False))
            requested = link._quic._close_event  # the CONNECTION_CLOSE aioquic is to send
            assert requested is not None
            assert (requested.error_code, requested.reason_phrase) == (code, "edge shutting down")
        else:
            link.handshake_done = True
            link.refuse_soon("edge shutting down")
            assert link.closed and link.close_reason == "edge shutting down"
            assert link.close_code == code

    _run(transport, body)
