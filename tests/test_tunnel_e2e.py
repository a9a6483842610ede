"""pq-tunnel end to end: origin, edge and connector as three real processes on loopback, once
per transport between edge and connector (``protocol: quic`` and ``protocol: http2``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import urllib.request

import pytest
from peers.chromium import dump_dom
from tunnel_chain import TUNNEL_HOST, running_chain, tunnel_cli

from pq_quic_plugin.http3 import client_configuration, fetch, open_session

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

#: Body size each way (MB). PQ_BULK_MB=100 is the long form (about 3 minutes on 2 cores).
BULK_MB = int(os.environ.get("PQ_BULK_MB", "40"))
#: Allowed growth of each process's peak RSS. Measured: 3-14 MB whatever the body size, since
#: every hop holds about one flow-control window; a process holding the whole body would grow
#: by at least BULK_MB, so the limit must stay well below it to mean anything.
RSS_GROWTH_LIMIT_MB = 24


#: The connector's ``protocol`` -> the edge-connector hop's ``transport`` in the hop list.
TRANSPORTS = {"quic": "quic", "http2": "tcp"}


@pytest.fixture(scope="module", params=list(TRANSPORTS))
def chain(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    with running_chain(tmp_path_factory.mktemp("chain"), protocol=request.param) as c:
        yield c


def _get(chain, path: str = "/api/connection", policy: str = "require", **kw):  # type: ignore[no-untyped-def]
    return asyncio.run(
        fetch(chain.url + path, policy, cafile=str(chain.pki.ca_cert), timeout=30, **kw)
    )


def test_every_hop_is_post_quantum(chain) -> None:  # type: ignore[no-untyped-def]
    resp = _get(chain)
    assert resp.status == 200 and resp.group is not None
    facts = json.loads(resp.body)
    hops = {h["hop"]: h for h in facts["hops"]}
    assert set(hops) == {"visitor-edge", "edge-connector", "connector-origin"}
    assert all(h["group"] == "X25519MLKEM768" and h["post_quantum"] for h in hops.values())
    assert facts["group"] == "X25519MLKEM768"  # the origin's own view of the last hop
    assert facts["all_hops_post_quantum"] is True
    assert hops["edge-connector"]["transport"] == TRANSPORTS[chain.protocol]
    page = _get(chain, "/").body.decode()
    assert "post-quantum on every hop" in page


@pytest.mark.browser
def test_chromium_through_the_edge_sees_every_hop_post_quantum(chain) -> None:  # type: ignore[no-untyped-def]
    url = f"https://{TUNNEL_HOST}:{chain.public_port}/"
    dom = dump_dom(
        url,
        chain.pki.spki_sha256_b64,
        extra_flags=[f"--host-resolver-rules=MAP {TUNNEL_HOST} 127.0.0.1"],
    )
    assert "post-quantum on every hop" in dom
    assert dom.count("X25519MLKEM768") >= 3


def test_forwarded_headers_set_and_spoofed_hops_never_reach_the_origin(chain) -> None:  # type: ignore[no-untyped-def]
    spoof = [{"hop": "visitor-edge", "group": "X25519MLKEM768", "post_quantum": True}]
    resp = _get(
        chain,
        "/headers",
        headers=[
            (b"pq-tunnel-hops", json.dumps(spoof * 5).encode()),
            (b"x-forwarded-for", b"6.6.6.6"),
        ],
    )
    seen = json.loads(resp.body)
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == TUNNEL_HOST
    hops = json.loads(seen["pq-tunnel-hops"])  # the connector's, not the visitor's
    assert [h["hop"] for h in hops] == ["visitor-edge", "edge-connector", "connector-origin"]


@pytest.mark.timeout(1500)
def test_large_bodies_both_ways_intact(chain) -> None:  # type: ignore[no-untyped-def]
    """BULK_MB down and BULK_MB up through the tunnel, checksummed, with bounded memory.

    Down: the origin's deterministic /bytes stream, hashed as it arrives. Up: a streamed body
    the origin hashes as it reads (/sha256). Then an echo, both directions at once. Every
    process on the way must hold a bounded amount, whatever the body size: receive windows open
    only as each reader consumes (aioquic_binding.flow_control) and writers wait for their
    QUIC send buffers to drain.
    """
    assert BULK_MB >= 1.5 * RSS_GROWTH_LIMIT_MB, (
        f"PQ_BULK_MB={BULK_MB} is too small for the memory check to mean anything"
    )
    size = BULK_MB * 1024 * 1024
    chunk = bytes(range(256)) * 256  # what /bytes serves, repeated
    expected = hashlib.sha256()
    for _ in range(size // len(chunk)):
        expected.update(chunk)
    want = expected.hexdigest()
    origin_pid = json.loads(_get(chain, "/pid").body)["pid"]
    pids = {
        "edge": chain.edge.proc.pid,
        "connector": chain.connector.proc.pid,
        "origin": origin_pid,
    }
    before = {name: _rss_mb(pid) for name, pid in pids.items()}

    async def upload(total: int):  # type: ignore[no-untyped-def]
        for _ in range(total // len(chunk)):
            yield chunk

    async def scenario():  # type: ignore[no-untyped-def]
        config = client_configuration("require", cafile=str(chain.pki.ca_cert))
        async with open_session(chain.url, config) as session:
            status, _, body = await session.stream_request("GET", f"/bytes/{size}")
            down, count = hashlib.sha256(), 0
            async for piece in body:
                down.update(piece)
                count += len(piece)
            up_status, _, answer = await session.stream_request("POST", "/sha256", [], upload(size))
            up = json.loads(b"".join([piece async for piece in answer]))
            echo_size = min(size, 16 << 20)
            echo_status, _, echoed = await session.stream_request(
                "POST", "/echo", [], upload(echo_size)
            )
            echo = hashlib.sha256()
            async for piece in echoed:
                echo.update(piece)
            echo_want = hashlib.sha256(chunk * (echo_size // len(chunk))).hexdigest()
            return (
                (status, count, down.hexdigest()),
                (up_status, up["bytes"], up["sha256"]),
                (echo_status, echo.hexdigest() == echo_want),
            )

    got_down, got_up, got_echo = asyncio.run(scenario())
    assert got_down == (200, size, want)
    assert got_up == (200, size, want)
    assert got_echo == (200, True)
    for name, pid in pids.items():
        grown = _rss_mb(pid) - before[name]
        print(f"peak RSS of the {name} grew by {grown:.0f} MB for {size >> 20} MB each way")
        assert grown < RSS_GROWTH_LIMIT_MB, f"peak RSS of the {name} grew by {grown:.0f} MB"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):  # peak resident set size
                return int(line.split()[1]) / 1024
    return 0.0


def test_websocket_echo_through_the_tunnel(chain) -> None:  # type: ignore[no-untyped-def]
    import wsproto  # noqa: F401 - the edge's TCP side speaks WebSocket via hypercorn
    from websocket_client_util import websocket_exchange

    messages: list[str | bytes] = ["hello", b"\x00\x01binary", b"y" * 100_000]
    exchanged = websocket_exchange(
        "127.0.0.1", chain.public_port, TUNNEL_HOST, "/ws", chain.pki.ca_cert, messages
    )
    assert exchanged == (messages, None)


def test_an_oversized_websocket_message_is_closed_with_1009(chain) -> None:  # type: ignore[no-untyped-def]
    """A visitor's message larger than one tunnel frame (1 MiB) closes that WebSocket with
    1009, "message too big", as the connector does for an origin's; the edge used to fail in
    the middle of the relay. Text is counted in encoded bytes (600,000 two-byte characters)."""
    from websocket_client_util import websocket_exchange

    for message in ["\u00e9" * 600_000, b"x" * ((1 << 20) + 1)]:
        exchanged = websocket_exchange(
            "127.0.0.1", chain.public_port, TUNNEL_HOST, "/ws", chain.pki.ca_cert, [message]
        )
        assert exchanged == ([], 1009)
    assert "Traceback" not in chain.edge.log()


def test_200_concurrent_requests(chain) -> None:  # type: ignore[no-untyped-def]
    async def scenario():  # type: ignore[no-untyped-def]
        config = client_configuration("require", cafile=str(chain.pki.ca_cert))
        async with open_session(chain.url, config) as session:
            results = await asyncio.gather(
                *[session.request("GET", f"/bytes/{1000 + i}", timeout=60) for i in range(200)]
            )
        return [(r.status, len(r.body)) for r in results]

    results = asyncio.run(scenario())
    assert results == [(200, 1000 + i) for i in range(200)]


def test_unknown_host_404_and_edge_pages(chain) -> None:  # type: ignore[no-untyped-def]
    ctx = ssl.create_default_context(cafile=str(chain.pki.ca_cert))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(
            f"https://127.0.0.1:{chain.public_port}/nothing", context=ctx, timeout=10
        )
    assert info.value.code == 404
    assert b"No tunnel serves the host 127.0.0.1" in info.value.read()


def test_list_shows_tunnel_and_live_connections(chain) -> None:  # type: ignore[no-untyped-def]
    out = tunnel_cli("list", "--config", str(chain.dir / "edge.yaml"), "--json", cwd=chain.dir)
    assert out.returncode == 0, out.stderr
    tunnels = json.loads(out.stdout)
    assert tunnels[0]["name"] == "demo" and tunnels[0]["hostnames"] == [TUNNEL_HOST]
    conns = tunnels[0]["connections"]
    assert sorted(c["conn_index"] for c in conns) == [0, 1]
    assert {c["group"] for c in conns} == {"X25519MLKEM768"}
    assert {c["protocol"] for c in conns} == {chain.protocol}


def test_credentials_file_is_private(chain) -> None:  # type: ignore[no-untyped-def]
    assert oct(os.stat(chain.dir / "creds.json").st_mode & 0o777) == "0o600"


def test_logs_follow_the_reference_design_and_hold_no_secret(chain) -> None:  # type: ignore[no-untyped-def]
    log = chain.connector.log()
    for text in [
        "Settings: post-quantum:true",
        "Generated Connector ID:",
        f"Initial protocol {chain.protocol}",
        "Using post-quantum key agreement X25519MLKEM768 for connIndex=0",
        "registered connIndex=0 edge=127.0.0.1:",
        "registered connIndex=1",
        f"protocol={chain.protocol} group=X25519MLKEM768",
        "Starting metrics server on 127.0.0.1:",
    ]:
        assert text in log, text
    secret = json.loads((chain.dir / "creds.json").read_text())["TunnelSecret"]
    for proc in (chain.edge, chain.connector):
        assert secret not in proc.log()
    assert "Connection " in chain.edge.log() and "registered connIndex=0" in chain.edge.log()


def test_metrics_and_status_page_show_each_connections_protocol(chain) -> None:  # type: ignore[no-untyped-def]
    other = "quic" if chain.protocol == "http2" else "http2"
    for role, port in (("edge", chain.edge_metrics), ("connector", chain.connector_metrics)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert f'pq_tunnel_{role}_connections{{protocol="{chain.protocol}"}} 2.0' in text, role
        assert f'pq_tunnel_{role}_connections{{protocol="{other}"}} 0.0' in text, role
    status = f"http://127.0.0.1:{chain.edge_metrics}/status"
    with urllib.request.urlopen(status + ".json", timeout=10) as resp:
        conns = json.loads(resp.read())["tunnels"][0]["connections"]
    assert [c["protocol"] for c in conns] == [chain.protocol] * 2
    with urllib.request.urlopen(status, timeout=10) as resp:
        assert resp.read().decode().count(f"over {chain.protocol}") == 2
