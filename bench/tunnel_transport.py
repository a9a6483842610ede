"""``python -m bench.tunnel_transport [--mb N] [--runs R]``: the tunnel's two transports raw.

One edge link and one connector link in one process (so both ends share one core), the edge
opens a stream and the connector sends ``N`` MB of DATA frames down it through the tunnel's own
channel code: QUIC (``TunnelConnection``/``Channel`` on aioquic) against HTTP/2 over TLS over
TCP (``H2TunnelConnection``/``H2Channel``), both post-quantum (X25519MLKEM768). It isolates
what the transport costs, without origin, visitor or HTTP in front. Not part of ``python -m
bench`` (no JSON or plot): a number for docs/benchmarks.md, "Tunnel transports raw".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration

import pq_quic_plugin
from pq_quic_plugin.aioquic_binding.facade import server_port
from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from pq_quic_plugin.tunnel.wire import ALPN, FrameType, TunnelConnection
from pq_quic_plugin.tunnel.wire.h2_endpoints import connector_tls, dial_h2, edge_tls, listen_h2
from pq_quic_plugin.tunnel.wire.h2_transport import H2TunnelConnection

CHUNK = 256 * 1024
Opener = Callable[[], Any]


def _sender(size: int) -> Callable[[Any], Awaitable[None]]:
    """The connector's side: read the request head, send ``size`` bytes, end."""
    block = bytes(CHUNK)

    async def handler(channel: Any) -> None:
        await channel.read_json(FrameType.HEADERS)
        sent = 0
        while sent < size:
            await channel.send_data(block)
            sent += len(block)
        await channel.end()

    return handler


@contextlib.asynccontextmanager
async def _quic_pair(pki: DevPKI, size: int) -> AsyncIterator[tuple[Opener, str]]:
    edges: list[TunnelConnection] = []

    def make_edge(*args: Any, **kwargs: Any) -> TunnelConnection:
        link = TunnelConnection(*args, **kwargs)
        edges.append(link)
        return link

    server_config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server_config.load_cert_chain(str(pki.cert), str(pki.key))
    pq_quic_plugin.configure(server_config, "prefer")
    server = await serve("127.0.0.1", 0, configuration=server_config, create_protocol=make_edge)
    port = server_port(server)
    client_config = QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], server_name="localhost"
    )
    client_config.load_verify_locations(str(pki.ca_cert))
    pq_quic_plugin.configure(client_config, "require")
    handler = _sender(size)

    def make_connector(*args: Any, **kwargs: Any) -> TunnelConnection:
        link = TunnelConnection(*args, **kwargs)
        link.stream_handler = handler
        return link

    try:
        async with connect(
            "127.0.0.1", port, configuration=client_config, create_protocol=make_connector
        ) as connector:
            assert isinstance(connector, TunnelConnection)
            # The connector speaks first on QUIC: its control stream makes the edge's link.
            control = connector.open_channel()
            await control.send_json(FrameType.CONTROL, {"type": "hello"})
            while not edges:
                await asyncio.sleep(0.01)
            group = pq_quic_plugin.negotiated_group(connector)
            yield edges[0].open_channel, group.name if group else "?"
    finally:
        server.close()


@contextlib.asynccontextmanager
async def _h2_pair(pki: DevPKI, size: int) -> AsyncIterator[tuple[Opener, str]]:
    edges: list[H2TunnelConnection] = []

    async def control(channel: Any) -> None:
        await channel.connection.closed_event.wait()

    def make_edge() -> H2TunnelConnection:
        link = H2TunnelConnection("edge", stream_handler=control)
        edges.append(link)
        return link

    server = await listen_h2("127.0.0.1", 0, edge_tls(pki.cert, pki.key), make_edge)
    port = server.sockets[0].getsockname()[1]
    try:
        async with dial_h2(
            "127.0.0.1",
            port,
            connector_tls(True, cafile=pki.ca_cert),
            lambda: H2TunnelConnection("connector", stream_handler=_sender(size)),
            server_hostname="localhost",
        ) as connector:
            while not edges:
                await asyncio.sleep(0.01)
            group = connector.group
            yield edges[0].open_channel, group.name if group else "?"
    finally:
        server.close()


async def _download(open_channel: Opener) -> float:
    """Seconds for one stream's whole body, from the request head to the end."""
    channel = open_channel()
    started = time.perf_counter()
    await channel.send_json(FrameType.HEADERS, {})
    while await channel.read() is not None:
        pass
    elapsed = time.perf_counter() - started
    channel.connection.forget(channel)
    return elapsed


async def measure(pki: DevPKI, size: int, runs: int) -> dict[str, tuple[str, list[float]]]:
    """MB/s per run for each transport, interleaved run by run so load changes hit both."""
    results: dict[str, tuple[str, list[float]]] = {}
    async with _quic_pair(pki, size) as (quic_open, quic_group):
        async with _h2_pair(pki, size) as (h2_open, h2_group):
            results = {"quic": (quic_group, []), "http2": (h2_group, [])}
            for _ in range(runs):
                for name, opener in (("quic", quic_open), ("http2", h2_open)):
                    seconds = await _download(opener)
                    results[name][1].append(size / seconds / 1e6)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tunnel_transport")
    parser.add_argument("--mb", type=int, default=32, help="MB per download (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="downloads per transport")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_dev_pki(Path(tmp))
        results = asyncio.run(measure(pki, args.mb * 1_000_000 // CHUNK * CHUNK, args.runs))
    print(f"one stream, {args.mb} MB down, both ends in one process, {args.runs} runs")
    for name, (group, rates) in results.items():
        shown = ", ".join(f"{r:.1f}" for r in rates)
        print(f"  {name:6} {group:16} median {sorted(rates)[len(rates) // 2]:7.1f} MB/s  ({shown})")
    quic = sorted(results["quic"][1])[args.runs // 2]
    h2 = sorted(results["http2"][1])[args.runs // 2]
    print(f"  http2 / quic: {h2 / quic:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
