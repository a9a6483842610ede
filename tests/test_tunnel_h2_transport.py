"""The tunnel's HTTP/2 transport (``tunnel/wire/h2_*``) between a real edge link and a real
connector link: TLS 1.3 over TCP on 127.0.0.1 through ``ssl_context``, HTTP/2 by ``h2``.

Each test drives both ends in one event loop through the same calls the edge and the connector
make on QUIC channels (``open_channel``, ``send_json``, ``send_data``, ``read``, ``reset``,
``forget``), and checks what the other end saw: the negotiated group, the control exchange,
bodies intact (sha256) on many streams at once, a slow reader that holds at most one window and
stalls nobody else, resets and malformed frames that cost one stream only, keepalive and GOAWAY.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from h2_link_util import (
    BODY,
    MB,
    body_chunks,
    dialled,
    echo_hash,
    pair,
    read_all,
    request,
    run,
    sha,
)

import pq_quic_plugin
from pq_quic_plugin.tls_binding import PostQuantumRefusedError
from pq_quic_plugin.tunnel.wire.frames import (
    CONTROL_STREAM_ID,
    ERROR_AUTH,
    ERROR_CANCELLED,
    MAX_FRAME,
    FrameType,
    StreamReset,
)
from pq_quic_plugin.tunnel.wire.h2_channel import H2Channel
from pq_quic_plugin.tunnel.wire.h2_transport import STREAM_WINDOW, H2TunnelConnection


@pytest.fixture(scope="module")
def noise() -> bytes:
    """Random bytes every body is cut from (rotated per stream, so no two streams match)."""
    return os.urandom(BODY)


# ------------------------------------------------------------------ handshake


def test_both_sides_report_the_post_quantum_group(pki) -> None:
    async def main() -> None:
        async with pair(pki) as p:
            for link in (p.edge, p.connector):
                assert link.group is not None and link.group.name == "X25519MLKEM768"
                assert link.group.post_quantum
                # The package's one accessor works on this link as on a QUIC connection.
                assert pq_quic_plugin.negotiated_group(link) is link.group
                assert link.get_extra_info("ssl_object").selected_alpn_protocol() == (
                    "pq-tunnel-h2/1"
                )
                assert (link.transport_name, link.protocol_name) == ("tcp", "http2")
            host, port = p.edge.peer_address()
            assert host == "127.0.0.1" and port == p.connector.get_extra_info("sockname")[1]

    run(main())


def test_strict_connector_is_refused_by_a_classical_edge_in_the_handshake(pki) -> None:
    """``post-quantum`` over http2 is post-quantum only, as on QUIC: an edge that allows only
    classical groups gets no connection, and the connector says why."""

    async def main() -> None:
        with pytest.raises(PostQuantumRefusedError) as info:
            async with pair(pki, edge_groups=["x25519", "secp256r1"]):
                pass
        message = str(info.value)
        assert "post-quantum handshake refused by the peer" in message
        assert "X25519MLKEM768" in message and "No classical connection was made." in message

    run(main())


def test_a_connector_without_post_quantum_falls_back_to_classical(pki) -> None:
    """The contrast: without ``post-quantum`` the same edge is reached, classically."""

    async def main() -> None:
        async with pair(pki, edge_groups=["x25519"], post_quantum=False) as p:
            assert p.connector.group is not None and p.connector.group.name == "x25519"
            assert not p.connector.group.post_quantum

    run(main())


# ------------------------------------------------------------------ control stream


def test_control_stream_carries_the_registration_exchange(pki) -> None:
    async def main() -> None:
        async with pair(pki) as p:
            # The connector opens "its" control stream as on QUIC, before or after the
            # edge's HEADERS for it arrived: hello goes out once they have.
            control = p.connector.open_channel()
            assert control.stream_id == CONTROL_STREAM_ID
            assert p.connector.channels.get(0) is control
            with pytest.raises(StreamReset, match="only the edge opens streams"):
                p.connector.open_channel()
            await control.send_json(FrameType.CONTROL, {"type": "hello", "version": 1})
            edge_control = await p.edge_control
            assert p.edge.channels.get(0) is edge_control
            assert await edge_control.read_json(FrameType.CONTROL) == {
                "type": "hello",
                "version": 1,
            }
            await edge_control.send_json(FrameType.CONTROL, {"type": "challenge", "nonce": "x"})
            assert (await control.read_json(FrameType.CONTROL))["type"] == "challenge"
            await control.send_json(FrameType.CONTROL, {"type": "auth", "proof": "y"})
            assert (await edge_control.read_json(FrameType.CONTROL))["proof"] == "y"
            await edge_control.send_json(FrameType.CONTROL, {"type": "registered"})
            assert (await control.read_json(FrameType.CONTROL))["type"] == "registered"
            # The stream stays open: drain comes later, as on QUIC.
            await asyncio.sleep(0.05)
            await control.send_json(FrameType.CONTROL, {"type": "drain"})
            assert (await edge_control.read_json(FrameType.CONTROL))["type"] == "drain"

    run(main())


# ------------------------------------------------------------------ requests


@pytest.mark.slow  # 160 MB through TLS and HTTP/2 in both directions, one process
def test_many_concurrent_streams_carry_bodies_both_ways_intact(pki, noise) -> None:
    async def main() -> None:
        async with pair(pki, lambda ch: echo_hash(ch, noise)) as p:
            started = time.perf_counter()
            await asyncio.gather(*(request(p.edge, noise, i, BODY) for i in range(4)))
            elapsed = time.perf_counter() - started
            print(f"\n4 streams x {BODY // MB} MB each way: {8 * BODY / elapsed / 1e6:.0f} MB/s")
            assert not p.edge.closed and not p.connector.closed
            assert p.edge.channels.keys() == {0}  # every request stream forgotten

    run(main(), timeout=120)


def test_finished_requests_give_their_stream_slots_back(pki, noise) -> None:
    """Batches of small requests: every finished stream is closed in HTTP/2 too, so none
    keeps one of the connector's concurrent-stream slots."""

    async def main() -> None:
        async with pair(pki, lambda ch: echo_hash(ch, noise)) as p:
            for batch in range(3):
                await asyncio.gather(
                    *(request(p.edge, noise, batch * 50 + i, 1000 + i) for i in range(50))
                )
            assert p.edge.h2.open_outbound_streams == 1  # the control stream only

    run(main())


