"""Handshake CPU over TCP: post-quantum TLS 1.3 against classical, client and server apart.

The same variants are measured twice, round-robin within each phase:

* **in memory**: client and server in this process over memory BIOs (:mod:`.tls_pump`), CPU
  time around each side's calls: the TLS work and the layer's Python, nothing else;
* **over loopback sockets**: an asyncio client here, an asyncio TLS echo server in another
  process (:mod:`.tls_echo`), connections one after another: what a real connection costs each
  side, connect, accept and close included.

Variants: X25519MLKEM768 through ``ssl_context`` (policies ``prefer`` and ``require``), the
HelloRetryRequest path (a client that lists X25519MLKEM768 but sends only an x25519 share),
x25519 through the same layer (``groups=["x25519"]`` on both sides: the baseline), Python's
``ssl`` on both sides (policy ``off``: the system OpenSSL, x25519), and Python's ``ssl`` as the
client of a post-quantum server (what curl or an old browser gets: x25519). In memory also
every other group OpenSSL can negotiate over TCP.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .certs import dev_chain
from .handshake_cpu import gc_paused
from .machine import run_header
from .plots import pyplot, save_figure, tls_caption
from .processes import OtherLoad, other_share, system_busy_seconds
from .report import begin, table
from .results import publish
from .stats import ratio, summarize
from .tls_echo import EchoServer, handshakes, server_context
from .tls_pump import run_tls_pair

NAME = "tcp_handshake"
PQ = "X25519MLKEM768 (prefer)"
PQ_REQUIRE = "X25519MLKEM768 (require)"
HRR = "HRR X25519MLKEM768 (x25519 share first)"
BASELINE = "x25519 (same layer)"
STDLIB = "stdlib ssl both sides (x25519)"
STDLIB_ON_PQ = "stdlib client -> PQ server (x25519)"
MEMORY, SOCKETS = "in memory", "loopback sockets"


# --- variants ----------------------------------------------------------------------------


def _client(ca: Path, policy: str, groups: list[str] | None = None) -> Any:
    from pq_quic_plugin import ssl_context

    return ssl_context(policy, groups, server_side=False, cafile=ca)


def _hrr_client(ca: Path) -> Any:
    """Lists X25519MLKEM768 first but sends only an x25519 key share: ``ssl_context`` has no
    key-share argument, so the layer's context is built from a policy that says so."""
    import ssl

    from pq_quic_plugin.policy import GroupPolicy
    from pq_quic_plugin.tls_binding import PostQuantumSSLContext

    policy = GroupPolicy.build("prefer", ["X25519MLKEM768", "x25519"], key_shares=["x25519"])
    ctx = PostQuantumSSLContext(policy, server_side=False)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _variants(ca: Path) -> list[dict[str, Any]]:
    """label, kind, the server context's name (:data:`.tls_echo.SERVER_CONTEXTS`) or a group
    list for a memory-only variant, a client factory, and the group the server must report."""

    def client(policy: str, groups: list[str] | None = None) -> Callable[[], Any]:
        return lambda: _client(ca, policy, groups)

    variants = [
        dict(label=PQ, kind="post-quantum", server="prefer", client=client("prefer")),
        dict(label=PQ_REQUIRE, kind="post-quantum", server="require", client=client("require")),
        dict(label=HRR, kind="hrr", server="prefer", client=lambda: _hrr_client(ca)),
        dict(
            label=BASELINE, kind="classical", server="x25519", client=client("prefer", ["x25519"])
        ),
        dict(label=STDLIB, kind="stdlib", server="off", client=client("off")),
        dict(label=STDLIB_ON_PQ, kind="mixed", server="prefer", client=client("off")),
    ]
    for v in variants:
        v["expect"] = "X25519MLKEM768" if v["kind"] in ("post-quantum", "hrr") else "x25519"
    from pq_quic_plugin import available_groups
    from pq_quic_plugin.tls_binding import split_tls_groups

    tls_groups, _ = split_tls_groups([g.name for g in available_groups()])
    for group in tls_groups:
        if group.name in ("X25519MLKEM768", "x25519"):
            continue
        variants.append(
            dict(
                label=group.name,
                kind="post-quantum" if group.post_quantum else "classical",
                server=[group.name],
                client=client("prefer", [group.name]),
                expect=group.name,
                memory_only=True,
            )
        )
    return variants


