"""Ratios of back-to-back slices: the headline comparison of the serving benchmarks.

The serving benchmarks run their variants in short slices, back to back, repeated with the order
rotated. Adjacent slices see nearly the same background load, so the ratio of a pair is far less
sensitive to a competing workload than a ratio of totals; the median over pairs is the number to
quote, and pairs where another workload took more than :data:`CLEAN_OTHER_LOAD` of the cores
are summarised apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .stats import summarize

CLEAN_OTHER_LOAD = 0.15
"""A slice counts as clean when other processes used at most this share of all cores."""

Slice = dict[str, Any]


def clean_or_all(
    slices: list[Slice],
    modes_of: dict[str, Iterable[str]],
    summarise: Callable[[list[Slice]], dict[str, Any]],
    reps: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], str]:
    """``(results, every, basis)``: ``summarise`` of each cell (a series label of
    ``modes_of`` and one of its modes) over its clean slices when every cell has at least two
    of them (or ``reps`` if fewer), else over all slices; ``basis`` says which, and is printed
    as a warning when a competing workload forced the fallback."""

    def cells(keep: Callable[[Slice], bool]) -> dict[str, dict[str, Any]]:
        return {
            label: {
                mode: summarise(
                    [s for s in slices if s["server"] == label and s["mode"] == mode and keep(s)]
                )
                for mode in modes
            }
            for label, modes in modes_of.items()
        }

    every = cells(lambda s: True)
    clean = cells(lambda s: s["other_share"] <= CLEAN_OTHER_LOAD)
    enough = all(c["slices"] >= min(2, reps) for per in clean.values() for c in per.values())
    basis = (
        f"clean slices only (other load <= {CLEAN_OTHER_LOAD:.0%} of the cores)"
        if enough
        else "all slices: too few clean ones, another workload competed"
    )
    if not enough:
        print(f"  WARNING: {basis}", flush=True)
    return (clean if enough else every), every, basis


def slice_records(slices: list[Slice]) -> list[dict[str, Any]]:
    """The slices as a results file keeps them: floats rounded, a request slice's latencies
    replaced by their count (the summaries hold the percentiles; the file stays small)."""
    return [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items() if k != "latencies"}
        | ({"requests_ok": len(s["latencies"])} if "latencies" in s else {})
        for s in slices
    ]


def requests_ok(s: Slice) -> float:
    """A request slice's unit count: its successful requests."""
    return float(len(s["latencies"]))


def paired_ratios(
    slices: list[Slice],
    a_label: str,
    b_label: str,
    modes: Iterable[str],
    units: Callable[[Slice], float] = requests_ok,
    rate: str = "requests_per_s",
    unit: str = "request",
) -> dict[str, Any]:
    """a/b ratios of the slices of the same repetition and mode, per mode.

    A slice has ``server`` (its series label), ``mode``, ``repetition``, ``elapsed``,
    ``server_cpu`` and ``other_share``; ``units`` counts what it achieved (requests, MB), so
    the ratios are of ``units / elapsed`` (named ``rate``) and of server CPU per ``unit``.
    """
    out: dict[str, Any] = {}
    for mode in modes:
        rates, cpu, loads = [], [], []
        for rep in sorted({s["repetition"] for s in slices}):
            pair = {s["server"]: s for s in slices if s["mode"] == mode and s["repetition"] == rep}
            if a_label not in pair or b_label not in pair:
                continue
            a, b = pair[a_label], pair[b_label]
            na, nb = units(a), units(b)
            if not (na and nb and a["elapsed"] and b["elapsed"]):
                continue
            rates.append((na / a["elapsed"]) / (nb / b["elapsed"]))
            cpu.append(
                (a["server_cpu"] / na) / (b["server_cpu"] / nb) if b["server_cpu"] else float("nan")
            )
            loads.append(max(a["other_share"], b["other_share"]))
        clean = [i for i, x in enumerate(loads) if x <= CLEAN_OTHER_LOAD]
        out[mode] = {
            "ratio": f"{a_label} / {b_label}",
            "pairs": len(rates),
            f"{rate}_ratio": summarize(rates, 3) if rates else None,
            f"server_cpu_per_{unit}_ratio": summarize(cpu, 3) if cpu else None,
            "clean_pairs": len(clean),
            f"{rate}_ratio_clean_pairs": summarize([rates[i] for i in clean], 3) if clean else None,
            f"server_cpu_per_{unit}_ratio_clean_pairs": summarize([cpu[i] for i in clean], 3)
            if clean
            else None,
            "max_other_load_per_pair": [round(x, 3) for x in loads],
        }
    return out
