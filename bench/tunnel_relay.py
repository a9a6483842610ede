"""The relay between edges (hop 2): what a visitor pays for reaching an edge that holds no
connection of the tunnel, next to one that does, in one run.

Two edges share a ``redis-server`` on loopback; the connector keeps both its HA connections
to edge A. Visitors (HTTPS over post-quantum TLS/TCP, HTTP/1.1 keep-alive connections, the
example app's ``/pid``) load edge A directly (three hops) and edge C, which relays to A
(four hops: visitor-edge, edge-edge over QUIC, edge-connector, connector-origin), in
alternating slices so that a neighbour's load on the shared machine hits both alike. Printed:
requests/s and latency for each, C/A ratios and the latency the relay adds, with 1 request
in flight (latency) and 8 (throughput). Every process runs on the same 2 cores, so the relay
edge's CPU competes with the rest of the chain: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from tools.loopback import TUNNEL_HOST, Chain, free_port, hypercorn_pq, stop, tunnel_cli
from tools.loopback_cluster import cluster_edge_config, redis_process, start_cluster_edge

from .load import load_summary
from .machine import run_header
from .report import begin, table
from .results import publish
from .stats import ratio
from .tcp_clients import reused_connections

NAME = "tunnel_relay"
#: Requests in flight per load shape.
SHAPES = (1, 8)


def _context(cafile: Path) -> Any:
    from pq_quic_plugin import ssl_context

    return ssl_context("require", server_side=False, cafile=cafile)


async def _slice(port: int, cafile: Path, in_flight: int, seconds: float) -> dict[str, Any]:
    url = f"https://{TUNNEL_HOST}:{port}/pid"
    latencies, errors, elapsed = await reused_connections(
        url, _context(cafile), False, in_flight, seconds, 10**9
    )
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def measure(directory: Path, quick: bool) -> dict[str, Any]:
    from pq_quic_plugin.devcert import make_dev_pki

    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    seconds, rounds = (1.0, 1) if quick else (4.0, 4)
    origin_port = free_port()
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    origin_args = ["--pq", *tls, "-b", f"127.0.0.1:{origin_port}", "--graceful-timeout", "1"]
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_process(directory / "redis"))
        stack.enter_context(hypercorn_pq([*origin_args, "app:app"], directory, origin_port))
        a = cluster_edge_config(directory, pki, url, "a")
        c = cluster_edge_config(directory, pki, url, "c")
        for edge in (a, c):
            process = start_cluster_edge(edge, directory)
            stack.callback(stop, process.proc)
        made = tunnel_cli(
            "create", "demo", "--hostname", TUNNEL_HOST, "--config", str(a.config),
            "--credentials-file", "creds.json", cwd=directory,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(made.stderr)
        assert a.process is not None
        chain = Chain(
            directory, pki, origin_port, a.public, a.connectors, a.metrics, free_port(), a.process
        )
        connector = chain.start_connector()
        stack.callback(stop, connector.proc)
        for in_flight in SHAPES:
            slices: dict[str, list[dict[str, Any]]] = {"direct": [], "relayed": []}
            for _ in range(rounds):
                for label, port in (("direct", a.public), ("relayed", c.public)):
                    got = asyncio.run(_slice(port, pki.ca_cert, in_flight, seconds))
                    slices[label].append(got)
            results[str(in_flight)] = {k: load_summary(v, []) for k, v in slices.items()}
    return results


def show(result: dict[str, Any]) -> None:
    begin("Relay between edges: a visitor at edge C (relays to A) vs at edge A (holds it)")
    rows = []
    for in_flight, pair in result["shapes"].items():
        direct, relayed = pair["direct"], pair["relayed"]
        d50, r50 = direct["latency_ms"]["median"], relayed["latency_ms"]["median"]
        rows.append(
            [
                in_flight,
                direct["requests_per_s"],
                relayed["requests_per_s"],
                f"{ratio(relayed['requests_per_s'], direct['requests_per_s']):.2f}",
                d50,
                r50,
                f"{r50 - d50:+.2f}",
                direct["errors"] + relayed["errors"],
            ]
        )
    print(
        table(
            [
                "in flight",
                "A req/s",
                "C req/s",
                "C/A",
                "A median ms",
                "C median ms",
                "added ms",
                "errors",
            ],
            rows,
        )
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    from .plots import machine_caption, pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    shapes = list(result["shapes"])
    width = 0.38
    for i, (label, color) in enumerate((("direct", "#4477aa"), ("relayed", "#cc6677"))):
        values = [result["shapes"][s][label]["requests_per_s"] for s in shapes]
        xs = [j + (i - 0.5) * width for j in range(len(shapes))]
        ax.bar(xs, values, width, label={"direct": "at edge A", "relayed": "at C, via A"}[label],
               color=color)  # fmt: skip
    ax.set_xticks(range(len(shapes)), [f"{s} in flight" for s in shapes])
    ax.set_ylabel("requests/s")
    ax.set_title("Visitor at the edge holding the connection vs relayed (hop 2)")
    ax.legend()
    save_figure(plt, fig, out_dir, NAME, machine_caption(result["machine"]))


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        shapes = measure(Path(tmp), quick)
    result = {
        **run_header(NAME, quick),
        "shapes": shapes,
    }
    return publish(result, out_dir, show, plot)


if __name__ == "__main__":
    import sys

    run("--quick" in sys.argv, Path(tempfile.mkdtemp()))
