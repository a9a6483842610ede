"""Serving over TCP: hypercorn-pq --pq against stock hypercorn, HTTP/1.1 and HTTP/2, one run.

Both servers run one asyncio worker and the same app (``bench.asgi_app``): hypercorn-pq's TCP
listener on the post-quantum layer, stock hypercorn on Python's ``ssl``. Modes, for each of
HTTP/1.1 and HTTP/2:

* requests/s with a **new connection per request** (4 closed loops, a TCP connection and a
  full handshake each time) and over **reused connections** (8 requests in flight: 8 keep-alive
  connections for HTTP/1.1, 8 streams on one connection for HTTP/2), the 29-byte response;
* MB/s of one **download** and one **upload** of a large body on an open connection.

Series (a server and its client): hypercorn-pq with httpx on the post-quantum layer
(X25519MLKEM768), stock hypercorn with httpx on ``ssl`` (x25519), and, to split the server's
share from the client's, hypercorn-pq with that same ``ssl`` client. Transfers also run with
curl against both servers: one C client, so the servers' data paths are what differs. A third
server, hypercorn-pq without ``--pq`` (its binding on Python's ``ssl``), splits hypercorn-pq's
difference from stock into the binding's part and the post-quantum TLS layer's.

Every repetition runs each mode's series back to back, the order rotated; the ratios of these
pairs (:mod:`.pairing`) are the headline. Each slice records both sides' CPU and the share of
the cores other processes took meanwhile.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import tcp_clients
from .load import load_summary
from .machine import run_header
from .pairing import clean_or_all, paired_ratios, slice_records
from .processes import other_share, system_busy_seconds
from .report import begin
from .results import publish
from .servers import Server, free_ports, stop_all
from .tcp_serving_report import plot, show

NAME = "tcp_serving"
APP = "bench.asgi_app:app"
PQ_SERVER, STOCK_SERVER = "hypercorn-pq --pq", "stock hypercorn"
OFF_SERVER = "hypercorn-pq, pq off"
"""hypercorn-pq without ``--pq``: its binding (HTTP/2 flow control, TLS facts in the scope) on
Python's ``ssl``, to tell the binding's cost from the post-quantum TLS layer's."""
PQ = "hypercorn-pq --pq <- httpx, PQ layer"
STOCK = "stock hypercorn <- httpx, ssl"
CLASSICAL_ON_PQ = "hypercorn-pq --pq <- httpx, ssl"
CLASSICAL_ON_OFF = "hypercorn-pq, pq off <- httpx, ssl"
CURL_PQ = "hypercorn-pq --pq <- curl"
CURL_STOCK = "stock hypercorn <- curl"
CURL_OFF = "hypercorn-pq, pq off <- curl"
PROTOCOLS = {"HTTP/1.1": False, "HTTP/2": True}
NEW, REUSED = "new connection per request", "reused connections"
DOWNLOAD, UPLOAD = "download", "upload"
REQUESTS, HTTPX_TRANSFERS, CURL_TRANSFERS = "requests", "httpx transfers", "curl transfers"
SERIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    PQ: (PQ_SERVER, "prefer", (REQUESTS, HTTPX_TRANSFERS)),
    STOCK: (STOCK_SERVER, "off", (REQUESTS, HTTPX_TRANSFERS)),
    CLASSICAL_ON_PQ: (PQ_SERVER, "off", (REQUESTS,)),
    CLASSICAL_ON_OFF: (OFF_SERVER, "off", (REQUESTS,)),
    CURL_PQ: (PQ_SERVER, "curl", (CURL_TRANSFERS,)),
    CURL_STOCK: (STOCK_SERVER, "curl", (CURL_TRANSFERS,)),
    CURL_OFF: (OFF_SERVER, "curl", (CURL_TRANSFERS,)),
}
"""label -> (server, client: an ``ssl_context`` policy or curl, the kinds of mode it runs)."""
PAIRS = {
    "PQ / stock (end to end)": (PQ, STOCK),
    "server only: hypercorn-pq / stock, same ssl client": (CLASSICAL_ON_PQ, STOCK),
    "PQ client / ssl client, both on hypercorn-pq": (PQ, CLASSICAL_ON_PQ),
    "server only: hypercorn-pq / stock, curl": (CURL_PQ, CURL_STOCK),
    "binding: hypercorn-pq pq off / stock, same ssl client": (CLASSICAL_ON_OFF, STOCK),
    "TLS layer: hypercorn-pq --pq / pq off, same ssl client": (CLASSICAL_ON_PQ, CLASSICAL_ON_OFF),
    "binding: hypercorn-pq pq off / stock, curl": (CURL_OFF, CURL_STOCK),
    "TLS layer: hypercorn-pq --pq / pq off, curl": (CURL_PQ, CURL_OFF),
}