# ------------------------------------------------------------------ memory and isolation


@pytest.mark.parametrize("slow_side", ["edge", "connector"])
def test_a_slow_reader_holds_one_window_and_stalls_no_other_stream(pki, noise, slow_side) -> None:
    """One stream's reader stops reading while its peer has 20 MB to send: what waits for it
    stays within one stream window, its writer is held back, and another stream moves 20 MB
    meanwhile. Then the slow reader reads, and its body arrives whole."""
    release = asyncio.Event()
    progress = {"sent": 0}
    body = body_chunks(noise, 7, BODY)

    async def writer(channel: H2Channel) -> None:
        for chunk in body:
            await channel.send_data(chunk)
            progress["sent"] += len(chunk)
        await channel.end()

    async def connector_side(channel: H2Channel) -> None:
        head = await channel.read_json(FrameType.HEADERS)
        if head.get("kind") != "slow":
            await echo_hash(channel, noise, head)
        elif slow_side == "edge":  # the connector sends, the edge does not read
            await writer(channel)
        else:  # the edge sends, the connector does not read until released
            await release.wait()
            digest, size = await read_all(channel)
            await channel.send_json(FrameType.HEADERS, {"sha256": digest, "size": size}, True)

    async def main() -> None:
        async with pair(pki, connector_side) as p:
            slow = p.edge.open_channel()
            await slow.send_json(FrameType.HEADERS, {"kind": "slow"})
            if slow_side == "connector":
                upload = asyncio.ensure_future(writer(slow))
            else:
                await slow.end()
            await asyncio.sleep(0.3)  # let the slow stream fill its window
            # Another stream: fast, both ways, while the slow one is stuck.
            fast = asyncio.ensure_future(request(p.edge, noise, 3, BODY))
            await asyncio.wait_for(asyncio.shield(fast), 30)
            reader_side = p.edge if slow_side == "edge" else p.connector
            held = reader_side.channels[slow.stream_id].buffered
            assert 0 < held <= STREAM_WINDOW
            assert progress["sent"] < BODY / 4  # the writer is held back, not buffering it all
            release.set()
            if slow_side == "edge":
                digest, size = await read_all(slow)
                assert (digest, size) == (sha(body), BODY)
            else:
                await upload
                report = await slow.read_json(FrameType.HEADERS)
                assert report == {"sha256": sha(body), "size": BODY}
            assert progress["sent"] == BODY

    run(main(), timeout=120)


