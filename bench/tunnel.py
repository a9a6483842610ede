"""The tunnel: a direct request to the origin, through pq-tunnel, and through ``ssh -R``.

Why these four paths: pq-tunnel carries HTTP/3 (client -> edge -> connector -> origin, three
QUIC hops, every one X25519MLKEM768), while an OpenSSH reverse tunnel forwards TCP, so the ssh
path is HTTPS/1.1 inside SSH (key exchange sntrup761x25519, also post-quantum). Each tunnel is
compared with a direct request over its own transport, so a ratio says what the tunnel costs and
not what HTTP/3 vs HTTP/1.1 costs:

- direct HTTP/3: client -> origin (hypercorn-pq --pq, the same process the tunnel reaches);
- pq-tunnel: client -> edge -> connector -> origin, everything ``loopback.running_chain`` starts;
- direct TCP: client -> the origin's TLS/TCP listener, HTTP/1.1 keep-alive (httpx);
- ssh -R: the same httpx client -> sshd's forwarded port -> ssh client -> the origin's TCP port.

Per path: requests/s and latency percentiles of a tiny GET with a fixed number of requests in
flight on reused connections, bulk MB/s of one large download, and the CPU the path's own
processes used per request (client and server share the cores, so that is the cost). Then the
memory side: connector RSS with 1, 2, 4, 8 edge connections (the slope is MB per connection)
and the edge's, next to the ssh client's RSS for its one -R forward. A private sshd runs as a
child process; when it cannot (not installed, fails to start) the ssh rows are skipped with the
reason printed and recorded, never estimated.

The pieces: :mod:`.tunnel_routes` (the four paths), :mod:`.ssh_tunnel` (sshd and ``ssh -R``),
:mod:`.tunnel_report` (tables and figure); the load itself is :mod:`.load` and
:mod:`.tcp_clients`, shared with the serving benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tools.loopback import Chain, Process, running_chain, stop, tunnel_cli

from . import tcp_clients
from .load import load_summary, reused_connections
from .machine import run_header
from .processes import other_share, rss_mb, system_busy_seconds, tree_cpu_seconds
from .report import begin
from .results import publish
from .ssh_tunnel import Skipped, ssh_reverse_tunnel
from .stats import ratio
from .tunnel_report import plot, show
from .tunnel_routes import (
    DIRECT_H3,
    DIRECT_TCP,
    H2_HOST,
    SMALL,
    SSH,
    TUNNEL,
    TUNNEL_H2,
    Route,
    build_routes,
)

NAME = "tunnel"
RATIOS = [
    (TUNNEL, DIRECT_H3),
    (SSH, DIRECT_TCP),
    (TUNNEL, SSH),
    (TUNNEL_H2, DIRECT_TCP),
    (TUNNEL_H2, SSH),
]


# --- load ----------------------------------------------------------------------------------


async def _download(route: Route, size: int) -> float:
    """Seconds from request to last byte of ``/bytes/size`` on an already open connection."""
    path = f"/bytes/{size}"
    if route.transport == "h3":
        from pq_quic_plugin.http3 import open_session

        async with open_session(route.url, route.client) as session:
            await session.request("GET", SMALL)
            t0 = time.perf_counter()
            status, _, body = await session.stream_request("GET", path)
            got = sum([len(chunk) async for chunk in body])
            seconds = time.perf_counter() - t0
    else:
        import httpx

        async with httpx.AsyncClient(
            verify=route.client, timeout=120, headers=route.headers
        ) as client:
            await client.get(route.url + SMALL)
            t0 = time.perf_counter()
            async with client.stream("GET", route.url + path) as response:
                status = response.status_code
                got = sum([len(chunk) async for chunk in response.aiter_raw()])
            seconds = time.perf_counter() - t0
    if (status, got) != (200, size):
        raise RuntimeError(f"{route.label}: /bytes/{size} gave status {status}, {got} bytes")
    return seconds


def _measured(
    route: Route, work: Callable[[], Coroutine[Any, Any, Any]]
) -> tuple[Any, dict[str, float]]:
    """Run ``work`` and say what CPU the path's processes, this client and others used."""
    named = route.named_pids()
    each0 = {name: tree_cpu_seconds([pid]) for name, pid in named.items()}
    cpu0, own0 = tree_cpu_seconds(route.pids), time.process_time()
    busy0, wall0 = system_busy_seconds(), time.perf_counter()
    value = asyncio.run(work())
    path_cpu = tree_cpu_seconds(route.pids) - cpu0
    each = {name: tree_cpu_seconds([pid]) - each0[name] for name, pid in named.items()}
    client_cpu = time.process_time() - own0
    wall = time.perf_counter() - wall0
    other = other_share(system_busy_seconds() - busy0, path_cpu + client_cpu, wall)
    return value, {
        "path_cpu": path_cpu,
        "client_cpu": client_cpu,
        "wall": wall,
        "other_share": other,
        "process_cpu": each,
    }


