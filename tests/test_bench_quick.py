"""The benchmarks still run: ``python -m bench --quick`` as CI would, numbers not checked.

The tunnel benchmark (about 25 s quick on 2 cores): it drives the most moving parts (origin,
edge, connectors, and sshd/ssh when OpenSSH is installed), so it is the one that breaks when
those change. And the two TCP benchmarks (about 10 s): they drive the post-quantum TLS layer
through memory BIOs, asyncio sockets, httpx and hypercorn-pq's TCP listener, the parts a change
to ``tls_binding`` or the hypercorn binding breaks. Quick mode writes to a temporary directory,
never docs/bench.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_util import run_quick

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # the tunnel benchmark runs a whole chain


@pytest.mark.timeout(240)
def test_tunnel_benchmark_quick(tmp_path: Path) -> None:
    done = run_quick("tunnel", tmp_path, timeout=220)
    assert "ratios:" in done.stdout
    assert "| pq-tunnel / direct HTTP/3 |" in done.stdout
    assert "| pq-tunnel http2 / direct TCP |" in done.stdout
    assert (tmp_path / "tunnel.json").exists()


@pytest.mark.timeout(240)
def test_tcp_benchmarks_quick(tmp_path: Path) -> None:
    """The TCP handshake and serving benchmarks (about 10 s quick): the post-quantum TLS layer
    in memory and over sockets, and hypercorn-pq's TCP listener against stock hypercorn."""
    done = run_quick("tcp_handshake,tcp_serving", tmp_path, timeout=220)
    assert "ratios in memory: X25519MLKEM768 / x25519" in done.stdout
    assert "ratios PQ/stock, paired medians" in done.stdout
    assert (tmp_path / "tcp_handshake.json").exists()
    assert (tmp_path / "tcp_serving.json").exists()