def test_a_reset_cancels_one_stream_and_leaves_the_others_intact(pki, noise) -> None:
    seen: dict[int, StreamReset] = {}

    async def connector_side(channel: H2Channel) -> None:
        head = await channel.read_json(FrameType.HEADERS)
        if head.get("victim"):
            try:
                await read_all(channel)
            except StreamReset as exc:
                seen[channel.stream_id] = exc
                raise
            return
        if head.get("connector_resets"):
            await channel.send_json(FrameType.HEADERS, {"status": 200})
            await channel.send_data(b"partial")
            channel.reset()
            return
        await echo_hash(channel, noise, head)

    async def main() -> None:
        async with pair(pki, connector_side) as p:
            others = [asyncio.ensure_future(request(p.edge, noise, i, 3 * MB)) for i in range(3)]
            victim = p.edge.open_channel()
            await victim.send_json(FrameType.HEADERS, {"victim": True})
            await victim.send_data(b"x" * 100_000)
            await asyncio.sleep(0.05)
            victim.reset()
            with pytest.raises(StreamReset, match="cancelled locally"):
                await victim.read()
            p.edge.forget(victim)
            # The connector's side of a reset: its handler sees the edge's code.
            aborted = p.edge.open_channel()
            await aborted.send_json(FrameType.HEADERS, {"connector_resets": True})
            assert (await aborted.read_json(FrameType.HEADERS))["status"] == 200
            frame = await aborted.read()
            assert frame == (FrameType.DATA, b"partial")
            with pytest.raises(StreamReset) as info:
                await aborted.read()
            assert info.value.code == ERROR_CANCELLED and "reset by peer" in str(info.value)
            p.edge.forget(aborted)
            await asyncio.gather(*others)
            for _ in range(50):
                if victim.stream_id in seen:
                    break
                await asyncio.sleep(0.01)
            assert seen[victim.stream_id].code == ERROR_CANCELLED
            assert not p.edge.closed and not p.connector.closed

    run(main())


@pytest.mark.parametrize(
    "garbage",
    [
        bytes([0x7F, 0x01, 0x00]),  # an unknown frame type
        bytes([0x00]) + bytes.fromhex("80200001"),  # a DATA frame declaring 2 MiB
        bytes([0x05]) + bytes.fromhex("4401") + b"{",  # 1025 bytes declared, 1 sent, then FIN
    ],
    ids=["unknown-type", "oversized", "ends-inside-a-frame"],
)
def test_malformed_tunnel_frames_reset_only_their_stream(pki, noise, garbage) -> None:
    failures: list[StreamReset] = []

    async def connector_side(channel: H2Channel) -> None:
        try:
            head = await channel.read_json(FrameType.HEADERS)
        except StreamReset as exc:
            failures.append(exc)
            raise
        if head.get("bad"):
            try:
                await read_all(channel)
            except StreamReset as exc:
                failures.append(exc)
                raise
            return
        await echo_hash(channel, noise, head)

    async def main() -> None:
        async with pair(pki, connector_side) as p:
            good = asyncio.ensure_future(request(p.edge, noise, 1, 2 * MB))
            bad = p.edge.open_channel()
            await bad.send_json(FrameType.HEADERS, {"bad": True})
            # Raw bytes on the HTTP/2 stream, past the tunnel framing (a broken peer).
            p.edge.writer.send_chunk(bad, garbage, end=True)
            with pytest.raises(StreamReset) as info:
                await bad.read()
            assert info.value.code == ERROR_CANCELLED
            p.edge.forget(bad)
            await good
            assert len(failures) == 1
            assert "protocol error" in str(failures[0]) or "inside a frame" in str(failures[0])
            assert not p.edge.closed and not p.connector.closed

    run(main())


def test_a_largest_tunnel_frame_fits_through_the_stream_window(pki) -> None:
    """A 1 MiB WebSocket message is one tunnel frame: it must arrive although the reader
    opens the window only as it takes frames (it could never take half a frame)."""
    message = os.urandom(MAX_FRAME)
    # Each 200 kB frame leaves less than a quarter window taken but not yet given back: what
    # is left of the window is then smaller than the 1 MiB frame that follows.
    sent = [b"!" * 200_000, message] * 3

    async def connector_side(channel: H2Channel) -> None:
        await channel.read_json(FrameType.HEADERS)
        while (frame := await channel.read()) is not None:
            await channel.send(FrameType.WS_BINARY, frame[1])
        await channel.end()

    async def edge_sends(channel: H2Channel) -> None:
        for payload in sent:
            await channel.send(FrameType.WS_BINARY, payload)
        await channel.end()

    async def main() -> None:
        async with pair(pki, connector_side) as p:
            channel = p.edge.open_channel()
            await channel.send_json(FrameType.HEADERS, {"websocket": True})
            sending = asyncio.ensure_future(edge_sends(channel))
            got = []
            while (frame := await channel.read()) is not None:
                got.append(frame)
            await sending
            assert got == [(FrameType.WS_BINARY, payload) for payload in sent]

    run(main(), timeout=20)


