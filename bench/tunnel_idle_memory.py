"""Edge memory per idle connector connection, on each transport (issue 13, "Scale of one edge").

A real ``pq-tunnel edge`` process per transport; this process opens ``N`` (1,000 by default)
connector connections to it through the connector's own code (``connector.transports`` to
connect, ``connector.registration.register`` to register, post-quantum), all in one event loop,
then reads the edge's resident memory (``VmRSS``) before and after, with every connection
registered and idle. A QUIC PING keeps each QUIC connection alive (the connector's keepalive);
HTTP/2 links keep themselves alive. The goal: 1,000 connections fit in 1 GiB of edge memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pq_quic_plugin.aioquic_binding.facade import quic_of
from pq_quic_plugin.devcert import make_dev_pki
from pq_quic_plugin.tunnel.config import ConnectorConfig
from pq_quic_plugin.tunnel.connector.registration import Identity, register
from pq_quic_plugin.tunnel.connector.transports import LinkFactory
from pq_quic_plugin.tunnel.credentials import load_credentials
from pq_quic_plugin.tunnel.hostnames import HostPort
from pq_quic_plugin.tunnel.wire import TunnelConnection, TunnelLink
from tools.loopback import TUNNEL_HOST, free_port, start_edge, stop, tunnel_cli, write_edge_config

from .machine import machine_info
from .processes import rss_mb
from .results import publish

NAME = "tunnel_idle_memory"
TRANSPORTS = ("quic", "http2")
#: Connections registering at once (handshakes are CPU-bound on both ends).
PARALLEL = 32
#: How long the connections stay idle before the edge's memory is read.
SETTLE = 3.0
GOAL_MB = 1024


def _raise_nofile(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


async def _hold(
    links: LinkFactory, protocol: str, edge: HostPort, identity: Identity, count: int
) -> tuple[float, list[TunnelLink]]:
    """Open and register ``count`` connections; returns the seconds it took and the links
    (held open by their ``open`` blocks, which :func:`measure` closes through ``stack``)."""
    held: list[TunnelLink] = []
    stack = contextlib.AsyncExitStack()
    gate = asyncio.Semaphore(PARALLEL)

    async def one(index: int) -> None:
        async with gate:
            quic, _ = links.group_tried(protocol, edge)
            link = await stack.enter_async_context(links.open(protocol, edge, quic, lambda _: None))
            mine = Identity(identity.tunnel_id, str(uuid.uuid4()), identity.auth_key, ())
            await register(link, mine, index % 4)
            held.append(link)

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    _STACKS.append(stack)
    return time.monotonic() - started, held


_STACKS: list[contextlib.AsyncExitStack] = []


async def _keepalive(links: list[TunnelLink], stop_at: float) -> None:
    """QUIC PINGs every second, as the connector sends them (HTTP/2 links ping by themselves)."""
    while time.monotonic() < stop_at:
        for link in links:
            if isinstance(link, TunnelConnection) and not link.closed:
                quic_of(link).send_ping(0)
                link.transmit()
        await asyncio.sleep(1.0)


async def _measure_one(
    directory: Path, pki: Any, protocol: str, count: int, edge_pid: int, port: int
) -> dict[str, Any]:
    creds = load_credentials(directory / "creds.json")
    config = ConnectorConfig().with_overrides(
        post_quantum=True, ca_file=str(pki.ca_cert), edge_server_name="localhost"
    )
    identity = Identity(creds.tunnel_id, str(uuid.uuid4()), creds.auth_key, ())
    links = LinkFactory(config, _refuse_streams, keepalive=2.0, idle=30.0)
    address = HostPort("127.0.0.1", port)
    before = rss_mb(edge_pid)
    took, held = await _hold(links, protocol, address, identity, count)
    await _keepalive(held, time.monotonic() + SETTLE)
    alive = sum(1 for link in held if not link.closed)
    after = rss_mb(edge_pid)
    peak = rss_mb(edge_pid, "VmHWM")
    for link in held:  # all at once: each dial's exit then only waits for its own close
        link.close()
        link.transmit()
    for stack in _STACKS:
        await stack.aclose()
    _STACKS.clear()
    grown = after - before
    return {
        "protocol": protocol,
        "connections": count,
        "alive_after_idle": alive,
        "connect_seconds": round(took, 2),
        "edge_rss_before_mb": round(before, 1),
        "edge_rss_after_mb": round(after, 1),
        "edge_peak_rss_mb": round(peak, 1),
        "kib_per_connection": round(grown * 1024 / count, 1),
        "fits_1gib": after < GOAL_MB,
    }


async def _refuse_streams(channel: Any) -> None:
    """Nothing is tunnelled in this benchmark: a stream the edge opens is refused."""
    channel.reset()


def measure(count: int) -> list[dict[str, Any]]:
    _raise_nofile(count * 2 + 256)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pq-idle-") as tmp:
        directory = Path(tmp)
        pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
        for protocol in TRANSPORTS:
            public, port, metrics = free_port(), free_port(), free_port()
            edge_yaml = write_edge_config(directory, pki, public, port, metrics, "prefer")
            if not (directory / "creds.json").exists():
                made = tunnel_cli(
                    "create", "idle", "--hostname", TUNNEL_HOST, "--config", str(edge_yaml),
                    "--credentials-file", "creds.json", cwd=directory,
                )  # fmt: skip
                assert made.returncode == 0, made.stderr
            edge = start_edge(edge_yaml, directory / f"edge-{protocol}.log", cwd=directory)
            try:
                time.sleep(1.0)  # the edge settles after start
                row = asyncio.run(
                    _measure_one(directory, pki, protocol, count, edge.proc.pid, port)
                )
            finally:
                stop(edge.proc)
            rows.append(row)
            print(
                f"  {protocol:5s}: {row['alive_after_idle']}/{count} registered and alive; edge "
                f"RSS {row['edge_rss_before_mb']} -> {row['edge_rss_after_mb']} MB "
                f"({row['kib_per_connection']} KiB per connection), connected in "
                f"{row['connect_seconds']} s",
                flush=True,
            )
    return rows


def show(result: dict[str, Any]) -> None:
    print(f"  edge memory with {result['connections']} idle connector connections:")
    for row in result["rows"]:
        verdict = "fits" if row["fits_1gib"] else "DOES NOT fit"
        print(
            f"    {row['protocol']:5s} {row['edge_rss_after_mb']:7.1f} MB "
            f"({row['kib_per_connection']:.1f} KiB/connection): {verdict} in 1 GiB"
        )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    from .plots import machine_caption, pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    rows = result["rows"]
    names = [r["protocol"] for r in rows]
    ax.bar(names, [r["kib_per_connection"] for r in rows], color=["#4477aa", "#66aa55"])
    ax.set_ylabel("edge KiB per idle connection")
    ax.set_title(f"Edge memory, {result['connections']} idle connector connections")
    save_figure(plt, fig, out_dir, NAME, machine_caption(result["machine"]))


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    count = 50 if quick else 1000
    rows = measure(count)
    result = {"benchmark": NAME, "machine": machine_info(), "connections": count, "rows": rows}
    return publish(result, out_dir, show, plot)


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv, Path(tempfile.mkdtemp()))
