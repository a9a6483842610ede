"""What a benchmark prints on the console: a banner per benchmark and markdown tables.

The tables are GitHub markdown so that a run's output can be pasted into docs/benchmarks.md
as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any


def begin(title: str) -> None:
    """Print a benchmark's banner and keep the plugin's log off the console while it runs.

    Policy ``prefer`` logs a warning per classical handshake; a benchmark makes thousands.
    """
    print(f"\n=== {title} ===", flush=True)
    logging.getLogger("pq_quic_plugin").setLevel(logging.ERROR)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (printed to the console and pasted into docs/benchmarks.md)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def request_cells(r: dict[str, Any]) -> list[Any]:
    """A request series' summary as table cells, as the serving benchmarks print it: req/s
    (overall, then each slice), latency p50/p90/p99 ms, server and client CPU ms per request,
    requests served and errors."""
    lat = r["latency_ms"]
    return [
        r["requests_per_s"],
        "/".join(f"{v:.0f}" for v in r["requests_per_s_each_slice"]),
        lat["median"],
        lat["p90"],
        lat["p99"],
        r["server_cpu_ms_per_request"],
        r["client_cpu_ms_per_request"],
        r["requests_ok"],
        r["errors"],
    ]
