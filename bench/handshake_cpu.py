"""Full-handshake CPU time, client and server in one process over the sans-IO API.

Variants, all measured round-robin in one run so that drift hits every variant alike:

* every group of ``available_groups()``, both sides configured with ``groups=[name]``;
* stock aioquic (no plugin; its client sends P-256, P-384, X25519 and X448 shares);
* the HelloRetryRequest path (client offers X25519MLKEM768 and x25519 but sends an x25519
  share only; the server prefers post-quantum and asks again);
* qh3 (TLS in Rust, packet core native), X25519MLKEM768 and x25519, as a compiled reference.

Next to each group: the bare group math through our ``Group`` objects (generate +
encapsulate + decapsulate), plus the raw backend primitives for ML-KEM-768 and X25519 so the
wrapper's own cost is visible. Ratios are against the x25519 handshake on the same stack.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from .certs import CertChain, dev_chain
from .configs import ALPN, aioquic_configs
from .machine import machine_info
from .plots import machine_caption, median_to_p90, pyplot, save_figure
from .processes import OtherLoad
from .report import begin, table
from .results import publish
from .sansio_pump import HandshakeFailed, PairTrace, run_pair
from .stack_internals import qh3_client_groups, qh3_server_group, stock_aioquic_group
from .stats import ratio, summarize

NAME = "handshake_cpu"
HRR = "HRR X25519MLKEM768 (x25519 share first)"
STOCK = "stock aioquic (no plugin)"
QH3_PQ = "qh3 X25519MLKEM768"
QH3_X25519 = "qh3 x25519"
BASELINE = "x25519"


# --- the stacks ----------------------------------------------------------------------------


def _qh3_configs(chain: CertChain) -> tuple[Any, Any]:
    from qh3.quic.configuration import QuicConfiguration

    client = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], server_name="localhost")
    client.load_verify_locations(cafile=str(chain.ca))
    server = QuicConfiguration(is_client=False, alpn_protocols=[ALPN])
    server.load_cert_chain(str(chain.cert), str(chain.key))
    return client, server


def _negotiated(kind: str, server: Any) -> str | None:
    """The group a server connection chose, asked the way its stack allows."""
    from pq_quic_plugin import negotiated_group

    if kind == "qh3":
        return qh3_server_group(server)
    group = negotiated_group(server)
    return group.name if group is not None else stock_aioquic_group(server)


# --- timing --------------------------------------------------------------------------------


class gc_paused:  # noqa: N801 - context manager
    """Collect once, then keep the cyclic collector out of the timed region."""

    def __enter__(self) -> None:
        gc.collect()
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: Any) -> None:
        if self._was:
            gc.enable()


# --- variants ------------------------------------------------------------------------------


def _variants(chain: CertChain) -> list[dict[str, Any]]:
    from aioquic.quic.connection import QuicConnection as AioquicConnection

    import pq_quic_plugin

    variants: list[dict[str, Any]] = []
    c, s = aioquic_configs(chain, None, None)
    variants.append(dict(label=STOCK, kind="stock", cls=AioquicConnection, client=c, server=s))
    for group in pq_quic_plugin.available_groups():
        c, s = aioquic_configs(chain, "prefer", "prefer", [group.name], [group.name])
        variants.append(
            dict(
                label=group.name,
                kind="post-quantum" if group.post_quantum else "classical",
                group=group.name,
                cls=AioquicConnection,
                client=c,
                server=s,
            )
        )
    c, s = aioquic_configs(
        chain, "prefer", "prefer", ["X25519MLKEM768", "x25519"], key_shares=["x25519"]
    )
    variants.append(dict(label=HRR, kind="hrr", cls=AioquicConnection, client=c, server=s))
    try:
        from qh3.quic.connection import QuicConnection as Qh3Connection
        from qh3.tls import Group as Qh3Group
    except ImportError:
        print("  qh3 is not installed: no Rust-stack reference")
    else:
        c, s = _qh3_configs(chain)
        variants.append(
            dict(
                label=QH3_PQ,
                kind="qh3",
                cls=Qh3Connection,
                client=c,
                server=s,
                on_client=qh3_client_groups([Qh3Group.X25519ML768, Qh3Group.X25519]),
            )
        )
        c, s = _qh3_configs(chain)
        variants.append(
            dict(
                label=QH3_X25519,
                kind="qh3",
                cls=Qh3Connection,
                client=c,
                server=s,
                on_client=qh3_client_groups([Qh3Group.X25519]),
            )
        )
    return variants


def _one(variant: dict[str, Any]) -> PairTrace:
    return run_pair(
        variant["cls"], variant["client"], variant["server"], on_client=variant.get("on_client")
    )


# --- group math ----------------------------------------------------------------------------


def _group_math(iterations: int) -> dict[str, dict[str, Any]]:
    import pq_quic_plugin

    clock = time.process_time_ns
    results: dict[str, dict[str, Any]] = {}
    groups = pq_quic_plugin.available_groups()
    samples: dict[str, list[float]] = {g.name: [] for g in groups}
    for g in groups:  # warm-up
        state, share = g.generate()
        g.decapsulate(state, g.encapsulate(share)[1])
    with gc_paused():
        for _ in range(iterations):
            for g in groups:
                t0 = clock()
                state, share = g.generate()
                secret, reply = g.encapsulate(share)
                assert g.decapsulate(state, reply) == secret
                samples[g.name].append((clock() - t0) / 1e6)
    for g in groups:
        results[g.name] = summarize(samples[g.name], 5)
    return results


def _raw_primitives(iterations: int) -> dict[str, dict[str, Any]]:
    """The backends without our wrapper: what the math alone costs."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    clock = time.process_time_ns
    funcs: dict[str, Any] = {}

    # serialisation included: TLS needs the bytes, and our groups do the same
    def x25519_kex() -> None:
        a = x25519.X25519PrivateKey.generate()
        a_pub = a.public_key().public_bytes_raw()
        b = x25519.X25519PrivateKey.generate()
        b.exchange(x25519.X25519PublicKey.from_public_bytes(a_pub))
        a.exchange(x25519.X25519PublicKey.from_public_bytes(b.public_key().public_bytes_raw()))

    funcs["X25519 (cryptography): 2 keygen + 2 exchange"] = x25519_kex
    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem

        def mlkem768_crypto() -> None:
            sk = mlkem.MLKEM768PrivateKey.generate()
            ek = sk.public_key().public_bytes_raw()
            ss, ct = mlkem.MLKEM768PublicKey.from_public_bytes(ek).encapsulate()
            sk.decapsulate(ct)

        funcs["ML-KEM-768 (cryptography): keygen + encaps + decaps"] = mlkem768_crypto
    except ImportError:
        pass
    try:
        from pqcrypto.kem import ml_kem_768

        def mlkem768_pqcrypto() -> None:
            pk, sk = ml_kem_768.keygen()
            ct, ss = ml_kem_768.encaps(pk)
            ml_kem_768.decaps(sk, ct)

        mlkem768_pqcrypto()
        funcs["ML-KEM-768 (pqcrypto): keygen + encaps + decaps"] = mlkem768_pqcrypto
    except Exception:  # noqa: BLE001 - pqcrypto's API differs between releases
        pass
    samples: dict[str, list[float]] = {k: [] for k in funcs}
    with gc_paused():
        for _ in range(iterations):
            for name, fn in funcs.items():
                t0 = clock()
                fn()
                samples[name].append((clock() - t0) / 1e6)
    return {k: summarize(v, 5) for k, v in samples.items()}