# ------------------------------------------------------------------ connection level


def test_goaway_carries_the_close_code_and_reason(pki) -> None:
    async def connector_side(channel: H2Channel) -> None:
        await channel.read()
        await asyncio.sleep(30)

    async def main() -> None:
        closed: list[H2TunnelConnection] = []
        async with pair(pki, connector_side) as p:
            p.connector.on_close.append(closed.append)
            open_stream = p.edge.open_channel()
            await open_stream.send_json(FrameType.HEADERS, {})
            await asyncio.sleep(0.05)
            connector_stream = p.connector.channels[open_stream.stream_id]
            p.edge.close(error_code=ERROR_AUTH, reason_phrase="tunnel deleted")
            await asyncio.wait_for(p.connector.closed_event.wait(), 5)
            assert (p.connector.close_code, p.connector.close_reason) == (
                ERROR_AUTH,
                "tunnel deleted",
            )
            assert (p.edge.close_code, p.edge.close_reason) == (ERROR_AUTH, "tunnel deleted")
            assert closed == [p.connector]
            with pytest.raises(StreamReset, match="tunnel deleted"):
                await connector_stream.read()
            with pytest.raises(StreamReset):
                p.edge.open_channel()

    run(main())


def test_an_edge_that_refuses_says_why_in_its_goaway(pki) -> None:
    """A stopping edge refuses a new connector right after the handshake (QUIC:
    CONNECTION_REFUSED); the GOAWAY's debug data carries the reason to the connector."""

    async def refusing() -> None:
        def make_edge() -> H2TunnelConnection:
            link = H2TunnelConnection("edge")
            link.refuse_soon("edge shutting down")
            return link

        async with dialled(pki, make_edge) as (connector, _):
            with pytest.raises(StreamReset, match="edge shutting down"):
                control = connector.open_channel()  # raises if the GOAWAY came first
                await control.send_json(FrameType.CONTROL, {"type": "hello"})
            await asyncio.wait_for(connector.closed_event.wait(), 5)
            assert connector.close_reason == "edge shutting down"

    run(refusing())


def test_keepalive_keeps_a_quiet_connection_and_closes_a_dead_one(pki) -> None:
    quick = {"keepalive": 0.1, "idle_timeout": 0.5}
    patient = {"keepalive": 10.0, "idle_timeout": 30.0}  # the edge never pings first here

    async def main() -> None:
        async with pair(pki, edge_kw=patient, connector_kw=quick) as p:
            await asyncio.sleep(1.5)  # three idle timeouts without a request: PINGs keep it
            assert not p.edge.closed and not p.connector.closed
            # The edge stops reading, so it answers no PING: a dead peer for the connector.
            p.edge._transport.pause_reading()
            started = time.monotonic()
            await asyncio.wait_for(p.connector.closed_event.wait(), 5)
            assert p.connector.close_reason == "Idle timeout"
            assert time.monotonic() - started < 2

    run(main())


@pytest.mark.slow
def test_bulk_throughput_is_printed(pki, noise) -> None:
    """A number for the report (not asserted: it depends on the machine and its load)."""
    size = 4 * BODY

    async def connector_side(channel: H2Channel) -> None:
        await channel.read_json(FrameType.HEADERS)
        for chunk in body_chunks(noise, 0, size):
            await channel.send_data(chunk)
        await channel.end()

    async def main() -> None:
        async with pair(pki, connector_side) as p:
            channel = p.edge.open_channel()
            started = time.perf_counter()
            await channel.send_json(FrameType.HEADERS, {})
            digest, got = await read_all(channel)
            elapsed = time.perf_counter() - started
            assert (digest, got) == (sha(body_chunks(noise, 0, size)), size)
            print(
                f"\nhttp2 transport, one stream, both ends in one process: "
                f"{size / elapsed / 1e6:.0f} MB/s"
            )

    run(main(), timeout=120)