def mode_name(protocol: str, mode: str, client: str = "") -> str:
    return f"{protocol}, {mode}" + (f" ({client})" if client else "")


def _modes() -> dict[str, tuple[str, str, str]]:
    """mode name -> (protocol, what, kind of mode) in the order they run."""
    out = {}
    for protocol in PROTOCOLS:
        for what in (NEW, REUSED):
            out[mode_name(protocol, what)] = (protocol, what, REQUESTS)
        for what in (DOWNLOAD, UPLOAD):
            out[mode_name(protocol, what, "httpx")] = (protocol, what, HTTPX_TRANSFERS)
            out[mode_name(protocol, what, "curl")] = (protocol, what, CURL_TRANSFERS)
    return out


KEEP_ALIVE_TOML = "keep_alive_max_requests = 1000000000\n"
"""Both servers' only change from hypercorn's defaults: its default of 1,000 requests per
connection ends an HTTP/2 connection with a GOAWAY while streams are in flight, which httpx
reports as errors, and would turn a slice of "reused connections" into a few new ones."""


def _servers(pki: Any, log_dir: Path) -> dict[str, Server]:
    config = log_dir / "bench.toml"
    config.write_text(KEEP_ALIVE_TOML)
    tls = ["--config", str(config), "--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    hypercorn_pq = [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding"]
    argv = {
        PQ_SERVER: [*hypercorn_pq, "--pq", *tls],
        STOCK_SERVER: [sys.executable, "-m", "hypercorn", *tls],
        OFF_SERVER: [*hypercorn_pq, *tls],
    }
    servers = {}
    for (label, args), port in zip(argv.items(), free_ports(len(argv)), strict=True):
        log = log_dir / f"{label.split(',')[0].split()[0]}-{port}.log"
        servers[label] = Server(label, [*args, "-b", f"127.0.0.1:{port}", APP], port, log)
    return servers


async def _probe(base: str, ctx: Any, http2: bool) -> dict[str, Any]:
    """One request: what the client and the server each say was negotiated."""
    from pq_quic_plugin import negotiated_group

    async with tcp_clients.client(ctx, http2) as client:
        response = await client.get(base + "/group")
        tls = response.extensions["network_stream"].get_extra_info("ssl_object")
        group = negotiated_group(tls)
        return {
            "http_version": response.http_version,
            "client_view": group.name if group else "not reported (Python's ssl)",
            "server_view": response.text,
        }


# --- one slice -------------------------------------------------------------------------------


