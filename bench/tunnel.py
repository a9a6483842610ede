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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import os
import re
import shutil
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.loopback import Chain, Process, free_port, running_chain, start, stop

from .load import closed_loop, load_summary, reused_connections
from .machine import machine_info, source_info
from .plots import machine_caption, pyplot, save_figure
from .processes import other_share, process_tree, rss_mb, system_busy_seconds, tree_cpu_seconds
from .report import begin, table
from .results import publish
from .stats import ratio

NAME = "tunnel"
DIRECT_H3, TUNNEL = "direct HTTP/3", "pq-tunnel"
DIRECT_TCP, SSH = "direct TCP", "ssh -R"
RATIOS = [(TUNNEL, DIRECT_H3), (SSH, DIRECT_TCP), (TUNNEL, SSH)]
SMALL = "/pid"  # the example app's smallest response: {"pid":N}, a dozen bytes of JSON
PQ_KEX = ("mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com")
"""OpenSSH's post-quantum key exchanges, preferred first (mlkem768x25519 from OpenSSH 9.9)."""


class Skipped(RuntimeError):
    """The ssh rows cannot run here; the message says why."""


@dataclass
class Route:
    """One way from the benchmark's client to the origin."""

    label: str
    transport: str  # "h3" or "tcp"
    url: str
    pids: list[int]  # the path's own processes (CPU per request is theirs)
    note: str
    client: Any = field(default=None, repr=False)  # QuicConfiguration or ssl.SSLContext


# --- load ----------------------------------------------------------------------------------


async def _tcp_small(
    url: str, ctx: ssl.SSLContext, inflight: int, duration: float, limit: int
) -> tuple[list[float], int, float]:
    """``inflight`` HTTP/1.1 keep-alive connections, one request at a time on each."""
    import httpx

    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(verify=ctx, limits=limits, timeout=10) as client:
        await asyncio.gather(*(client.get(url + SMALL) for _ in range(inflight)))  # connect

        async def one() -> bool:
            return (await client.get(url + SMALL)).status_code == 200

        return await closed_loop([one] * inflight, duration, limit)


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

        async with httpx.AsyncClient(verify=route.client, timeout=120) as client:
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
    cpu0, own0 = tree_cpu_seconds(route.pids), time.process_time()
    busy0, wall0 = system_busy_seconds(), time.perf_counter()
    value = asyncio.run(work())
    path_cpu = tree_cpu_seconds(route.pids) - cpu0
    client_cpu = time.process_time() - own0
    wall = time.perf_counter() - wall0
    other = other_share(system_busy_seconds() - busy0, path_cpu + client_cpu, wall)
    return value, {
        "path_cpu": path_cpu,
        "client_cpu": client_cpu,
        "wall": wall,
        "other_share": other,
    }


def _small_slice(route: Route, inflight: int, duration: float, limit: int) -> dict[str, Any]:
    def work() -> Coroutine[Any, Any, tuple[list[float], int, float]]:
        if route.transport == "h3":  # HTTP/3 multiplexes: one connection, streams in flight
            return reused_connections(route.url, route.client, 1, inflight, duration, limit, SMALL)
        return _tcp_small(route.url, route.client, inflight, duration, limit)

    (latencies, errors, elapsed), cost = _measured(route, work)
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, **cost}


def _aggregate(
    slices: list[dict[str, Any]], bulk: list[dict[str, Any]], size: int
) -> dict[str, Any]:
    mbps = [size / 1e6 / b["seconds"] for b in bulk]
    return load_summary(slices, ("path_cpu", "client_cpu")) | {
        "bulk_mb_per_s": round(statistics.median(mbps), 2) if mbps else None,
        "bulk_mb_per_s_each": [round(x, 2) for x in mbps],
        "bulk_path_cpu_s_per_mb": round(
            statistics.median(b["path_cpu"] / (size / 1e6) for b in bulk), 4
        )
        if bulk
        else None,
        "other_processes_cpu_share": round(max(s["other_share"] for s in slices + bulk), 3),
    }


# --- ssh -R --------------------------------------------------------------------------------


def _ssh_rss(sshd: Process, client: Process) -> dict[str, float]:
    sessions = [p for p in process_tree([sshd.proc.pid]) if p != sshd.proc.pid]
    return {
        "ssh_client_rss_mb": rss_mb(client.proc.pid),
        "sshd_connection_rss_mb": round(sum(rss_mb(p) for p in sessions), 1),
    }


