"""The tunnel benchmark's console tables and figure, read from its result alone.

Kept apart from :mod:`.tunnel` so that ``python -m bench --replot`` draws from the JSON without
starting a chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plots import machine_caption, pyplot, save_figure
from .report import table
from .tunnel_routes import DIRECT_H3, DIRECT_TCP, SMALL, SSH, TUNNEL, TUNNEL_H2


def show(result: dict[str, Any]) -> None:
    """Per-path load and bulk, the ratios, then memory per connector connection."""
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
    print("\nCPU per process (ms per small request; ms per MB of bulk):")
    print(
        table(
            ["path", "process", "CPU ms/req", "CPU ms/MB"],
            [
                [label, name, c["cpu_ms_per_request"], c["cpu_ms_per_mb_bulk"]]
                for label, r in result["results"].items()
                for name, c in r.get("per_process", {}).items()
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
    """tunnel.png: requests/s, latency percentiles, bulk MB/s and memory, per path."""
    plt = pyplot()
    if plt is None:
        return
    from matplotlib import ticker

    res = result["results"]
    labels = list(res)
    colors = {
        DIRECT_H3: "#4c72b0",
        TUNNEL: "#2a9d55",
        TUNNEL_H2: "#8fbc8f",
        DIRECT_TCP: "#888888",
        SSH: "#dd8452",
    }
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
    save_figure(plt, fig, out_dir, result["benchmark"], caption)