def _run_slice(
    label: str,
    server: Server,
    mode: str,
    params: dict[str, Any],
    ctx: Any,
    ca: Path,
    upload_file: Path,
) -> dict[str, Any]:
    protocol, what, kind = _modes()[mode]
    http2, base = PROTOCOLS[protocol], f"https://127.0.0.1:{server.port}"
    cpu0, own0 = server.cpu_seconds(), time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, wall0 = system_busy_seconds(), time.perf_counter()
    out: dict[str, Any] = {"server": label, "mode": mode}
    if kind == REQUESTS:
        duration, limit = params["duration"], params["limit"]
        if what == NEW:
            coro = tcp_clients.new_connection_per_request(
                base + "/", ctx, http2, params["workers"], duration, limit
            )
        else:
            coro = tcp_clients.reused_connections(
                base + "/", ctx, http2, params["in_flight"], duration, limit
            )
        out["latencies"], out["errors"], out["elapsed"] = asyncio.run(coro)
    else:
        size = params["size"]
        if kind == HTTPX_TRANSFERS:
            out["elapsed"] = asyncio.run(tcp_clients.httpx_transfer(base, ctx, http2, what, size))
        else:
            out["elapsed"], _ = tcp_clients.curl_transfer(base, ca, http2, what, size, upload_file)
        out["bytes"] = size
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = server.cpu_seconds() - cpu0
    client_cpu = time.process_time() - own0
    client_cpu += (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)  # curl
    wall = time.perf_counter() - wall0
    other = other_share(system_busy_seconds() - busy0, server_cpu + client_cpu, wall)
    return out | {
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "wall": wall,
        "other_share": other,
    }


def megabytes(s: dict[str, Any]) -> float:
    return float(s.get("bytes", 0)) / 1e6


# --- summaries -------------------------------------------------------------------------------


def _transfer_summary(slices: list[dict[str, Any]]) -> dict[str, Any]:
    mb = sum(megabytes(s) for s in slices)
    elapsed = sum(s["elapsed"] for s in slices)
    return {
        "slices": len(slices),
        "megabytes": round(mb, 1),
        "seconds": round(elapsed, 3),
        "megabytes_per_s": round(mb / elapsed, 1) if elapsed else 0.0,
        "megabytes_per_s_each_slice": [round(megabytes(s) / s["elapsed"], 1) for s in slices],
        "server_cpu_s_per_mb": round(sum(s["server_cpu"] for s in slices) / mb, 5) if mb else None,
        "client_cpu_s_per_mb": round(sum(s["client_cpu"] for s in slices) / mb, 5) if mb else None,
    }


def _summary(slices: list[dict[str, Any]]) -> dict[str, Any]:
    if not slices:
        return {"slices": 0}
    base = (
        load_summary(slices, ("server_cpu", "client_cpu"))
        if "latencies" in slices[0]
        else _transfer_summary(slices)
    )
    return base | {
        "other_processes_cpu_share": round(
            sum(s["other_share"] * s["wall"] for s in slices) / sum(s["wall"] for s in slices), 3
        )
    }


def _paired(slices: list[dict[str, Any]]) -> dict[str, Any]:
    modes = _modes()
    out: dict[str, Any] = {}
    for what, (a, b) in PAIRS.items():
        both = set(SERIES[a][2]) & set(SERIES[b][2])
        request_modes = [m for m, (_, _, k) in modes.items() if k == REQUESTS and k in both]
        transfer_modes = [m for m, (_, _, k) in modes.items() if k != REQUESTS and k in both]
        out[what] = paired_ratios(slices, a, b, request_modes) | paired_ratios(
            slices, a, b, transfer_modes, megabytes, "megabytes_per_s", "mb"
        )
    return out