def _small_slice(route: Route, inflight: int, duration: float, limit: int) -> dict[str, Any]:
    def work() -> Coroutine[Any, Any, tuple[list[float], int, float]]:
        if route.transport == "h3":  # HTTP/3 multiplexes: one connection, streams in flight
            return reused_connections(route.url, route.client, 1, inflight, duration, limit, SMALL)
        return tcp_clients.reused_connections(  # HTTP/1.1: inflight keep-alive connections
            route.url + SMALL, route.client, False, inflight, duration, limit, route.headers
        )

    (latencies, errors, elapsed), cost = _measured(route, work)
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, **cost}


def _aggregate(
    slices: list[dict[str, Any]], bulk: list[dict[str, Any]], size: int
) -> dict[str, Any]:
    mbps = [size / 1e6 / b["seconds"] for b in bulk]
    requests = sum(len(s["latencies"]) for s in slices)
    names = slices[0]["process_cpu"].keys() if slices else ()
    per_process = {
        name: {
            "cpu_ms_per_request": round(
                sum(s["process_cpu"][name] for s in slices) * 1000 / requests, 3
            )
            if requests
            else None,
            "cpu_ms_per_mb_bulk": round(
                sum(b["process_cpu"][name] for b in bulk) * 1000 / (size / 1e6 * len(bulk)), 3
            )
            if bulk
            else None,
        }
        for name in names
    }
    return load_summary(slices, ("path_cpu", "client_cpu")) | {
        "per_process": per_process,
        "bulk_mb_per_s": round(statistics.median(mbps), 2) if mbps else None,
        "bulk_mb_per_s_each": [round(x, 2) for x in mbps],
        "bulk_path_cpu_s_per_mb": round(
            statistics.median(b["path_cpu"] / (size / 1e6) for b in bulk), 4
        )
        if bulk
        else None,
        "other_processes_cpu_share": round(max(s["other_share"] for s in slices + bulk), 3),
    }


def _h2_tunnel(chain: Chain) -> Process:
    """A second tunnel on the chain's edge (:data:`H2_HOST`) to the same origin, its connector
    over http2; returns the connector once its connections are registered."""
    made = tunnel_cli(
        "create", "h2", "--hostname", H2_HOST, "--config", str(chain.dir / "edge.yaml"),
        "--credentials-file", "h2-creds.json", cwd=chain.dir,
    )  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"pq-tunnel create h2: {made.stderr}")
    config = chain.connector_config(
        "h2.yml",
        tunnel="h2",
        credentials_file="h2-creds.json",
        protocol="http2",
        ingress=[
            {
                "hostname": H2_HOST,
                "service": f"https://127.0.0.1:{chain.origin_port}",
                "origin-ca-file": str(chain.pki.ca_cert),
                "origin-server-name": "localhost",
            },
            {"service": "http_status:404"},
        ],
    )
    return chain.start_connector(config=config)


# --- memory per connector connection -------------------------------------------------------


def _connector_memory(chain: Chain, counts: tuple[int, ...]) -> dict[str, Any]:
    """Start one extra connector per count (ha-connections = count), read RSS once registered.

    One at a time, each stopped before the next, so the edge's RSS grows only by the
    connections of the one being measured (Python rarely returns freed memory, so the edge
    column is "after", not "for").
    """
    rows = []
    for n in counts:
        edge_before = rss_mb(chain.edge.proc.pid)
        config = chain.connector_config(f"memory-{n}.yml", ha_connections=n)
        connector = chain.start_connector(config=config, wait=None)
        try:
            for i in range(n):
                connector.wait_for_log(f"registered connIndex={i} ", 30)
            time.sleep(1.0)  # registration traffic done, the event loop idle
            rows.append(
                {
                    "ha_connections": n,
                    "connector_rss_mb": rss_mb(connector.proc.pid),
                    "edge_rss_mb": rss_mb(chain.edge.proc.pid),
                    "edge_rss_growth_mb": round(rss_mb(chain.edge.proc.pid) - edge_before, 1),
                }
            )
        finally:
            stop(connector.proc)
        print(
            f"  connector with ha-connections {n}: RSS {rows[-1]['connector_rss_mb']} MB; "
            f"edge {rows[-1]['edge_rss_mb']} MB",
            flush=True,
        )
    xs = [r["ha_connections"] for r in rows]
    slope = (
        statistics.linear_regression(xs, [r["connector_rss_mb"] for r in rows])
        if len(set(xs)) > 1
        else None
    )
    return {
        "rows": rows,
        "connector_mb_per_connection": round(slope.slope, 2) if slope else None,
        "connector_mb_fixed": round(slope.intercept, 1) if slope else None,
    }


