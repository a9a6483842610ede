"""The authentication benchmark still runs (``python -m bench --quick --only handshake_auth``),
and what it reports is what it measured: the scheme each variant negotiated, and the QUIC
amplification limit met by ML-DSA certificates only. Numbers are not checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_util import run_quick

pytestmark = pytest.mark.slow  # a subprocess running real handshakes


def test_handshake_auth_benchmark_quick(tmp_path: Path) -> None:
    run_quick("handshake_auth", tmp_path, timeout=120)
    result = json.loads((tmp_path / "handshake_auth.json").read_text())
    for transport in ("quic", "tcp"):
        rows = result[transport]
        assert rows["ecdsa-p256"]["scheme"] == "ECDSA-P256-SHA256"
        for sig, name in (("ml-dsa-44", "ML-DSA-44"), ("ml-dsa-65", "ML-DSA-65")):
            assert rows[sig]["scheme"] == name and rows[sig]["post_quantum_auth"] is True
            assert rows[sig]["server_bytes"] > rows["ecdsa-p256"]["server_bytes"]
    quic = result["quic"]
    assert quic["ecdsa-p256"]["round_trips"] == 1 and not quic["ecdsa-p256"]["limited"]
    assert quic["ml-dsa-87"]["round_trips"] == 2 and quic["ml-dsa-87"]["limited"]