# --- run -----------------------------------------------------------------------------------


def run(quick: bool, out_dir: Path) -> dict[str, Any]:
    begin("handshake CPU (sans-IO, client + server in one process)")
    rounds = 3 if quick else 300
    warmup = 1 if quick else 10
    math_iterations = 20 if quick else 1000

    with tempfile.TemporaryDirectory(prefix="pq-bench-") as tmp:
        chain = dev_chain(Path(tmp))
        variants = _variants(chain)
        # sanity: every variant completes and negotiates what it says
        for v in variants:
            trace = _one(v)
            v["negotiated"] = _negotiated(v["kind"], trace.server)
            v["retry"] = bool(getattr(trace.server.tls, "pq_hello_retry", False))
            v["rounds_to_client_complete"] = trace.client_complete_round
            if v.get("group") and v["negotiated"] != v["group"]:
                raise HandshakeFailed(f"{v['label']} negotiated {v['negotiated']}")
        print(
            f"  {len(variants)} variants x {rounds} rounds (round-robin), {warmup} warm-up rounds",
            flush=True,
        )
        samples: dict[str, dict[str, list[float]]] = {
            v["label"]: {"total": [], "client": [], "server": []} for v in variants
        }
        for _ in range(warmup):
            for v in variants:
                _one(v)
        started = time.monotonic()
        with OtherLoad() as load, gc_paused():
            for i in range(rounds):
                # rotate the start so no variant always runs right after the same one
                order = variants[i % len(variants) :] + variants[: i % len(variants)]
                for v in order:
                    trace = _one(v)
                    s = samples[v["label"]]
                    s["total"].append(trace.total_cpu_ns / 1e6)
                    s["client"].append(trace.client_cpu_ns / 1e6)
                    s["server"].append(trace.server_cpu_ns / 1e6)
        elapsed = time.monotonic() - started

    print(f"  handshakes done in {elapsed:.1f} s; group math x {math_iterations}", flush=True)
    math = _group_math(math_iterations)
    raw = _raw_primitives(math_iterations)

    handshakes: dict[str, Any] = {}
    for v in variants:
        s = samples[v["label"]]
        handshakes[v["label"]] = {
            "kind": v["kind"],
            "stack": "qh3" if v["kind"] == "qh3" else "aioquic",
            "negotiated": v["negotiated"],
            "hello_retry": v["retry"],
            "total_ms": summarize(s["total"]),
            "client_ms": summarize(s["client"]),
            "server_ms": summarize(s["server"]),
        }
    base = handshakes[BASELINE]["total_ms"]["median"]
    base_math = math[BASELINE]["median"]
    base_samples = samples[BASELINE]["total"]
    for label, h in handshakes.items():
        h["ratio_vs_x25519"] = ratio(h["total_ms"]["median"], base)
        if h["stack"] == "aioquic" and label != BASELINE:
            # paired difference, round by round: less sensitive to drift than a median gap
            diffs = [a - b for a, b in zip(samples[label]["total"], base_samples, strict=True)]
            h["paired_delta_vs_x25519_ms"] = summarize(diffs)["median"]
        if label in math:
            h["group_math_ms"] = math[label]["median"]
            h["group_math_delta_vs_x25519_ms"] = round(math[label]["median"] - base_math, 4)
    if QH3_PQ in handshakes and QH3_X25519 in handshakes:
        handshakes[QH3_PQ]["ratio_vs_qh3_x25519"] = ratio(
            handshakes[QH3_PQ]["total_ms"]["median"], handshakes[QH3_X25519]["total_ms"]["median"]
        )

    result = {
        "benchmark": NAME,
        "quick": quick,
        "machine": machine_info(),
        "method": {
            "timer": "time.process_time_ns around each client and server call",
            "rounds": rounds,
            "warmup_rounds": warmup,
            "order": "round-robin over all variants, start rotated each round; gc paused",
            "certificate": chain.label,
            "client_verifies_chain": True,
            "group_math_iterations": math_iterations,
            "baseline": BASELINE + " through the plugin (same stack)",
        },
        "handshakes": handshakes,
        "group_math_ms": math,
        "raw_primitives_ms": raw,
        "elapsed_s": round(elapsed, 1),
        "other_processes_cpu_share": load.share,
    }
    return publish(result, out_dir, _print, plot)


