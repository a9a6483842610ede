"""``unix:``, ``unix+tls:``, ``hello_world`` and ``originRequest`` through the whole tunnel.

A real chain (edge and connector as processes, tools/loopback.py) whose connector runs with
``post-quantum: true`` and routes by path to: plain hypercorn on a Unix socket (``unix:``),
``hypercorn-pq --pq`` on a Unix socket (``unix+tls:``, post-quantum TLS over the socket), the
connector's own ``hello_world`` page, and a classical TLS origin on TCP (``hypercorn-pq --pq
--pq-groups x25519``), once under the connector's policy and once under a rule's
``postQuantum: prefer``.
"""

from __future__ import annotations

import socket
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tunnel_chain import Chain, running_chain

from tools.loopback import free_port, start
from tools.readiness import wait_listening, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

APPS = Path(__file__).resolve().parent / "apps"
PQ = "X25519MLKEM768"


def _unix_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        return s.connect_ex(str(path)) == 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chain, dict[str, Any]]]:
    base = tmp_path_factory.mktemp("orq-chain")
    with running_chain(base / "chain", connector=False) as chain:
        pki = chain.pki
        tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key), "--graceful-timeout", "1"]
        plain_sock, tls_sock = base / "plain.sock", base / "tls.sock"
        classical_port = free_port()
        hypercorn = [sys.executable, "-m", "hypercorn", "--graceful-timeout", "1"]
        pq = [sys.executable, "-m", "pq_quic_plugin.hypercorn_binding", "--pq", *tls]
        origins = [
            start(
                [*hypercorn, "-b", f"unix:{plain_sock}", "request_facts_app:app"],
                base / "plain.log",
                cwd=APPS,
            ),
            start(
                [
                    *pq,
                    "-b",
                    f"unix:{tls_sock}",
                    "--quic-bind",
                    f"127.0.0.1:{free_port()}",
                    "request_facts_app:app",
                ],
                base / "tls.log",
                cwd=APPS,
            ),
            start(
                [
                    *pq,
                    "--pq-groups",
                    "x25519",
                    "-b",
                    f"127.0.0.1:{classical_port}",
                    "request_facts_app:app",
                ],
                base / "classical.log",
                cwd=APPS,
            ),
        ]
        chain.extra.extend(origins)  # stopped with the chain
        wait_ready(origins[0], lambda: _unix_accepts(plain_sock), f"{plain_sock}")
        wait_ready(origins[1], lambda: _unix_accepts(tls_sock), f"{tls_sock}")
        wait_listening(origins[2], "127.0.0.1", classical_port)
        ca = str(pki.ca_cert)
        classical = f"https://127.0.0.1:{classical_port}"
        config = chain.connector_config(
            originRequest={"connectTimeout": "3s"},
            ingress=[
                {
                    "path": "^/unix/",
                    "service": f"unix:{plain_sock}",
                    "originRequest": {"httpHostHeader": "origin.internal"},
                },
                {
                    "path": "^/unixtls/",
                    "service": f"unix+tls:{tls_sock}",
                    "originRequest": {"caPool": ca},
                },
                {"path": "^/hello", "service": "hello_world"},
                {
                    "path": "^/classical/",
                    "service": classical,
                    "originRequest": {"caPool": ca, "originServerName": "localhost"},
                },
                {
                    "path": "^/classical-ok/",
                    "service": classical,
                    "originRequest": {
                        "caPool": ca,
                        "originServerName": "localhost",
                        "postQuantum": "prefer",
                    },
                },
                {"service": "http_status:404"},
            ],
        )
        chain.connector = chain.start_connector(config=config)
        with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=20) as client:
            yield chain, {"client": client}


def _get(chain: tuple[Chain, dict[str, Any]], path: str, **kw: Any) -> httpx.Response:
    c, extra = chain
    client: httpx.Client = extra["client"]
    return client.get(c.url + path, **kw)


def _origin_hop(hops: list[dict[str, Any]]) -> dict[str, Any]:
    (hop,) = [h for h in hops if h["hop"] == "connector-origin"]
    return hop


def test_unix_service_end_to_end(chain: tuple[Chain, dict[str, Any]]) -> None:
    response = _get(chain, "/unix/x?y=1")
    assert response.status_code == 200, response.text
    facts = response.json()
    assert facts["path"] == "/unix/x"
    assert facts["host"] == "origin.internal"  # httpHostHeader
    hop = _origin_hop(facts["hops"])
    assert hop["transport"] == "unix" and hop["group"] is None and not hop["post_quantum"]


def test_unix_tls_service_end_to_end_post_quantum(chain: tuple[Chain, dict[str, Any]]) -> None:
    response = _get(chain, "/unixtls/y")
    assert response.status_code == 200, response.text
    facts = response.json()
    assert facts["host"] == "localhost"  # the visitor's Host
    hop = _origin_hop(facts["hops"])
    assert hop == {
        "hop": "connector-origin",
        "transport": "unix",
        "http_version": "2",
        "tls": True,
        "group": PQ,
        "post_quantum": True,
        "signature_scheme": "ECDSA-P256-SHA256",  # the origin's devcert certificate
        "post_quantum_auth": False,
    }
    assert facts["http_version"] == "2"


def test_hello_world_shows_every_hop(chain: tuple[Chain, dict[str, Any]]) -> None:
    as_json = _get(chain, "/hello", headers={"accept": "application/json"})
    assert as_json.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    facts = as_json.json()
    names = [h["hop"] for h in facts["hops"]]
    assert names == ["visitor-edge", "edge-connector", "connector-origin"]
    visitor, tunnel, internal = facts["hops"]
    # httpx speaks Python's ssl (the system's OpenSSL 3.0: no ML-KEM), so this visitor's hop
    # is classical, and the page says that not every hop is post-quantum.
    assert visitor["transport"] == "tcp" and visitor["group"] == "x25519"
    assert tunnel["group"] == PQ and tunnel["post_quantum"]
    assert internal == {
        "hop": "connector-origin",
        "transport": "internal",
        "group": None,
        "post_quantum": False,
        "signature_scheme": None,
        "post_quantum_auth": False,
    }
    assert facts["post_quantum"] is False and facts["host"] == "localhost"
    page = _get(chain, "/hello")
    assert page.headers["content-type"].startswith("text/html")
    assert "<td>internal</td>" in page.text and f"<td>{PQ}</td>" in page.text
    assert "NOT every hop is post-quantum" in page.text


def test_post_quantum_require_refuses_a_classical_origin(
    chain: tuple[Chain, dict[str, Any]],
) -> None:
    c, _ = chain
    refused = _get(chain, "/classical/z")
    assert refused.status_code == 502
    assert "could not be reached" in refused.text
    assert c.connector is not None
    c.connector.wait_for_log("No classical connection was made", timeout=10)
    allowed = _get(chain, "/classical-ok/z")
    assert allowed.status_code == 200, allowed.text
    hop = _origin_hop(allowed.json()["hops"])
    assert hop["group"] == "x25519" and hop["post_quantum"] is False
    c.connector.wait_for_log("postQuantum: prefer is weaker than the connector's require")
