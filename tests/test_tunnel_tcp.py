"""The tunnel chain with TCP everywhere it can be: post-quantum on every hop.

A visitor reaches the edge over TLS on TCP (HTTP/1.1, HTTP/2, a WebSocket; headless Chromium
with QUIC switched off), the edge hands the request to the connector over the tunnel's QUIC
connection, and the connector reaches the origin (``hypercorn-pq --pq``) as an ``https://``
service, which now means TLS over TCP with HTTP/2 by ALPN. The origin's own scope must then list
every hop as post-quantum with the group each handshake actually agreed on: visitor-edge (tcp),
edge-connector (quic), connector-origin (tcp, HTTP/2, or HTTP/1.1 for the WebSocket).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers.chromium import dump_dom
from tunnel_chain import TUNNEL_HOST, running_chain
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from pq_quic_plugin import negotiated_group, ssl_context

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

APPS = Path(__file__).resolve().parent / "apps"
PQ = "X25519MLKEM768"
HOPS = ["visitor-edge", "edge-connector", "connector-origin"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with running_chain(
        tmp_path_factory.mktemp("tcp-chain"), origin_app="hops_app:app", origin_cwd=APPS
    ) as c:
        yield c


def _client_context(chain: Any, alpn: list[str]) -> ssl.SSLContext:
    """The visitor's TLS: post-quantum groups only, so a classical edge would fail here."""
    return ssl_context("require", server_side=False, cafile=chain.pki.ca_cert, alpn=alpn)


def _hops(facts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hops = {h["hop"]: h for h in facts["hops"]}
    assert list(hops) == HOPS, facts["hops"]
    return hops


def _assert_every_hop_post_quantum(
    facts: dict[str, Any], visitor_http: str, origin_http: str
) -> None:
    hops = _hops(facts)
    assert all(h["group"] == PQ and h["post_quantum"] is True for h in hops.values()), hops
    assert hops["visitor-edge"]["transport"] == "tcp"
    assert hops["visitor-edge"]["http_version"] == visitor_http
    assert hops["edge-connector"]["transport"] == "quic"
    origin = hops["connector-origin"]
    assert (origin["transport"], origin["http_version"], origin.get("tls")) == (
        "tcp",
        origin_http,
        True,
    )
    # The origin's own connection (from the connector) is the connector-origin hop seen from
    # the other side: TCP, and the same group.
    assert (facts["transport"], facts["group"], facts["post_quantum"]) == ("tcp", PQ, True)
    assert facts["http_version"] == origin_http
    assert facts["all_hops_post_quantum"] is True


@pytest.mark.parametrize("http2", [True, False], ids=["h2", "http1.1"])
def test_httpx_over_tcp_sees_every_hop_post_quantum(chain: Any, http2: bool) -> None:
    async def go() -> tuple[str, str | None, dict[str, Any]]:
        alpn = ["h2", "http/1.1"] if http2 else ["http/1.1"]
        async with httpx.AsyncClient(
            verify=_client_context(chain, alpn), http2=http2, timeout=30
        ) as client:
            response = await client.get(f"{chain.url}/api/connection")
            response.raise_for_status()
            return response.http_version, response.headers.get("pq-key-exchange"), response.json()

    version, label, facts = asyncio.run(go())
    assert version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert label is not None and label.startswith(PQ) and "all-hops=post-quantum" in label
    _assert_every_hop_post_quantum(facts, "2" if http2 else "1.1", "2")


async def _websocket_facts(chain: Any) -> tuple[Any, dict[str, Any], str]:
    """Open ``/ws-facts`` through the edge over post-quantum TLS on TCP: the group of the
    visitor's own connection, the origin's facts (its first message) and one echo."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1",
        chain.public_port,
        ssl=_client_context(chain, ["http/1.1"]),
        server_hostname=TUNNEL_HOST,
    )
    ws = WSConnection(ConnectionType.CLIENT)
    messages: list[str] = []
    try:
        writer.write(ws.send(Request(host=TUNNEL_HOST, target="/ws-facts")))
        accepted = False
        while len(messages) < 2:
            data = await asyncio.wait_for(reader.read(65536), 30)
            assert data, "the edge closed the WebSocket"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    accepted = True
                elif isinstance(event, TextMessage):
                    messages.append(event.data)
                    if len(messages) == 1:
                        writer.write(ws.send(TextMessage("hello through every hop")))
                elif isinstance(event, CloseConnection):
                    raise AssertionError(f"closed: {event.code} {event.reason}")
        assert accepted
        writer.write(ws.send(CloseConnection(code=1000)))
        await writer.drain()
        return negotiated_group(writer), json.loads(messages[0]), messages[1]
    finally:
        writer.close()


def test_websocket_over_tcp_crosses_only_post_quantum_hops(chain: Any) -> None:
    group, facts, echo = asyncio.run(_websocket_facts(chain))
    assert group is not None and group.name == PQ  # the visitor's own handshake with the edge
    assert echo == "hello through every hop"
    # WebSockets reach the origin over HTTP/1.1 (wss), post-quantum like everything else.
    _assert_every_hop_post_quantum(facts, "1.1", "1.1")


@pytest.mark.browser
def test_chromium_over_tcp_sees_every_hop_post_quantum(chain: Any) -> None:
    """Debian's Chromium, QUIC off: BoringSSL's own X25519MLKEM768 to the edge over TCP."""
    flags = [f"--host-resolver-rules=MAP {TUNNEL_HOST} 127.0.0.1"]
    spki = chain.pki.spki_sha256_b64
    raw = dump_dom(f"{chain.url}/api/connection", spki, force_quic=False, extra_flags=flags)
    facts = json.loads(raw[raw.index("{") : raw.rindex("}") + 1])
    _assert_every_hop_post_quantum(facts, "2", "2")
    page = dump_dom(f"{chain.url}/", spki, force_quic=False, extra_flags=flags)
    assert "post-quantum on every hop" in page
    assert page.count(PQ) >= 4  # three hops and the origin's own connection