# --- run -------------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("serving over TCP: hypercorn-pq --pq vs stock hypercorn, HTTP/1.1 and HTTP/2")
    from pq_quic_plugin import ssl_context
    from pq_quic_plugin.devcert import make_dev_pki

    reps = 1 if quick else 8
    size = (4 if quick else 100) * 1024 * 1024
    request_params = {
        NEW: dict(workers=4, duration=0.4 if quick else 2.0, limit=8 if quick else 5000),
        REUSED: dict(in_flight=8, duration=0.4 if quick else 2.0, limit=40 if quick else 50000),
    }
    modes = _modes()
    slices: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        pki = make_dev_pki(Path(tmp) / "pki")
        upload_file = Path(tmp) / "upload.bin"
        with open(upload_file, "wb") as handle:
            handle.truncate(size)
        servers = _servers(pki, Path(tmp))
        contexts = {
            label: ssl_context(client, server_side=False, cafile=pki.ca_cert)
            for label, (_, client, _) in SERIES.items()
            if client != "curl"
        }
        probe: dict[str, Any] = {}
        try:
            for server in servers.values():
                server.start()
            for label, ctx in contexts.items():
                server = servers[SERIES[label][0]]
                for protocol, http2 in PROTOCOLS.items():
                    seen = asyncio.run(_probe(f"https://127.0.0.1:{server.port}", ctx, http2))
                    probe[f"{label}, {protocol}"] = seen
                    print(f"  probe {label}, {protocol}: {seen}", flush=True)
            if probe[f"{PQ}, HTTP/2"]["server_view"] != "X25519MLKEM768":
                raise RuntimeError(f"hypercorn-pq did not negotiate X25519MLKEM768: {probe}")
            for rep in range(reps):
                for mode, (_, what, kind) in modes.items():
                    order = [label for label, spec in SERIES.items() if kind in spec[2]]
                    order = order[rep % len(order) :] + order[: rep % len(order)]
                    params = request_params[what] if kind == REQUESTS else {"size": size}
                    for label in order:
                        sl = _run_slice(
                            label,
                            servers[SERIES[label][0]],
                            mode,
                            params,
                            contexts.get(label),
                            pki.ca_cert,
                            upload_file,
                        )
                        slices.append(sl | {"repetition": rep})
                        _say(rep, reps, sl)
        finally:
            logs = stop_all(servers)

    modes_of = {
        label: [mode for mode, (_, _, kind) in modes.items() if kind in spec[2]]
        for label, spec in SERIES.items()
    }
    results, every, basis = clean_or_all(slices, modes_of, _summary, reps)
    result = {
        **run_header(NAME, quick),
        "method": {
            "app": APP,
            "servers": {label: s.argv[1:] for label, s in servers.items()},
            "series": {
                label: {
                    "server": srv,
                    "client": cl,
                    "modes": [m for m in modes if modes[m][2] in k],
                }
                for label, (srv, cl, k) in SERIES.items()
            },
            "clients": "httpx AsyncClient in this process, verify=ssl_context(policy): "
            "'prefer' is the post-quantum layer, 'off' Python's ssl; curl "
            f"{tcp_clients.CURL} (system OpenSSL, x25519 with both servers) for transfers",
            "curl": tcp_clients.curl_version(),
            "request_modes": request_params,
            "transfer_bytes": size,
            "repetitions": reps,
            "order": "per repetition and mode: the series back to back, the first one rotating",
            "transfer_timing": "request to last byte on a connection opened before the clock "
            "starts (httpx: one small request first; curl: from time_pretransfer)",
            "other_load": "CPU busy time of the whole machine (/proc/stat) minus this "
            "process's, its children's and the server's, as a share of all cores",
            "cpu": "server: on-CPU time of the server's process session (/proc/PID/task/*/sched); "
            "client: this process (httpx) or curl (RUSAGE_CHILDREN)",
        },
        "probe": probe,
        "basis": basis,
        "results": results,
        "results_all_slices": every,
        "paired_ratios": _paired(slices),
        "slices": slice_records(slices),
        "server_log_tail": logs,
    }
    return publish(result, out_dir, show, plot)


def _say(rep: int, reps: int, sl: dict[str, Any]) -> None:
    if "latencies" in sl:
        rate = f"{len(sl['latencies']) / sl['elapsed']:7.1f} req/s ({sl['errors']} errors)"
    else:
        rate = f"{megabytes(sl) / sl['elapsed']:7.1f} MB/s"
    print(
        f"  [{rep + 1}/{reps}] {sl['server'][:34]:34s} {sl['mode'][:40]:40s} {rate}; "
        f"other load {100 * sl['other_share']:.0f}%",
        flush=True,
    )
