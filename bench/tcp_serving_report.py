"""The TCP serving benchmark's console tables and figure, read from its result alone.

Kept apart from :mod:`.tcp_serving` so that ``python -m bench --replot`` and the docs' tables
come from the JSON without running anything; every label is taken from the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .plots import pyplot, save_figure, tls_caption
from .report import request_cells, table

GOAL = 0.95
HEADLINE = "PQ / stock (end to end)"
SERVER_ONLY_CURL = "server only: hypercorn-pq / stock, curl"
RATIO_BARS = (
    ("hypercorn-pq --pq / stock", "#2a9d55", (HEADLINE, SERVER_ONLY_CURL)),
    ("binding: pq off / stock", "#888888", ("binding:",)),
    ("TLS layer: --pq / pq off", "#4c72b0", ("TLS layer:",)),
)
"""The ratio panel's bars per mode: label, colour, and which pairs (by name or name prefix)
feed it; the end-to-end pair for httpx modes, the curl pairs for curl modes."""


def _ratio_cells(r: dict[str, Any], rate: str, unit: str) -> list[Any]:
    rates, cpu = r.get(f"{rate}_ratio"), r.get(f"server_cpu_per_{unit}_ratio")
    return [
        f"**{rates['median']:.2f}** ({rates['min']:.2f}-{rates['max']:.2f})" if rates else "",
        f"{cpu['median']:.2f} ({cpu['min']:.2f}-{cpu['max']:.2f})" if cpu else "",
        f"{r['pairs']} ({r['clean_pairs']} clean)",
    ]


def ratio_rows(result: dict[str, Any]) -> list[list[Any]]:
    """One row per pair of series and mode: the medians (ranges) of the paired ratios."""
    rows = []
    for what, per_mode in result["paired_ratios"].items():
        for mode, r in per_mode.items():
            if "requests_per_s_ratio" in r:
                rows.append([what, mode, *_ratio_cells(r, "requests_per_s", "request")])
            else:
                rows.append([what, mode, *_ratio_cells(r, "megabytes_per_s", "mb")])
    return rows


def show(result: dict[str, Any]) -> None:
    print(f"  basis: {result['basis']}")
    requests, transfers = [], []
    for label, modes in result["results"].items():
        for mode, r in modes.items():
            other = r["other_processes_cpu_share"]
            if "requests_per_s" in r:
                requests.append([label, mode, *request_cells(r), other])
            elif r.get("slices"):
                transfers.append(
                    [
                        label,
                        mode,
                        r["megabytes_per_s"],
                        "/".join(f"{v:.0f}" for v in r["megabytes_per_s_each_slice"]),
                        round(1000 * r["server_cpu_s_per_mb"], 2),
                        round(1000 * r["client_cpu_s_per_mb"], 2),
                        other,
                    ]
                )
    print(
        table(
            ["series", "mode", "req/s", "each slice", "p50 ms", "p90 ms", "p99 ms"]
            + ["server CPU ms/req", "client CPU ms/req", "requests", "errors", "other load"],
            requests,
        )
    )
    print()
    print(
        table(
            ["series", "mode", "MB/s", "each slice", "server CPU ms/MB", "client CPU ms/MB"]
            + ["other load"],
            transfers,
        )
    )
    print()
    print(
        table(
            ["pair", "mode", "rate ratio, median (range)", "server CPU/unit ratio", "pairs"],
            ratio_rows(result),
        )
    )
    short = []
    for mode, r in result["paired_ratios"][HEADLINE].items():
        rates = r.get("requests_per_s_ratio") or r.get("megabytes_per_s_ratio")
        if rates:
            short.append(
                f"{mode} x{rates['median']:.2f}{'' if rates['median'] >= GOAL else ' (<)'}"
            )
    print(f"  ratios PQ/stock, paired medians (goal >= {GOAL}): " + "; ".join(short))


def _short(mode: str) -> str:
    """A tick label: ``HTTP/2, new connection per request`` -> ``HTTP/2\nnew conn.``."""
    for long, short in (
        ("new connection per request", "new conn."),
        ("reused connections", "reused"),
        (" (", "\n"),
        (")", ""),
        (", ", "\n"),
    ):
        mode = mode.replace(long, short)
    return mode


SERVER_COLORS = {
    "hypercorn-pq --pq": ("#2a9d55", "#4c72b0", "#8fd6a8"),
    "stock hypercorn": ("#666666", "#888888", "#c2c2c2"),
    "hypercorn-pq, pq off": ("#c45a1a", "#e07b39", "#f2b38a"),
}
"""Per server: the colour with the post-quantum client, with Python's ssl, with curl."""


