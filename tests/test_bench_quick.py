"""The benchmarks still run: ``python -m bench --quick`` as CI would, numbers not checked.

Only the tunnel benchmark (about 25 s quick on 2 cores): it drives the most moving parts
(origin, edge, connectors, and sshd/ssh when OpenSSH is installed), so it is the one that
breaks when those change. Its quick mode writes to a temporary directory, never docs/bench.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the tunnel benchmark runs a whole chain

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_tunnel_benchmark_quick(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "tunnel", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ratios:" in done.stdout
    assert "| pq-tunnel / direct HTTP/3 |" in done.stdout
    assert (tmp_path / "tunnel.json").exists()
