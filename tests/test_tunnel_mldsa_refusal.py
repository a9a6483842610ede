"""``post-quantum-auth: true`` against an edge that holds only an ECDSA certificate (issue 17):
the connector refuses it in the handshake, prints the post-quantum authentication banner with
the real reason, sends the report, registers nothing, and does not take the refusal for a
network failure (``protocol: auto`` does not switch transport over it). The default (ML-DSA
offered, a classical certificate accepted) connects to the same edge and the hop list says the
tunnel link was authenticated classically. Real edge and connector processes on loopback, on
both tunnel transports.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from servers import stop
from tunnel_chain import Chain, running_chain, start

from pq_quic_plugin.http3 import fetch

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REASON = (
    "edge presented a classical certificate (ECDSA-P256-SHA256); post-quantum-auth requires ML-DSA"
)


def _run_connector(chain: Chain, config: Path) -> Any:
    proc = start(
        [sys.executable, "-m", "pq_quic_plugin.tunnel", "run", "--config", str(config)],
        chain.dir / f"{config.stem}.log",
        cwd=chain.dir,
    )
    chain.extra.append(proc)
    return proc


def _ready_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.parametrize("protocol", ["quic", "http2", "auto"])
def test_post_quantum_auth_refuses_a_classical_edge(tmp_path: Path, protocol: str) -> None:
    with running_chain(tmp_path, connector=False, protocol=protocol) as chain:
        strict_yml = chain.connector_config(
            "strict.yml",
            ha_connections=1,
            post_quantum_auth=True,
            pq_report_url=f"https://127.0.0.1:{chain.public_port}/pq-report",
            max_backoff="1s",
        )
        strict = _run_connector(chain, strict_yml)
        strict.wait_for_log("POST-QUANTUM AUTHENTICATION OF THE EDGE FAILED", 30)
        strict.wait_for_log("post-quantum failure report sent", 30)
        metrics = json.loads(strict_yml.read_text())["metrics"].rpartition(":")[2]
        assert _ready_status(int(metrics)) == 503  # no connection at all
        # Later attempts are refused the same way, on the same transport, and say so in one
        # line each; the banner and the report are not repeated (it will not go away alone).
        deadline = time.monotonic() + 20
        while strict.log().count(f"post-quantum failure: {REASON}; reconnecting in") < 3:
            assert time.monotonic() < deadline, strict.log()
            time.sleep(0.2)
        log = strict.log()
        assert log.count("POST-QUANTUM AUTHENTICATION OF THE EDGE FAILED") == 1
        assert log.count("post-quantum failure report sent") == 1
        assert f"error: {REASON}" in log
        assert "registered connIndex" not in log
        assert "Switching to fallback protocol" not in log
        assert f"Initial protocol {'http2' if protocol == 'http2' else 'quic'}" in log
        stop(strict.proc)
        assert "registered connIndex=0" not in chain.edge.log()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{chain.edge_metrics}/pq-report", timeout=10
        ) as resp:
            reports = json.loads(resp.read())
        assert reports and reports[0]["failed"] == "authentication", reports
        assert reports[0]["error"] == REASON

        # The default offers ML-DSA and accepts the ECDSA certificate: it connects, and the
        # hop list says the tunnel link was post-quantum in key exchange, classical in auth.
        relaxed_yml = chain.connector_config("relaxed.yml", ha_connections=1)
        relaxed = _run_connector(chain, relaxed_yml)
        Chain.wait_connector(relaxed, relaxed_yml)
        assert "auth=ECDSA-P256-SHA256 (classical)" in relaxed.log()
        resp = asyncio.run(
            fetch(f"{chain.url}/api/connection", "require", cafile=str(chain.cafile), timeout=30)
        )
        assert resp.status == 200
        hops = {h["hop"]: h for h in json.loads(resp.body)["hops"]}
        for hop in hops.values():
            assert hop["post_quantum"] is True, hop
            assert hop["signature_scheme"] == "ECDSA-P256-SHA256", hop
            assert hop["post_quantum_auth"] is False, hop
        stop(relaxed.proc)
