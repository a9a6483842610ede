"""The wire benchmark's console tables and figure, read from its result alone.

Kept apart from :mod:`.wire` so that ``python -m bench --replot`` draws from the JSON without
running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plots import machine_caption, median_to_p90, pyplot, save_figure
from .report import table


def show(result: dict[str, Any]) -> None:
    """Three tables: sizes per variant, the amplification budget per chain, TTFB."""
    print(
        table(
            [
                "variant",
                "negotiated",
                "ClientHello B",
                "ServerHello B",
                "client Initial dgrams (1st flight)",
                "client->server B",
                "server->client B",
            ],
            [
                [
                    r["variant"],
                    r["negotiated"],
                    r["client_hello_bytes"],
                    r["server_hello_bytes"],
                    r["client_initial_datagrams_first_flight"],
                    r["handshake_bytes_client_to_server"],
                    r["handshake_bytes_server_to_client"],
                ]
                for r in result["sizes"]
            ],
        )
    )
    print()
    print(
        table(
            [
                "chain",
                "variant",
                "Certificate B",
                "client B in",
                "3x limit",
                "server B out",
                "blocked",
                "RTTs to 1st byte",
            ],
            [
                [
                    r["chain"],
                    r["variant"],
                    r["certificate_message_bytes"],
                    r["client_bytes_before_server_flight"],
                    r["limit_3x"],
                    r["server_bytes_sent"],
                    "yes" if r["blocked_by_amplification_limit"] else "no",
                    r["round_trips_to_first_app_byte"],
                ]
                for r in result["amplification"]
            ],
        )
    )
    print()
    rtt = 2 * result["one_way_delay_ms"]
    print(
        table(
            [
                "variant",
                "median ms",
                "p90 ms",
                "x vs classical (same chain)",
                "extra ms",
                f"RTTs of {rtt:.0f} ms",
            ],
            [
                [
                    k,
                    v["ttfb_ms"]["median"],
                    v["ttfb_ms"]["p90"],
                    v["ratio_vs_classical_same_chain"],
                    v["extra_ms_vs_classical_same_chain"],
                    v["ttfb_in_rtts"],
                ]
                for k, v in result["ttfb"].items()
            ],
        )
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    """wire.png: ClientHello size, bytes each way, the 3x budget, TTFB under delay."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(2, 2, figsize=(16, 12))

    ax = axes[0][0]
    rows = result["sizes"]
    y = list(range(len(rows)))
    vals = [r["client_hello_bytes"] for r in rows]
    ax.barh(y, vals, color=["#888888"] + ["#2a9d55"] * (len(rows) - 1))
    for yi, r in zip(y, rows, strict=True):
        n = r["client_initial_datagrams_first_flight"]
        ax.text(
            vals[yi],
            yi,
            f" {vals[yi]} B, {n} Initial datagram{'s' if n > 1 else ''}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(vals) * 1.4)
    ax.set_xlabel("ClientHello bytes (and the Initial datagrams the first flight needs)")
    ax.set_title("ClientHello size")

    ax = axes[0][1]
    c2s = [r["handshake_bytes_client_to_server"] for r in rows]
    s2c = [r["handshake_bytes_server_to_client"] for r in rows]
    h = 0.4
    ax.barh([v - h / 2 for v in y], c2s, h, color="#4c72b0", label="client -> server")
    ax.barh([v + h / 2 for v in y], s2c, h, color="#dd8452", label="server -> client")
    ax.set_yticks(y, [r["variant"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("UDP payload bytes: handshake + one small echo")
    ax.set_title("Bytes on the wire per connection")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1][0]
    amp = result["amplification"]
    labels = [f"{r['variant']} | {r['chain']}" for r in amp]
    y = list(range(len(amp)))
    ax.barh(
        y,
        [r["server_bytes_sent"] for r in amp],
        color=["#c44e52" if r["blocked_by_amplification_limit"] else "#4c72b0" for r in amp],
        label="server bytes before the client's next flight (red: stopped by the limit)",
    )
    ax.scatter(
        [r["limit_3x"] for r in amp],
        y,
        marker="|",
        s=250,
        color="black",
        zorder=3,
        label="limit: 3 x bytes received from the client",
    )
    for yi, r in zip(y, amp, strict=True):
        ax.text(
            r["limit_3x"],
            yi,
            f"  {r['round_trips_to_first_app_byte']} RTT to 1st byte",
            va="center",
            fontsize=7,
        )
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(r["limit_3x"] for r in amp) * 1.3)
    ax.set_xlabel("bytes")
    ax.set_title("Anti-amplification limit (RFC 9000 8.1) before the client's 2nd flight")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1)

    ax = axes[1][1]
    tt = result["ttfb"]
    keys = list(tt)
    y = list(range(len(keys)))
    med = [tt[k]["ttfb_ms"]["median"] for k in keys]
    p90 = [tt[k]["ttfb_ms"]["p90"] for k in keys]
    ax.barh(
        y,
        med,
        color=[
            "#e07b39" if "HRR" in k else ("#2a9d55" if "MLKEM" in k else "#4c72b0") for k in keys
        ],
    )
    median_to_p90(ax, med, y, p90)
    rtt = 2 * result["one_way_delay_ms"]
    for k in range(1, int(max(p90) // rtt) + 2):
        ax.axvline(k * rtt, color="#bbbbbb", ls=":", lw=1)
    for yi in y:
        ax.text(p90[yi] + 2, yi, f"{med[yi]:.0f} ms", va="center", fontsize=8)
    ax.set_xlim(0, max(p90) * 1.15)
    ax.set_yticks(y, keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"ms, median (bar to p90); dotted: multiples of the {rtt:.0f} ms RTT")
    ax.set_title(
        f"Time to first byte (connect + 1 echo), +{result['one_way_delay_ms']:.0f} ms each way"
    )
    save_figure(plt, fig, out_dir, result["benchmark"], machine_caption(result["machine"]))