def _server_ctx(variant: dict[str, Any], chain: Any) -> Any:
    if isinstance(variant["server"], str):
        return server_context(variant["server"], chain.cert, chain.key)
    from pq_quic_plugin import ssl_context

    return ssl_context(
        "prefer", variant["server"], server_side=True, certfile=chain.cert, keyfile=chain.key
    )


def _check(variant: dict[str, Any], *tls_objects: Any) -> str:
    """What the handshake negotiated, as the side that can tell reports it; raises if that is
    not what the variant is about (Python's ``ssl`` cannot report a group before 3.15)."""
    from pq_quic_plugin import negotiated_group

    ours = [t for t in tls_objects if hasattr(t, "hello_retry")]  # the layer's TLS objects
    if not ours:
        return "x25519 (not reported)"
    group = negotiated_group(ours[0])
    name = group.name if group is not None else None
    if name != variant["expect"]:
        raise RuntimeError(f"{variant['label']}: negotiated {name}, not {variant['expect']}")
    hrr = any(t.hello_retry for t in ours)
    if hrr != (variant["kind"] == "hrr"):
        raise RuntimeError(f"{variant['label']}: HelloRetryRequest {hrr}")
    return name + (" after HRR" if hrr else "")


# --- the two phases ----------------------------------------------------------------------


def _memory(variants: list[dict[str, Any]], rounds: int, warmup: int) -> dict[str, Any]:
    samples = {v["label"]: {"client": [], "server": [], "total": []} for v in variants}
    for v in variants:
        pair = run_tls_pair(v["server_ctx"], v["client_ctx"])
        v["negotiated"] = _check(v, pair.server, pair.client)
        v["flights"] = pair.flights
    for _ in range(warmup):
        for v in variants:
            run_tls_pair(v["server_ctx"], v["client_ctx"])
    with OtherLoad() as load, gc_paused():
        for i in range(rounds):
            for v in variants[i % len(variants) :] + variants[: i % len(variants)]:
                pair = run_tls_pair(v["server_ctx"], v["client_ctx"])
                s = samples[v["label"]]
                s["client"].append(pair.client_ns / 1e6)
                s["server"].append(pair.server_ns / 1e6)
                s["total"].append(pair.total_ns / 1e6)
    return {"samples": samples, "other_processes_cpu_share": load.share}


async def _socket_rounds(
    variants: list[dict[str, Any]], server: EchoServer, rounds: int, batch: int
) -> tuple[dict[str, dict[str, list[float]]], float]:
    """Per variant, per batch: client and server CPU and wall time per connection; and the
    share of the cores that processes other than this one and the server took meanwhile."""
    samples = {v["label"]: {"client": [], "server": [], "wall": []} for v in variants}
    for v in variants:  # warm-up, and the check that each variant is what it says
        tls = await handshakes(server.ports[v["server"]], v["client_ctx"], 2)
        # the server is in another process: only a client of the layer can tell
        v["negotiated_over_sockets"] = _check(v, tls) if hasattr(tls, "hello_retry") else None
    busy0, own0, server0 = system_busy_seconds(), time.process_time(), server.cpu_ns()
    started = time.perf_counter()
    for i in range(rounds):
        for v in variants[i % len(variants) :] + variants[: i % len(variants)]:
            with gc_paused():
                s0, c0, w0 = server.cpu_ns(), time.process_time_ns(), time.perf_counter()
                await handshakes(server.ports[v["server"]], v["client_ctx"], batch)
                wall = time.perf_counter() - w0
                c1, s1 = time.process_time_ns(), server.cpu_ns()
            s = samples[v["label"]]
            s["client"].append((c1 - c0) / batch / 1e6)
            s["server"].append((s1 - s0) / batch / 1e6)
            s["wall"].append(wall / batch * 1000)
    ours = time.process_time() - own0 + (server.cpu_ns() - server0) / 1e9
    wall = time.perf_counter() - started
    other = other_share(system_busy_seconds() - busy0, ours, wall)
    print(f"  other processes used {100 * other:.0f}% of the cores meanwhile", flush=True)
    return samples, round(other, 3)


