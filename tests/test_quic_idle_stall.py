"""Tunnel streams whose reader stopped must cost (close to) nothing, and frames written together
must share datagrams (issue 14: 40 stalled downloads kept the edge and the connector busy).

A real pair of :class:`TunnelConnection` endpoints over UDP on 127.0.0.1, in this process: the
client opens streams and writes to each as fast as the send backpressure lets it; the server
reads each stream's first frame and then never again, like an edge whose visitor stopped
reading. The receive window is small here (64 KiB) so the streams stall within a second.

Once stalled, nothing should move but the writers' own safety-net checks: before, every waiting
writer re-polled every 20 ms (50 event-loop wake-ups a second per stream, for as long as the
visitor kept the download open) and every datagram woke every waiting writer of the connection.
The wake-ups are counted as event-loop iterations (a loop subclass), the datagrams by the
endpoints themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from aioquic.asyncio import connect, serve
from quic_util import client_configuration, server_configuration

from pq_quic_plugin.aioquic_binding.facade import server_port
from pq_quic_plugin.devcert import DevPKI
from pq_quic_plugin.tunnel.wire import Channel, FrameType, TunnelConnection

ALPN = "pq-test-stall"
STREAMS = 20
WINDOW = 64 * 1024  # per-stream receive window: the stall comes after 20 x 64 KiB
WINDOW_SECONDS = 2.0


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts event-loop iterations: each is at least one task or callback woken."""

    iterations = 0

    def _run_once(self) -> None:
        self.iterations += 1
        super()._run_once()  # type: ignore[misc]


def run(coro: Any) -> Any:
    loop = CountingLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class Endpoint(TunnelConnection):
    """Counts the datagrams it receives (both sides share the class-level counter)."""

    received = 0

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        type(self).received += 1
        super().datagram_received(data, addr)


class Server(Endpoint):
    received = 0
    held: list[Channel] = []
    release: asyncio.Event | None = None


class Client(Endpoint):
    received = 0


async def _hold(channel: Channel) -> None:
    """Read the first frame, then never again: the stream's window stays shut."""
    await channel.read()
    Server.held.append(channel)
    assert Server.release is not None
    await Server.release.wait()


@contextlib.asynccontextmanager
async def _pair(pki: DevPKI) -> AsyncIterator[TunnelConnection]:
    Server.held, Server.received, Client.received = [], 0, 0
    Server.release = asyncio.Event()
    Server.stream_handler = staticmethod(_hold)
    server_config = server_configuration(pki, ALPN)
    server_config.max_stream_data = WINDOW
    client_config = client_configuration(pki, ALPN)
    server = await serve("127.0.0.1", 0, configuration=server_config, create_protocol=Server)
    try:
        async with connect(
            "127.0.0.1", server_port(server), configuration=client_config, create_protocol=Client
        ) as client:
            assert isinstance(client, TunnelConnection)
            yield client
    finally:
        Server.release.set()  # the holding handlers return
        await asyncio.sleep(0)
        server.close()


async def _stall_measurement(pki: DevPKI) -> tuple[int, int, float]:
    """Datagrams, loop iterations and CPU seconds over a window in which every stream is
    stalled (its reader stopped, its writer waiting for room)."""
    async with _pair(pki) as client:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, CountingLoop)
        block = b"x" * 32768

        async def writer() -> None:
            channel = client.open_channel()
            await channel.send(FrameType.HEADERS, b"{}")
            while True:
                await channel.send_data(block)

        writers = [asyncio.ensure_future(writer()) for _ in range(STREAMS)]
        try:
            deadline = time.monotonic() + 20
            while len(Server.held) < STREAMS and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(Server.held) == STREAMS, "not every stream reached the server"
            # Stalled: nothing moved for half a second (the windows are full).
            last = -1
            while Server.received + Client.received != last and time.monotonic() < deadline:
                last = Server.received + Client.received
                await asyncio.sleep(0.5)
            assert not any(task.done() for task in writers), "a writer stopped"
            datagrams = Server.received + Client.received
            iterations, cpu = loop.iterations, time.process_time()
            await asyncio.sleep(WINDOW_SECONDS)
            return (
                Server.received + Client.received - datagrams,
                loop.iterations - iterations,
                time.process_time() - cpu,
            )
        finally:
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)


def test_stalled_streams_cost_next_to_nothing(pki: DevPKI) -> None:
    datagrams, iterations, cpu = run(_stall_measurement(pki))
    print(f"{datagrams} datagrams, {iterations} loop iterations, {cpu:.3f} CPU-s in 2 s")
    assert datagrams < 10, f"{datagrams} datagrams in {WINDOW_SECONDS:g} s of stall"
    # Each of the 20 writers checks at most every 0.25 s once stalled (send_backpressure's idle
    # wait): at most 20 x (2 / 0.25 + 1) = 180 wake-ups if no two share a loop iteration, plus
    # the connections' own timers; the loop usually batches them into 50-200 (measured). Before:
    # one check every 20 ms each, about 400 iterations even batched. (The bound was 150, under
    # the unbatched ceiling, and CI once measured 178.)
    assert iterations < 220, f"{iterations} event-loop iterations"
    assert cpu < 0.2, f"{cpu:.3f} CPU-s in {WINDOW_SECONDS:g} s of stall"


async def _datagrams_for_one_frame_per_stream(pki: DevPKI) -> int:
    async with _pair(pki) as client:
        await asyncio.sleep(0.1)
        before = Server.received
        for _ in range(STREAMS):  # one turn of the event loop: nothing here waits
            await client.open_channel().send(FrameType.HEADERS, b'{"n":1}')
        deadline = time.monotonic() + 5
        while len(Server.held) < STREAMS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(Server.held) == STREAMS
        return Server.received - before


def test_frames_written_in_one_turn_share_datagrams(pki: DevPKI) -> None:
    """A connector relaying many streams writes one small frame per stream per origin datagram:
    one datagram each (before) is a packet to build, encrypt and acknowledge per frame."""
    datagrams = run(_datagrams_for_one_frame_per_stream(pki))
    assert datagrams <= 3, f"{STREAMS} small frames took {datagrams} datagrams"
