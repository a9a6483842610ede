"""hypercorn-pq with an ECDSA and an ML-DSA-65 certificate, on both listeners, reached by real
clients: ours over HTTP/3 and over TCP (both offer ML-DSA), and curl on the system OpenSSL 3.0,
which knows no ML-DSA. Each request's own scope says what its handshake authenticated with.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mldsa_tcp_util import Pkis, auth_args, both_pkis
from servers import free_port, hypercorn_pq, run_cli
from tcp_util import CURL

import pq_quic_plugin
from pq_quic_plugin.http3 import HandshakeError, client_configuration, open_session

pytestmark = pytest.mark.slow  # each test starts hypercorn-pq


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> Pkis:
    return both_pkis(tmp_path_factory.mktemp("mldsa-hypercorn"))


async def quic_api(pkis: Pkis, port: int, auth: str = "prefer") -> dict[str, Any]:
    config = client_configuration("prefer", cafile=str(pkis.cas), server_name="localhost")
    pq_quic_plugin.configure_auth(config, auth)
    async with open_session(f"https://localhost:{port}", config) as session:
        response = await session.request("GET", "/api/connection", timeout=15)
    assert response.status == 200
    return dict(json.loads(response.body))


async def tcp_api(pkis: Pkis, port: int) -> dict[str, Any]:
    import httpx

    context = pq_quic_plugin.ssl_context("prefer", server_side=False, cafile=pkis.cas)
    async with httpx.AsyncClient(verify=context, http2=True, timeout=15) as client:
        response = await client.get(f"https://localhost:{port}/api/connection")
        response.raise_for_status()
        return dict(response.json())


def curl_api(pkis: Pkis, port: int) -> Any:
    assert CURL is not None, "apt-get install curl"
    import subprocess

    return subprocess.run(
        [CURL, "-sS", "--cacert", str(pkis.cas), "--max-time", "20"]
        + [f"https://localhost:{port}/api/connection"],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_each_client_gets_the_certificate_it_can_verify(pkis: Pkis, tmp_path: Path) -> None:
    port = free_port()
    with hypercorn_pq(auth_args(pkis, port), tmp_path, port) as server:
        quic = asyncio.run(quic_api(pkis, port))
        quic_off = asyncio.run(quic_api(pkis, port, auth="off"))
        tcp = asyncio.run(tcp_api(pkis, port))
        old = curl_api(pkis, port)
        log = server.log()
    assert quic["transport"] == "quic" and quic["group"] == "X25519MLKEM768"
    assert (quic["signature_scheme"], quic["post_quantum_auth"]) == ("ML-DSA-65", True)
    assert quic["signature_scheme_codepoint"] == 0x0905 and quic["auth_verdict"] == "post-quantum"
    assert (quic_off["signature_scheme"], quic_off["post_quantum_auth"]) == (
        "ECDSA-P256-SHA256",
        False,
    )
    assert tcp["transport"] == "tcp" and tcp["protocol"] == "HTTP/2"
    assert (tcp["signature_scheme"], tcp["post_quantum_auth"]) == ("ML-DSA-65", True)
    assert old.returncode == 0, old.stderr  # served, with the ECDSA certificate
    classic = json.loads(old.stdout)
    assert (classic["signature_scheme"], classic["post_quantum_auth"]) == (
        "ECDSA-P256-SHA256",
        False,
    )
    assert classic["auth_verdict"] == "classical"
    assert "authentication prefer, extra certificate" in log
    assert "Traceback" not in log


def test_require_refuses_clients_without_ml_dsa_on_both_listeners(
    pkis: Pkis, tmp_path: Path
) -> None:
    """Set through the TOML keys this time; the command line has the same three options."""
    port = free_port()
    config = tmp_path / "hypercorn.toml"
    config.write_text(
        f'bind = ["127.0.0.1:{port}"]\ncertfile = "{pkis.ecdsa.cert}"\n'
        f'keyfile = "{pkis.ecdsa.key}"\npq = "prefer"\npq_auth = "require"\n'
        f'pq_certfile = "{pkis.ml_dsa.cert}"\npq_keyfile = "{pkis.ml_dsa.key}"\n'
    )
    with hypercorn_pq(["-c", str(config), "app:app"], tmp_path, port) as server:
        refused = curl_api(pkis, port)
        with pytest.raises(HandshakeError) as quic_refusal:
            asyncio.run(quic_api(pkis, port, auth="off"))
        served = asyncio.run(quic_api(pkis, port))
        tcp = asyncio.run(tcp_api(pkis, port))
        log = server.log()
    assert refused.returncode == 35, (refused.returncode, refused.stderr)
    assert "handshake failure" in refused.stderr  # curl's words for the alert it got
    assert "client offered no ML-DSA signature scheme" in log  # the TCP refusal, logged
    assert "server auth policy is 'require' (accepts: ML-DSA-65)" in log
    assert "client offered no ML-DSA signature scheme" in str(quic_refusal.value)  # QUIC reason
    assert served["post_quantum_auth"] is True and tcp["post_quantum_auth"] is True
    assert "Traceback" not in log


def test_mistakes_stop_hypercorn_pq_at_start(pkis: Pkis) -> None:
    ecdsa = ["--certfile", str(pkis.ecdsa.cert), "--keyfile", str(pkis.ecdsa.key)]
    out = run_cli(["--pq", "--pq-auth", "require", *ecdsa, "app:app"])
    assert out.returncode == 2 and "'require' needs an ML-DSA certificate" in out.stderr
    out = run_cli([*ecdsa, "--pq-certfile", str(pkis.ml_dsa.cert), "app:app"])
    assert out.returncode == 2 and "needs --pq" in out.stderr
    wrong_key = ["--pq-certfile", str(pkis.ml_dsa.cert), "--pq-keyfile", str(pkis.ecdsa.key)]
    out = run_cli(["--pq", *ecdsa, *wrong_key, "app:app"])
    assert out.returncode == 2 and "does not match" in out.stderr
    help_text = run_cli(["--help"]).stdout
    assert "--pq-auth" in help_text and "--pq-certfile" in help_text