def _summaries(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    out = {}
    for label, s in samples.items():
        out[label] = {f"{side}_ms": summarize(values) for side, values in s.items()}
        if "total" not in s:
            totals = [a + b for a, b in zip(s["client"], s["server"], strict=True)]
            out[label]["total_ms"] = summarize(totals)
    return out


def _ratios(rows: dict[str, Any], base: str) -> dict[str, Any]:
    return {
        label: {
            side: ratio(r[f"{side}_ms"]["median"], rows[base][f"{side}_ms"]["median"])
            for side in ("client", "server", "total")
        }
        for label, r in rows.items()
    }


# --- run -----------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("handshake CPU over TCP (TLS 1.3): post-quantum vs classical, client and server")
    rounds, warmup = (5, 1) if quick else (400, 20)
    socket_rounds, batch = (1, 5) if quick else (10, 40)
    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        chain = dev_chain(Path(tmp))
        variants = _variants(chain.ca)
        for v in variants:
            v["server_ctx"], v["client_ctx"] = _server_ctx(v, chain), v["client"]()
        print(f"  in memory: {len(variants)} variants x {rounds} rounds (round-robin)", flush=True)
        memory = _memory(variants, rounds, warmup)
        on_sockets = [v for v in variants if not v.get("memory_only")]
        print(
            f"  over loopback: {len(on_sockets)} variants x {socket_rounds} rounds of "
            f"{batch} connections",
            flush=True,
        )
        with EchoServer(chain.cert, chain.key) as server:
            sockets, socket_load = asyncio.run(
                _socket_rounds(on_sockets, server, socket_rounds, batch)
            )
    mem = _summaries(memory["samples"])
    base = memory["samples"][BASELINE]["total"]
    for v in variants:
        row = mem[v["label"]]
        row |= {"kind": v["kind"], "negotiated": v["negotiated"], "flights": v["flights"]}
        diffs = [a - b for a, b in zip(memory["samples"][v["label"]]["total"], base, strict=True)]
        row["paired_delta_vs_x25519_ms"] = summarize(diffs)["median"]
    sock = _summaries(sockets)
    for v in on_sockets:
        seen = v["negotiated_over_sockets"] or v["negotiated"]
        sock[v["label"]] |= {"kind": v["kind"], "negotiated": seen}
    result = {
        **run_header(NAME, quick),
        "method": {
            "certificate": chain.label,
            "client_verifies_chain_and_name": True,
            "exchange": "full TLS 1.3 handshake, one byte each way (so the server finishes "
            "and sends its session tickets, and the client reads them); no resumption",
            MEMORY: {
                "how": "client and server in one process over ssl.MemoryBIO pairs; "
                "time.process_time_ns around each side's calls; gc paused",
                "rounds": rounds,
                "warmup_rounds": warmup,
                "order": "round-robin over all variants, start rotated each round",
            },
            SOCKETS: {
                "how": "asyncio client (open_connection, write 1 byte, read 1, close) in this "
                "process; asyncio TLS echo server in another process, which reports its own "
                "process_time_ns; connections one after another",
                "rounds": socket_rounds,
                "connections_per_batch": batch,
                "samples": "one per batch: CPU of the batch / connections",
            },
            "baseline": BASELINE + ": groups=['x25519'] on both sides of the same layer",
            "stdlib": "Python's ssl module on the system OpenSSL (no ML-KEM)",
        },
        MEMORY: {
            "handshakes": mem,
            "ratios_vs_x25519": _ratios(mem, BASELINE),
            "ratios_vs_stdlib": _ratios(mem, STDLIB),
            "other_processes_cpu_share": memory["other_processes_cpu_share"],
        },
        SOCKETS: {
            "handshakes": sock,
            "ratios_vs_x25519": _ratios(sock, BASELINE),
            "ratios_vs_stdlib": _ratios(sock, STDLIB),
            "other_processes_cpu_share": socket_load,
        },
    }
    return publish(result, out_dir, _print, plot)


def _print(result: dict[str, Any]) -> None:
    for phase in (MEMORY, SOCKETS):
        part = result[phase]
        rows = []
        for label, h in part["handshakes"].items():
            vs_x, vs_std = part["ratios_vs_x25519"][label], part["ratios_vs_stdlib"][label]
            rows.append(
                [
                    label,
                    h["negotiated"],
                    h["client_ms"]["median"],
                    h["server_ms"]["median"],
                    h["total_ms"]["median"],
                    vs_x["client"],
                    vs_x["server"],
                    vs_x["total"],
                    vs_std["server"],
                ]
            )
        print(f"\n  {phase} (other load {100 * part['other_processes_cpu_share']:.0f}%):")
        print(
            table(
                [
                    "variant",
                    "negotiated",
                    "client ms",
                    "server ms",
                    "total ms",
                    "client x x25519",
                    "server x x25519",
                    "total x x25519",
                    "server x stdlib",
                ],
                rows,
            )
        )
    for phase in (MEMORY, SOCKETS):
        r = result[phase]["ratios_vs_x25519"][PQ]
        s = result[phase]["ratios_vs_stdlib"][PQ]
        print(
            f"  ratios {phase}: X25519MLKEM768 / x25519 on the layer: client x{r['client']}, "
            f"server x{r['server']}; / stdlib ssl: client x{s['client']}, server x{s['server']}"
        )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    colors = {
        "post-quantum": "#2a9d55",
        "hrr": "#e07b39",
        "classical": "#4c72b0",
        "stdlib": "#888888",
        "mixed": "#8c5fb3",
    }
    fig, axes = plt.subplots(
        1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [1.2, 1]}, sharey=False
    )
    for ax, phase in zip(axes, (MEMORY, SOCKETS), strict=True):
        hs = result[phase]["handshakes"]
        labels = list(hs)
        y = list(range(len(labels)))
        client = [hs[k]["client_ms"]["median"] for k in labels]
        server = [hs[k]["server_ms"]["median"] for k in labels]
        tint = [colors[hs[k]["kind"]] for k in labels]
        ax.barh(y, client, color=tint, alpha=0.95, label="client")
        ax.barh(y, server, left=client, color=tint, alpha=0.5, label="server")
        for yi, k in enumerate(labels):
            total = client[yi] + server[yi]
            r = result[phase]["ratios_vs_x25519"][k]
            ax.text(
                total,
                yi,
                f" c x{r['client']:.2f}  s x{r['server']:.2f}",
                va="center",
                fontsize=7,
            )
        ax.axvline(
            hs[BASELINE]["client_ms"]["median"] + hs[BASELINE]["server_ms"]["median"],
            color="#4c72b0",
            ls="--",
            lw=1,
        )
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(c + s for c, s in zip(client, server, strict=True)) * 1.45)
        other = result[phase]["other_processes_cpu_share"]
        ax.set_xlabel("CPU ms per connection: client + server (medians)")
        ax.set_title(f"{phase} (other load {100 * other:.0f}%)")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "TLS 1.3 handshake CPU over TCP; c/s: client/server ratio to x25519 on the same layer",
        fontsize=11,
    )
    save_figure(plt, fig, out_dir, NAME, tls_caption(result))
