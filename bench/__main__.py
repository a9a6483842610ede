"""``python -m bench [--quick] [--only NAME[,NAME]] [--out DIR]``: run the benchmarks."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from . import BENCHMARKS
from .results import output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="pq-quic-plugin benchmarks. A full run writes docs/bench/*.json and *.png.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny iteration counts (a smoke check); results go to a temporary directory, "
        "never to docs/bench",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="NAME",
        help=f"run only these benchmarks (repeat or comma-separate): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the PNGs from the JSON results already in the output "
        "directory (default docs/bench); runs nothing",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write results here instead (default: docs/bench, or a temp dir with --quick)",
    )
    args = parser.parse_args(argv)

    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
            )
    if args.replot:
        import json

        out = args.out or output_dir(False)
        for name in names:
            path = out / f"{name}.json"
            if path.exists():
                importlib.import_module(f"bench.{name}").plot(json.loads(path.read_text()), out)
            else:
                print(f"  no {path}: run the benchmark first")
        return 0
    out = output_dir(args.quick, args.out)
    print(
        f"pq-quic-plugin benchmarks: {', '.join(names)}"
        f"{' (quick)' if args.quick else ''}; output: {out}",
        flush=True,
    )
    started = time.monotonic()
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        t0 = time.monotonic()
        try:
            module.run(args.quick, out)
        except Exception as exc:  # noqa: BLE001 - report, run the others, fail at the end
            import traceback

            traceback.print_exc()
            failed.append(f"{name}: {exc!r}")
        print(f"  [{name}: {time.monotonic() - t0:.1f} s]", flush=True)
    print(f"\nall done in {time.monotonic() - started:.1f} s; results in {out}")
    if failed:
        print("FAILED:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