@contextlib.contextmanager
def ssh_reverse_tunnel(directory: Path, target_port: int) -> Iterator[dict[str, Any]]:
    """A private sshd on 127.0.0.1 and ``ssh -N -R`` forwarding a fresh port to ``target_port``.

    Yields what it ran (port, versions, the key exchange and cipher ``ssh -v`` reported, RSS).
    Raises :class:`Skipped` with the reason when OpenSSH is missing or does not come up.
    """
    sshd, ssh, keygen = (
        shutil.which(n, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
        for n in ("sshd", "ssh", "ssh-keygen")
    )
    if not (sshd and ssh and keygen):
        raise Skipped("OpenSSH not installed (apt-get install openssh-server openssh-client)")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
            capture_output=True,
        )
    (directory / "authorized_keys").write_bytes((directory / "client_key.pub").read_bytes())
    offered = subprocess.run([ssh, "-Q", "kex"], capture_output=True, text=True).stdout.split()
    kex = [k for k in PQ_KEX if k in offered]
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    port, forwarded = free_port(), free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {directory / 'host_key'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PidFile none",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "PrintMotd no",
                *([f"KexAlgorithms {','.join(kex)}"] if kex else []),
                "",
            ]
        )
    )
    server = start([sshd, "-D", "-e", "-f", str(config)], directory / "sshd.log")
    client: Process | None = None
    try:
        try:
            server.wait_for_log("Server listening on", 10)
        except (RuntimeError, TimeoutError) as exc:
            raise Skipped(f"sshd did not start: {server.log()[-500:].strip()}") from exc
        client = start(
            [
                ssh,
                "-v",
                "-N",
                "-F",
                "/dev/null",
                "-i",
                str(directory / "client_key"),
                "-p",
                str(port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                *(["-o", f"KexAlgorithms={','.join(kex)}"] if kex else []),
                "-R",
                f"127.0.0.1:{forwarded}:127.0.0.1:{target_port}",
                f"{getpass.getuser()}@127.0.0.1",
            ],
            directory / "ssh.log",
        )
        try:
            client.wait_for_log("remote forward success", 15)
        except (RuntimeError, TimeoutError) as exc:
            raise Skipped(f"ssh -R did not come up: {client.log()[-800:].strip()}") from exc
        log = client.log()
        used = re.search(r"kex: algorithm: (\S+)", log)
        cipher = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", log)
        time.sleep(0.5)  # let both settle before their memory is read
        yield {
            "port": forwarded,
            "sshd_port": port,
            "openssh": subprocess.run([ssh, "-V"], capture_output=True, text=True).stderr.strip(),
            "kex": used.group(1) if used else None,
            "post_quantum": bool(used and used.group(1) in PQ_KEX),
            "cipher": f"{cipher.group(1)} (MAC {cipher.group(2)})" if cipher else None,
            "pids": [server.proc.pid, client.proc.pid],
            **_ssh_rss(server, client),
        }
    finally:
        for proc in (client, server):
            if proc is not None:
                stop(proc.proc, timeout=5)


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


def _routes(chain: Chain, ssh: dict[str, Any] | None) -> list[Route]:
    from pq_quic_plugin.http3 import client_configuration

    ca = str(chain.pki.ca_cert)
    origin = [chain.origin.proc.pid] if chain.origin else []
    tunnel = [*origin, chain.edge.proc.pid] + (
        [chain.connector.proc.pid] if chain.connector else []
    )
    routes = [
        Route(
            DIRECT_H3,
            "h3",
            f"https://127.0.0.1:{chain.origin_port}",
            origin,
            "HTTP/3 to hypercorn-pq --pq, X25519MLKEM768",
        ),
        Route(
            TUNNEL,
            "h3",
            chain.url,
            tunnel,
            "HTTP/3 to the edge, edge -> connector -> origin, X25519MLKEM768 on every hop",
        ),
        Route(
            DIRECT_TCP,
            "tcp",
            f"https://127.0.0.1:{chain.origin_port}",
            origin,
            "HTTPS/1.1 keep-alive (httpx) to the origin's TCP listener",
        ),
    ]
    if ssh is not None:
        routes.append(
            Route(
                SSH,
                "tcp",
                f"https://127.0.0.1:{ssh['port']}",
                [*origin, *ssh["pids"]],
                f"the same HTTPS/1.1 inside ssh -R ({ssh['kex']}, {ssh['cipher']})",
            )
        )
    for r in routes:
        r.client = (
            client_configuration("require", cafile=ca)
            if r.transport == "h3"
            else ssl.create_default_context(cafile=ca)
        )
    return routes


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
        routes = _routes(chain, ssh)
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
        "benchmark": NAME,
        "quick": quick,
        "machine": machine_info() | {"openssh": ssh["openssh"] if ssh else None},
        "source": source_info(),
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
    return publish(result, out_dir, _print, plot)


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


def _print(result: dict[str, Any]) -> None:
    print(
        table(
            [
                "path",
                "req/s",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "path CPU ms/req",
                "client CPU ms/req",
                "bulk MB/s",
                "errors",
                "other load",
            ],
            [
                [
                    label,
                    r["requests_per_s"],
                    r["latency_ms"]["median"],
                    r["latency_ms"]["p90"],
                    r["latency_ms"]["p99"],
                    r["path_cpu_ms_per_request"],
                    r["client_cpu_ms_per_request"],
                    r["bulk_mb_per_s"],
                    r["errors"],
                    r["other_processes_cpu_share"],
                ]
                for label, r in result["results"].items()
            ],
        )
    )
    print("\nratios:")
    print(
        table(
            ["ratio", "req/s", "p50", "p90", "p99", "bulk MB/s", "path CPU/req"],
            [
                [
                    name,
                    r["requests_per_s"],
                    r["p50"],
                    r["p90"],
                    r["p99"],
                    r["bulk_mb_per_s"],
                    r["path_cpu_per_request"],
                ]
                for name, r in result["ratios"].items()
            ],
        )
    )
    if result["ssh_skipped"]:
        print(f"  (ssh -R ratios skipped: {result['ssh_skipped']})")
    mem = result["memory"]
    print()
    print(
        table(
            ["ha-connections", "connector RSS MB", "edge RSS MB", "edge growth MB"],
            [
                [
                    r["ha_connections"],
                    r["connector_rss_mb"],
                    r["edge_rss_mb"],
                    r["edge_rss_growth_mb"],
                ]
                for r in mem["rows"]
            ],
        )
    )
    print(
        f"  connector: {mem['connector_mb_per_connection']} MB per connection on top of "
        f"{mem['connector_mb_fixed']} MB"
    )
    if mem["ssh"]:
        print(
            f"  ssh -R: ssh client {mem['ssh']['ssh_client_rss_mb']} MB, sshd for the "
            f"connection {mem['ssh']['sshd_connection_rss_mb']} MB"
        )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    from matplotlib import ticker

    res = result["results"]
    labels = list(res)
    colors = {DIRECT_H3: "#4c72b0", TUNNEL: "#2a9d55", DIRECT_TCP: "#888888", SSH: "#dd8452"}
    fig, axes = plt.subplots(1, 4, figsize=(18, 5))
    for ax, key, title, fmt, log in (
        (axes[0], "requests_per_s", f"GET {SMALL}, 8 in flight: requests/s", "{:.0f}", False),
        (axes[2], "bulk_mb_per_s", "Bulk download: MB/s (log)", "{:.2f}", True),
    ):
        values = [res[label][key] or 0 for label in labels]
        ax.bar(labels, values, color=[colors.get(label, "#999999") for label in labels])
        for x, v in enumerate(values):
            ax.text(x, v, fmt.format(v), ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(v for v in values if v) / 2, max(values) * 30)
        else:
            ax.set_ylim(0, max(values) * 1.45)
        ax.text(
            0.5,
            0.97,
            "\n".join(f"{k}: x{r[key]:.2f}" for k, r in result["ratios"].items()),
            transform=ax.transAxes,
            fontsize=7,
            ha="center",
            va="top",
            bbox={"facecolor": "white", "edgecolor": "#cccccc"},
        )
    ax = axes[1]
    for x, label in enumerate(labels):
        lat = res[label]["latency_ms"]
        ax.plot(
            [x] * 3,
            [lat["median"], lat["p90"], lat["p99"]],
            color=colors.get(label, "#999999"),
            lw=6,
            alpha=0.35,
        )
        for q, marker in (("median", "o"), ("p90", "s"), ("p99", "^")):
            ax.scatter(
                [x],
                [lat[q]],
                color=colors.get(label, "#999999"),
                marker=marker,
                zorder=3,
                label=q if x == 0 else None,
            )
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.tick_params(axis="y", which="minor", labelsize=7)
    ax.set_ylabel("ms (log)")
    ax.set_title("Latency p50 (o) / p90 (s) / p99 (^)")
    ax.legend(fontsize=7)
    mem = result["memory"]
    ax = axes[3]
    xs = [r["ha_connections"] for r in mem["rows"]]
    ax.plot(
        xs,
        [r["connector_rss_mb"] for r in mem["rows"]],
        "o-",
        color=colors[TUNNEL],
        label=f"connector ({mem['connector_mb_per_connection']} MB/connection)",
    )
    ax.plot(
        xs, [r["edge_rss_mb"] for r in mem["rows"]], "s--", color="#4c72b0", label="edge (after)"
    )
    if mem["ssh"]:
        ax.scatter(
            [1],
            [mem["ssh"]["ssh_client_rss_mb"]],
            color=colors[SSH],
            marker="D",
            zorder=3,
            label="ssh client, one -R",
        )
        ax.scatter(
            [1],
            [mem["ssh"]["sshd_connection_rss_mb"]],
            color=colors[SSH],
            marker="v",
            zorder=3,
            label="sshd, that connection",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("connector ha-connections")
    ax.set_ylabel("RSS MB")
    ax.set_title("Memory")
    ax.legend(fontsize=7)
    caption = machine_caption(result["machine"]) + f"; commit {result['source']['commit']}"
    if result["machine"].get("openssh"):
        caption += f"; {result['machine']['openssh']}"
    save_figure(plt, fig, out_dir, NAME, caption)