# --- run -----------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("Tunnel: direct vs pq-tunnel vs ssh -R (loopback)")
    reps = 1 if quick else 3
    inflight, duration, limit = 8, (0.5 if quick else 3.0), (50 if quick else 100000)
    size = (1 if quick else 20) << 20
    bulk_reps = 1 if quick else 2
    counts = (1, 2) if quick else (1, 2, 4, 8)
    import httpx  # noqa: F401 - imported here, not inside the first timed slice

    slices: dict[str, list[dict[str, Any]]] = {}
    bulk: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="pq-bench-tunnel-") as tmp,
        running_chain(Path(tmp) / "chain") as chain,
        contextlib.ExitStack() as stack,
    ):
        ssh: dict[str, Any] | None = None
        skipped = None
        try:
            ssh = stack.enter_context(ssh_reverse_tunnel(Path(tmp) / "ssh", chain.origin_port))
            print(
                f"  ssh -R 127.0.0.1:{ssh['port']} -> origin: {ssh['openssh']}, kex "
                f"{ssh['kex']}, cipher {ssh['cipher']}",
                flush=True,
            )
        except Skipped as exc:
            skipped = str(exc)
            print(f"  SKIPPING the ssh -R rows: {skipped}", flush=True)
        h2 = _h2_tunnel(chain)
        stack.callback(stop, h2.proc)
        routes = build_routes(chain, ssh, h2.proc.pid)
        for route in routes:  # warm-up, not recorded: first connections, imports, caches
            _small_slice(route, inflight, 0.2, 2 * inflight)
        for rep in range(reps):
            order = routes[rep % len(routes) :] + routes[: rep % len(routes)]
            for route in order:
                sl = _small_slice(route, inflight, duration, limit)
                slices.setdefault(route.label, []).append(sl)
                print(
                    f"  [{rep + 1}/{reps}] {route.label:12s} GET {SMALL}: "
                    f"{len(sl['latencies']) / sl['elapsed']:7.1f} req/s ({sl['errors']} "
                    f"errors; other load {100 * sl['other_share']:.0f}%)",
                    flush=True,
                )
        for rep in range(bulk_reps):
            for route in routes:
                seconds, cost = _measured(route, functools.partial(_download, route, size))
                bulk.setdefault(route.label, []).append({"seconds": seconds, **cost})
                print(
                    f"  [{rep + 1}/{bulk_reps}] {route.label:12s} {size >> 20} MB: "
                    f"{size / 1e6 / seconds:7.2f} MB/s",
                    flush=True,
                )
        memory = _connector_memory(chain, counts)
        memory["edge_connections_during_the_run"] = "the chain's own connector (2) as well"
        peak = {r.label: {str(p): rss_mb(p, "VmHWM") for p in r.pids} for r in routes}
    results = {label: _aggregate(slices[label], bulk[label], size) for label in slices}
    result = {
        **run_header(NAME, quick, openssh=ssh["openssh"] if ssh else None),
        "method": {
            "paths": {r.label: r.note for r in routes},
            "small_request": f"GET {SMALL}, {inflight} in flight for {duration} s per slice, "
            f"{reps} slices per path, the paths interleaved; HTTP/3: one connection with "
            f"{inflight} streams; TCP: {inflight} keep-alive connections",
            "bulk": f"GET /bytes/{size} on an open connection, request to last byte, "
            f"{bulk_reps} per path (median)",
            "cpu": "utime+stime of the path's processes and their children (/proc), "
            "client excluded: origin; + edge + connector; + sshd + ssh",
            "memory": "VmRSS after every connection registered and 1 s idle",
            "client": "this process: pq_quic_plugin.http3 (policy require) and httpx",
        },
        "ssh": ssh,
        "ssh_skipped": skipped,
        "results": results,
        "ratios": _ratios(results),
        "memory": memory
        | {
            "ssh": {k: ssh[k] for k in ("ssh_client_rss_mb", "sshd_connection_rss_mb")}
            if ssh
            else None
        },
        "peak_rss_mb_by_path_pid": peak,
    }
    return publish(result, out_dir, show, plot)


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a, b in RATIOS:
        if a not in results or b not in results:
            continue
        ra, rb = results[a], results[b]
        out[f"{a} / {b}"] = {
            "requests_per_s": ratio(ra["requests_per_s"], rb["requests_per_s"]),
            **{
                p: ratio(ra["latency_ms"][q], rb["latency_ms"][q])
                for p, q in (("p50", "median"), ("p90", "p90"), ("p99", "p99"))
            },
            "bulk_mb_per_s": ratio(ra["bulk_mb_per_s"] or 0, rb["bulk_mb_per_s"] or 0),
            "path_cpu_per_request": ratio(
                ra["path_cpu_ms_per_request"] or 0, rb["path_cpu_ms_per_request"] or 0
            ),
        }
    return out
