"""`make demo ARGS=--once` keeps working: it runs the real chain and prints every group."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_demo_once_prints_every_negotiated_group() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--once"], capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr + out.stdout
    text = out.stdout
    assert "pq-quic-plugin client (require)    HTTP/3   X25519MLKEM768   post-quantum" in text
    assert "niquests over qh3 (independent)    HTTP/3   X25519MLKEM768   post-quantum" in text
    assert "stock aioquic client (classical)   HTTP/3   x25519           NOT post-quantum" in text
    # Over TCP: our context through httpx is post-quantum, Python's own ssl is not.
    assert "httpx + pq ssl_context (require)   HTTP/2   X25519MLKEM768   post-quantum" in text
    assert "httpx + pq ssl_context (require)   HTTP/1.1 X25519MLKEM768   post-quantum" in text
    assert "urllib (Python's ssl, classical)   HTTP/1.1 x25519           NOT post-quantum" in text
    tunnel = text.split("2. Through the tunnel", 1)[1]
    assert "pq-quic-plugin client (require): every hop post-quantum" in tunnel
    assert "httpx + pq ssl_context over TCP (require, HTTP/2): every hop" in tunnel
    for hop in ("visitor-edge", "edge-connector", "connector-origin"):
        assert f"hop {hop}" in tunnel
    assert tunnel.count("X25519MLKEM768   post-quantum") >= 5
    assert "chromium --enable-quic --origin-to-force-quic-on=" in text
    assert "chromium --disable-quic --host-resolver-rules=" in text
