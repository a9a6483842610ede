"""Where a run's results go, and writing them there.

A full run rewrites the committed results in docs/bench/ (the figures docs/benchmarks.md
shows); ``--quick`` numbers are meaningless, so a quick run writes to a fresh temporary
directory and can never overwrite them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import ROOT

DOCS_BENCH = ROOT / "docs" / "bench"


def output_dir(quick: bool, explicit: Path | None = None) -> Path:
    """docs/bench for a full run; a fresh temporary directory for ``--quick`` (never docs/)."""
    if explicit is not None:
        explicit.mkdir(parents=True, exist_ok=True)
        return explicit
    if quick:
        return Path(tempfile.mkdtemp(prefix="pq-bench-quick-"))
    DOCS_BENCH.mkdir(parents=True, exist_ok=True)
    return DOCS_BENCH


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (shorter console lines)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def write_json(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"  wrote {display_path(path)}")
    return path


def publish(
    result: dict[str, Any],
    out_dir: Path,
    show: Callable[[dict[str, Any]], None],
    plot: Callable[[dict[str, Any], Path], None],
) -> dict[str, Any]:
    """Print a benchmark's ``result``, write it as ``out_dir/NAME.json``, then draw it.

    In this order so that a failing plot (matplotlib missing or broken) still leaves the
    numbers printed and saved; ``python -m bench --replot`` can draw them later.
    """
    show(result)
    write_json(out_dir, result["benchmark"], result)
    plot(result, out_dir)
    return result
