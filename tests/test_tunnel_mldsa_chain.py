"""The tunnel chain with ML-DSA-65 certificates on the edge and the origin (issue 17): a visitor
that offers ML-DSA, over QUIC and over TCP, reaches an origin whose scope lists every hop with
post-quantum key exchange *and* post-quantum authentication, on both tunnel transports.

Real processes on loopback: the origin is ``hypercorn-pq --pq`` with ``--pq-certfile``, the edge
holds ``pq-certfile`` on its public listener (the connector listener inherits it), and the
connector runs with ``post-quantum-auth: true``, so it would refuse an edge that signed with
ECDSA. Every fact is read back from the TLS objects of the hops, never from configuration.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from tunnel_chain import running_chain

from pq_quic_plugin import ssl_context
from pq_quic_plugin.http3 import fetch

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PQ = "X25519MLKEM768"
ML_DSA = "ML-DSA-65"
HOPS = ["visitor-edge", "edge-connector", "connector-origin"]
#: The connector's ``protocol`` -> the edge-connector hop's ``transport``.
TRANSPORTS = {"quic": "quic", "http2": "tcp"}


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_chain(
        tmp_path_factory.mktemp("mldsa-chain"),
        connector=False,
        protocol=request.param,
        ml_dsa_edge=True,
        ml_dsa_origin=True,
    ) as c:
        c.connector = c.start_connector(config=c.connector_config(post_quantum_auth=True))
        yield c


def _assert_every_hop_fully_post_quantum(facts: dict[str, Any], protocol: str) -> None:
    hops = {h["hop"]: h for h in facts["hops"]}
    assert list(hops) == HOPS, facts["hops"]
    for hop in hops.values():
        assert hop["group"] == PQ and hop["post_quantum"] is True, hop
        assert hop["signature_scheme"] == ML_DSA and hop["post_quantum_auth"] is True, hop
    assert hops["edge-connector"]["transport"] == TRANSPORTS[protocol]
    # The origin's own connection (from the connector) is the last hop seen from the other end.
    assert facts["signature_scheme"] == ML_DSA and facts["post_quantum_auth"] is True


def test_quic_visitor_sees_every_hop_authenticated_post_quantum(chain: Any) -> None:
    resp = asyncio.run(
        fetch(f"{chain.url}/api/connection", "require", cafile=str(chain.cafile), timeout=30)
    )
    assert resp.status == 200
    _assert_every_hop_fully_post_quantum(json.loads(resp.body), chain.protocol)


def test_tcp_visitor_sees_every_hop_authenticated_post_quantum(chain: Any) -> None:
    async def go() -> dict[str, Any]:
        tls = ssl_context(
            "require", server_side=False, cafile=chain.cafile, alpn=["h2"], auth="require"
        )
        async with httpx.AsyncClient(verify=tls, http2=True, timeout=30) as client:
            response = await client.get(f"{chain.url}/api/connection")
            response.raise_for_status()
            assert response.http_version == "HTTP/2"
            facts: dict[str, Any] = response.json()
            return facts

    facts = asyncio.run(go())
    assert {h["hop"]: h for h in facts["hops"]}["visitor-edge"]["transport"] == "tcp"
    _assert_every_hop_fully_post_quantum(facts, chain.protocol)


def test_connector_and_edge_log_the_authentication(chain: Any) -> None:
    """Both ends of the tunnel link say how the edge authenticated, each from its own side."""
    assert f"auth={ML_DSA} (post-quantum)" in chain.connector.log()
    assert "Settings: post-quantum:true post-quantum-auth:true" in chain.connector.log()
    assert f"auth={ML_DSA} (post-quantum)" in chain.edge.log()