def _print(result: dict[str, Any]) -> None:
    rows = []
    for label, h in result["handshakes"].items():
        rows.append(
            [
                label,
                h["negotiated"],
                h["total_ms"]["median"],
                h["total_ms"]["p90"],
                h["client_ms"]["median"],
                h["server_ms"]["median"],
                h["ratio_vs_x25519"],
                h.get("paired_delta_vs_x25519_ms", ""),
                h.get("group_math_ms", ""),
                h.get("group_math_delta_vs_x25519_ms", ""),
            ]
        )
    print(
        table(
            [
                "variant",
                "negotiated",
                "median ms",
                "p90 ms",
                "client ms",
                "server ms",
                "x vs x25519",
                "paired delta ms",
                "group math ms",
                "math delta ms",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            ["raw primitive", "median ms", "p90 ms"],
            [[k, v["median"], v["p90"]] for k, v in result["raw_primitives_ms"].items()],
        )
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    hs = result["handshakes"]
    labels = list(hs)
    colors = {
        "stock": "#888888",
        "classical": "#4c72b0",
        "post-quantum": "#2a9d55",
        "hrr": "#e07b39",
        "qh3": "#8c5fb3",
    }
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(12, 6.5), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    y = list(range(len(labels)))
    total = [hs[k]["total_ms"]["median"] for k in labels]
    # split each total median in the proportion of the client's and server's medians
    share = [
        hs[k]["client_ms"]["median"] / (hs[k]["client_ms"]["median"] + hs[k]["server_ms"]["median"])
        for k in labels
    ]
    client = [t * f for t, f in zip(total, share, strict=True)]
    server = [t - c for t, c in zip(total, client, strict=True)]
    p90 = [hs[k]["total_ms"]["p90"] for k in labels]
    ax1.barh(
        y, client, color=[colors[hs[k]["kind"]] for k in labels], alpha=0.95, label="client share"
    )
    ax1.barh(
        y,
        server,
        left=client,
        color=[colors[hs[k]["kind"]] for k in labels],
        alpha=0.5,
        label="server share",
    )
    median_to_p90(ax1, total, y, p90, label="median to p90 (total)")
    base = hs[BASELINE]["total_ms"]["median"]
    ax1.axvline(base, color="#4c72b0", ls="--", lw=1)
    for yi, k in zip(y, labels, strict=True):
        ax1.text(
            max(p90[yi], total[yi]) + 0.1,
            yi,
            f"{hs[k]['ratio_vs_x25519']:.2f}x",
            va="center",
            fontsize=8,
        )
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xlabel("CPU per full handshake, ms: median (client dark, server light), bar to p90")
    ax1.set_title("Handshake CPU (ratio vs x25519 on aioquic)")
    ax1.legend(fontsize=8, loc="lower right")
    math = result["group_math_ms"]
    mvals = [math[k]["median"] if k in math else 0 for k in labels]
    ax2.barh(y, mvals, color=[colors[hs[k]["kind"]] for k in labels])
    for yi, k in zip(y, labels, strict=True):
        if k in math:
            ax2.text(mvals[yi], yi, f" {mvals[yi]:.3f}", va="center", fontsize=8)
    ax2.set_xlabel("group math: generate + encapsulate + decapsulate, ms")
    ax2.set_title("Bare key-exchange math (our Group objects)")
    save_figure(plt, fig, out_dir, NAME, machine_caption(result["machine"]))
