"""HTTP/3 serving: hypercorn-pq --pq against stock hypercorn, same tiny app, loopback only.

Two load shapes, each bounded in time and in request count:

(a) a new QUIC connection (full handshake) for every request, several workers in parallel;
(b) a few long-lived connections, each carrying several concurrent request streams.

The client is ``pq_quic_plugin.http3`` in this process (policy ``prefer`` against
hypercorn-pq, so X25519MLKEM768; policy ``off`` against stock hypercorn, so stock aioquic on
both ends). Phases alternate between the two servers (twice each) so drift hits both alike.
Besides requests/s and latency the server's CPU time per request is read from /proc (the whole
server process group), because with client and server sharing two cores the client's own CPU
limits requests/s as much as the server does.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .load import load_summary, new_connection_per_request, reused_connections
from .machine import machine_info
from .pairing import clean_or_all, paired_ratios, slice_records
from .plots import machine_caption, pyplot, save_figure
from .processes import other_share, system_busy_seconds
from .report import begin, request_cells, table
from .results import publish
from .servers import Server, stop_all, two_ports
from .stats import ratio

NAME = "http3_serving"
APP = "bench.asgi_app:app"
PQ = "hypercorn-pq --pq"
STOCK = "stock hypercorn"
CLASSICAL_ON_PQ = "hypercorn-pq --pq, x25519-only client"
"""A third series, new connections only: the same hypercorn-pq, a client restricted to x25519.
It splits the PQ/stock difference into key exchange (PQ vs x25519 on the same server) and
everything else (hypercorn-pq's binding, and stock aioquic's secp256r1 choice)."""
NEW = "new connection per request"
REUSED = "reused connections"

# --- server processes ----------------------------------------------------------------------


def _servers(pki: Any, log_dir: Path) -> dict[str, Server]:
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    p1, p2 = two_ports()
    pq = [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", "--pq", *tls]
    stock = [sys.executable, "-m", "hypercorn", *tls]
    return {
        PQ: Server(PQ, [*pq, "-b", f"127.0.0.1:{p1}", APP], p1, log_dir / "hypercorn-pq.log"),
        STOCK: Server(
            STOCK,
            [*stock, "-b", f"127.0.0.1:{p2}", "--quic-bind", f"127.0.0.1:{p2}", APP],
            p2,
            log_dir / "hypercorn.log",
        ),
    }


def udp_counters() -> dict[str, int]:
    """System-wide UDP counters (/proc/net/snmp): receive-buffer drops show up here."""
    try:
        with open("/proc/net/snmp", encoding="ascii") as f:
            lines = [line.split() for line in f if line.startswith("Udp:")]
        return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    except (OSError, IndexError, ValueError):
        return {}


# --- run -----------------------------------------------------------------------------------


def _slice(
    server: Server,
    mode: str,
    params: dict[str, Any],
    url: str,
    config: Any,
    rep: int,
    series: str | None = None,
) -> dict[str, Any]:
    cpu0, ccpu0 = server.cpu_seconds(), time.process_time()
    udp0, busy0, wall0 = udp_counters(), system_busy_seconds(), time.perf_counter()
    if mode == NEW:
        lat, err, el = asyncio.run(
            new_connection_per_request(
                url, config, params["workers"], params["duration"], params["limit"]
            )
        )
    else:
        lat, err, el = asyncio.run(
            reused_connections(
                url,
                config,
                params["connections"],
                params["streams"],
                params["duration"],
                params["limit"],
            )
        )
    server_cpu = server.cpu_seconds() - cpu0
    client_cpu = time.process_time() - ccpu0
    wall = time.perf_counter() - wall0  # setup and teardown included, like the CPU counters
    # CPU that neither side of the benchmark used: another workload on the machine
    other = other_share(system_busy_seconds() - busy0, server_cpu + client_cpu, wall)
    udp1 = udp_counters()
    return {
        "server": series or server.label,
        "mode": mode,
        "repetition": rep,
        "latencies": lat,
        "errors": err,
        "elapsed": el,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "wall": wall,
        "other_share": other,
        "udp_drops": sum(udp1.get(k, 0) - udp0.get(k, 0) for k in ("RcvbufErrors", "SndbufErrors")),
    }


def _aggregate(slices: list[dict[str, Any]]) -> dict[str, Any]:
    return load_summary(slices, ("server_cpu", "client_cpu")) | {
        "udp_buffer_drops_system_wide": sum(s["udp_drops"] for s in slices),
        "other_processes_cpu_share": round(
            sum(s["other_share"] * s["wall"] for s in slices) / sum(s["wall"] for s in slices), 3
        )
        if slices
        else None,
    }


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for mode in results[PQ]:
        pq, st = results[PQ][mode], results[STOCK][mode]
        out[mode] = {
            "requests_per_s_pq_over_stock": ratio(pq["requests_per_s"], st["requests_per_s"]),
            "p50_pq_over_stock": ratio(pq["latency_ms"]["median"], st["latency_ms"]["median"]),
            "p90_pq_over_stock": ratio(pq["latency_ms"]["p90"], st["latency_ms"]["p90"]),
            "p99_pq_over_stock": ratio(pq["latency_ms"]["p99"], st["latency_ms"]["p99"]),
            "server_cpu_per_request_pq_over_stock": ratio(
                pq["server_cpu_ms_per_request"] or 0, st["server_cpu_ms_per_request"] or 0
            ),
        }
    return out


def _paired(
    slices: list[dict[str, Any]],
    a_label: str = PQ,
    b_label: str = STOCK,
    modes: tuple[str, ...] = (NEW, REUSED),
) -> dict[str, Any]:
    """a/b (default PQ/stock) ratios of back-to-back slices (:mod:`.pairing`)."""
    return paired_ratios(slices, a_label, b_label, modes)


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("HTTP/3 serving: hypercorn-pq --pq vs stock hypercorn")
    from pq_quic_plugin.devcert import make_dev_pki
    from pq_quic_plugin.http3 import client_configuration, fetch

    reps = 1 if quick else 10
    modes = {
        NEW: dict(workers=4, duration=1.0 if quick else 2.0, limit=10 if quick else 1000),
        REUSED: dict(
            connections=2, streams=8, duration=1.0 if quick else 1.5, limit=20 if quick else 10000
        ),
    }
    policies = {PQ: "prefer", STOCK: "off"}
    # series: label -> (server, client policy, client groups, modes it runs in)
    series = {
        PQ: (PQ, "prefer", None, (NEW, REUSED)),
        STOCK: (STOCK, "off", None, (NEW, REUSED)),
        CLASSICAL_ON_PQ: (PQ, "prefer", ["x25519"], (NEW,)),
    }
    slices: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        pki = make_dev_pki(Path(tmp) / "pki")
        servers = _servers(pki, Path(tmp))
        probe: dict[str, Any] = {}
        try:
            for server in servers.values():
                server.start()
            for label, server in servers.items():
                url = f"https://127.0.0.1:{server.port}/"
                response = asyncio.run(fetch(url, policies[label], cafile=str(pki.ca_cert)))
                assert response.status == 200, response
                probe[label] = {
                    "negotiated_client_view": response.group.name if response.group else None,
                    "post_quantum": bool(response.group and response.group.post_quantum),
                    "body": response.body.decode(errors="replace").strip(),
                }
                print(
                    f"  {label} on udp 127.0.0.1:{server.port}: "
                    f"{probe[label]['negotiated_client_view'] or 'stock aioquic key exchange'}",
                    flush=True,
                )
            configs = {
                label: client_configuration(
                    pol, groups=groups, cafile=str(pki.ca_cert), server_name="127.0.0.1"
                )
                for label, (_, pol, groups, _m) in series.items()
            }
            for rep in range(reps):
                for mode, params in modes.items():
                    # the series of one mode run back to back; who goes first rotates
                    order = [label for label in series if mode in series[label][3]]
                    order = order[rep % len(order) :] + order[: rep % len(order)]
                    for label in order:
                        server = servers[series[label][0]]
                        url = f"https://127.0.0.1:{server.port}/"
                        sl = _slice(server, mode, params, url, configs[label], rep, label)
                        slices.append(sl)
                        print(
                            f"  [{rep + 1}/{reps}] {label[:24]:24s} {mode:27s} "
                            f"{len(sl['latencies']) / sl['elapsed']:7.1f} req/s  "
                            f"({len(sl['latencies'])} ok, {sl['errors']} errors; other load "
                            f"{100 * sl['other_share']:.0f}% of the cores)",
                            flush=True,
                        )
        finally:
            logs = stop_all(servers)

    modes_of = {label: spec[3] for label, spec in series.items()}
    results, every, basis = clean_or_all(slices, modes_of, _aggregate, reps)
    result = {
        "benchmark": NAME,
        "quick": quick,
        "machine": machine_info(),
        "method": {
            "app": APP + " (fixed 29-byte text response)",
            "servers": {PQ: servers[PQ].argv[1:], STOCK: servers[STOCK].argv[1:]},
            "series": {
                label: {
                    "server": srv,
                    "client_policy": pol,
                    "client_groups": groups,
                    "modes": list(m),
                }
                for label, (srv, pol, groups, m) in series.items()
            },
            "client": "pq_quic_plugin.http3 in one asyncio process; policy prefer "
            "against hypercorn-pq, off against stock hypercorn",
            "modes": modes,
            "repetitions": reps,
            "order": "per repetition and mode: the two servers back to back (which goes "
            "first alternates); ratios of these pairs are the headline",
            "latency": "request start (including connect in mode a) to full response; the "
            "connection close is not waited for",
            "other_load": "CPU busy time of the whole machine (/proc/stat) minus this "
            "client's and the server's, as a share of all cores over the slice: "
            "anything well above 0 means another workload competed",
            "udp_drops": "RcvbufErrors + SndbufErrors from /proc/net/snmp during the slice "
            "(system-wide)",
            "cpu": "server: on-CPU time of the server's process session from /proc; "
            "client: time.process_time of this process",
        },
        "probe": probe,
        "basis": basis,
        "results": results,
        "ratios": _ratios(results),
        "paired_ratios": _paired(slices),
        "paired_breakdown_new_connections": {
            "key exchange: PQ client / x25519-only client, both on hypercorn-pq": _paired(
                slices, PQ, CLASSICAL_ON_PQ, (NEW,)
            )[NEW],
            (
                "rest: hypercorn-pq with x25519-only client / stock hypercorn with stock client"
            ): _paired(slices, CLASSICAL_ON_PQ, STOCK, (NEW,))[NEW],
        },
        "results_all_slices": every,
        "ratios_all_slices": _ratios(every),
        "slices": slice_records(slices),
        "server_log_tail": logs,
    }
    return publish(result, out_dir, _print, plot)


def _print(result: dict[str, Any]) -> None:
    print(f"  basis: {result['basis']}")
    rows = []
    for label, modes in result["results"].items():
        for mode, r in modes.items():
            rows.append(
                [
                    label,
                    mode,
                    *request_cells(r),
                    r["udp_buffer_drops_system_wide"],
                    r["other_processes_cpu_share"],
                ]
            )
    print(
        table(
            [
                "server",
                "mode",
                "req/s",
                "req/s each slice",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "server CPU ms/req",
                "client CPU ms/req",
                "requests",
                "errors",
                "UDP drops",
                "other load",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            ["mode", "req/s PQ/stock", "p50", "p90", "p99", "server CPU/req"],
            [
                [
                    m,
                    r["requests_per_s_pq_over_stock"],
                    r["p50_pq_over_stock"],
                    r["p90_pq_over_stock"],
                    r["p99_pq_over_stock"],
                    r["server_cpu_per_request_pq_over_stock"],
                ]
                for m, r in result["ratios"].items()
            ],
        )
    )
    paired = [(f"PQ/stock, {m}", r) for m, r in result["paired_ratios"].items()]
    paired += list(result["paired_breakdown_new_connections"].items())
    for what, r in paired:
        rps, cpu = r["requests_per_s_ratio"], r["server_cpu_per_request_ratio"]
        if rps and cpu:
            print(
                f"  paired {what}: req/s median x{rps['median']} "
                f"[{rps['min']}..{rps['max']}], server CPU/req x{cpu['median']} "
                f"[{cpu['min']}..{cpu['max']}] over {r['pairs']} pairs "
                f"({r['clean_pairs']} clean)"
            )
    print(
        "  (all slices, interference included: "
        + "; ".join(
            f"{m}: req/s x{r['requests_per_s_pq_over_stock']}, server CPU/req "
            f"x{r['server_cpu_per_request_pq_over_stock']}"
            for m, r in result["ratios_all_slices"].items()
        )
        + ")"
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    res = result["results"]
    modes = list(res[PQ])
    servers = list(res)
    colors = {PQ: "#2a9d55", STOCK: "#888888", CLASSICAL_ON_PQ: "#4c72b0"}
    short = {PQ: "PQ", STOCK: "stock", CLASSICAL_ON_PQ: "pq srv,\nx25519 cl"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    width = 0.8 / len(servers)
    for i, server in enumerate(servers):
        present = [(j, m) for j, m in enumerate(modes) if m in res[server]]
        xs = []
        for j, m in present:  # centre the bars of the series that ran in this mode
            here = [srv for srv in servers if m in res[srv]]
            xs.append(j + (here.index(server) - (len(here) - 1) / 2) * width)
        rps = [res[server][m]["requests_per_s"] for _, m in present]
        axes[0].bar(xs, rps, width, color=colors.get(server, "#dd8452"), label=server)
        for x, v, (_, m) in zip(xs, rps, present, strict=True):
            each = res[server][m]["requests_per_s_each_slice"]
            top = max([v, *each])
            axes[0].text(x, top * 1.02, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
            axes[0].scatter(
                [x] * len(each),
                each,
                color="black",
                s=8,
                zorder=3,
                label="each slice" if (i, m) == (0, modes[0]) else None,
            )
        cpu = [res[server][m]["server_cpu_ms_per_request"] or 0 for _, m in present]
        axes[2].bar(xs, cpu, width, color=colors.get(server, "#dd8452"), label=server)
        for x, v in zip(xs, cpu, strict=True):
            axes[2].text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    paired = result["paired_ratios"]
    lines = ["PQ/stock, median of back-to-back pairs:"]
    for m in modes:
        r = paired[m]["requests_per_s_ratio"]
        c = paired[m]["server_cpu_per_request_ratio"]
        if r and c:
            lines.append(f"{m}: req/s x{r['median']:.2f}, server CPU/req x{c['median']:.2f}")
    axes[0].text(
        0.02,
        0.78,
        "\n".join(lines),
        transform=axes[0].transAxes,
        fontsize=7,
        va="top",
        ha="left",
        bbox={"facecolor": "white", "edgecolor": "#cccccc"},
    )
    peak = max(
        v
        for srv in servers
        for m in res[srv]
        for v in [res[srv][m]["requests_per_s"], *res[srv][m]["requests_per_s_each_slice"]]
    )
    axes[0].set_ylim(0, peak * 1.9)
    axes[0].set_xticks(range(len(modes)), modes, fontsize=8)
    axes[0].set_ylabel("requests/s")
    axes[0].set_title("Throughput (client and server share the 2 cores)")
    axes[0].legend(fontsize=7, loc="upper left")
    axes[2].set_xticks(range(len(modes)), modes, fontsize=8)
    axes[2].set_ylabel("server CPU ms per request")
    axes[2].set_title("Server CPU per request (server process group)")
    ax = axes[1]
    pct = ["median", "p90", "p99"]
    labels, positions, k = [], [], 0
    for m in modes:
        for server in servers:
            if m not in res[server]:
                continue
            lat = res[server][m]["latency_ms"]
            color = colors.get(server, "#dd8452")
            ax.plot([k] * 3, [lat[p] for p in pct], color=color, lw=6, alpha=0.35)
            for p, marker in zip(pct, ["o", "s", "^"], strict=True):
                ax.scatter(
                    [k], [lat[p]], color=color, marker=marker, zorder=3, label=p if k == 0 else None
                )
            labels.append(f"{short.get(server, server)}\n{m.split()[0]}")
            positions.append(k)
            k += 1
    ax.set_xticks(positions, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("latency ms (log)")
    ax.set_title("Latency p50 (o) / p90 (s) / p99 (^)")
    ax.legend(fontsize=7)
    save_figure(plt, fig, out_dir, NAME, machine_caption(result["machine"]))
