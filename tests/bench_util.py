"""Running a benchmark from a test: ``python -m bench --quick`` as CI would, into a temporary
directory (quick mode never writes docs/bench), failing with the output's tail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_quick(only: str, out: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m bench --quick --only ONLY --out OUT`` from the repository root; the test
    fails with the end of its output unless it exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", only, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