def _color(series: str) -> str:
    server, _, client = series.partition(" <- ")
    shades = SERVER_COLORS.get(server, ("#8c5fb3",) * 3)
    return shades[0] if "PQ" in client else shades[2] if "curl" in client else shades[1]


def _ratio_panel(ax: Any, result: dict[str, Any]) -> None:
    """Per mode, the paired medians (and their range) of the end-to-end ratio, and of its two
    parts: hypercorn-pq's binding on Python's ssl, and the post-quantum TLS layer."""
    pairs = result["paired_ratios"]
    modes = list(dict.fromkeys(sl["mode"] for sl in result["slices"]))
    ticks, y, width = [], 0.0, 0.8 / len(RATIO_BARS)
    for mode in modes:
        curl = mode.endswith("(curl)")
        drawn = False
        for i, (label, color, feeds) in enumerate(RATIO_BARS):
            for what, per_mode in pairs.items():
                r = per_mode.get(mode, {})
                rates = r.get("requests_per_s_ratio") or r.get("megabytes_per_s_ratio")
                wanted = any(what == f or what.startswith(f) for f in feeds)
                if not (rates and wanted and ("curl" in what) == curl):
                    continue
                yi = y + (i - 1) * width
                ax.barh(yi, rates["median"], width, color=color, label=label)
                ax.plot([rates["min"], rates["max"]], [yi, yi], color="black", lw=0.8)
                ax.text(rates["median"], yi, f" {rates['median']:.2f}", va="center", fontsize=6)
                drawn = True
        if drawn:
            ticks.append((y, _short(mode).replace("\n", " ")))
            y += 1
    ax.axvline(1.0, color="#444444", lw=1)
    ax.axvline(GOAL, color="#d62728", ls="--", lw=1, label=f"goal {GOAL}")
    ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks], fontsize=7)
    ax.invert_yaxis()
    tops = [
        (r.get("requests_per_s_ratio") or r.get("megabytes_per_s_ratio") or {}).get("median", 0)
        for per_mode in pairs.values()
        for r in per_mode.values()
    ]
    ax.set_xlim(0, max([1.5, *tops]) + 0.25)
    ax.set_xlabel("ratio, median of back-to-back pairs (line: range)")
    ax.set_title("hypercorn-pq / stock, and its two parts", pad=30)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(
        unique.values(),
        unique.keys(),
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=2,
        frameon=False,
    )


def plot(result: dict[str, Any], out_dir: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    res = result["results"]
    fig, axes = plt.subplots(1, 3, figsize=(18, 6.5), gridspec_kw={"width_ratios": [1, 1.4, 1]})
    colors = {label: _color(label) for label in res}
    run_order = list(dict.fromkeys(sl["mode"] for sl in result["slices"]))
    for ax, key, ylabel in (
        (axes[0], "requests_per_s", "requests/s"),
        (axes[1], "megabytes_per_s", "MB/s"),
    ):
        modes = [m for m in run_order if any(key in res[s].get(m, {}) for s in res)]
        for j, mode in enumerate(modes):
            here = [s for s in res if key in res[s].get(mode, {})]
            width = 0.8 / max(len(here), 1)
            for i, series in enumerate(here):
                x = j + (i - (len(here) - 1) / 2) * width
                value = res[series][mode][key]
                ax.bar(x, value, width, color=colors[series], label=series)
                ax.text(x, value, f"{value:.0f}", ha="center", va="bottom", fontsize=6)
                each = res[series][mode][key + "_each_slice"]
                ax.scatter([x] * len(each), each, color="black", s=5, zorder=3)
        ax.set_xticks(range(len(modes)), [_short(m) for m in modes], fontsize=7)
        ax.set_ylabel(ylabel)
        peak = max(v for s in res.values() for m in modes if key in s.get(m, {})
                   for v in [s[m][key], *s[m][key + "_each_slice"]])  # fmt: skip
        ax.set_ylim(0, peak * 1.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left")
    axes[0].set_title("Requests/s (client and server share the 2 cores)")
    axes[1].set_title("Transfer MB/s (one large body per slice)")
    _ratio_panel(axes[2], result)
    save_figure(plt, fig, out_dir, "tcp_serving", tls_caption(result))
