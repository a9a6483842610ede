"""The relay between edges (issue 16, phase 2): three ``pq-tunnel edge`` processes on one
``redis-server``, a connector with one HA connection to edge A and one to edge B, an origin,
and visitors at edge C, which holds no connection of the tunnel, all on loopback.

* A visitor at C (our HTTP/3 client, HTTPS over TCP, niquests over qh3, and headless
  Chromium over HTTP/3 and over TCP) is served through A or B, and the origin's scope lists
  four hops, each post-quantum: visitor-edge, edge-edge (with its group), edge-connector,
  connector-origin. Bodies stream both ways; a WebSocket works through the relay.
* ``route --add-hostname`` against A's config is served at C within seconds.
* An edge with another cluster secret cannot relay: refused by A and B, logged there, and
  its visitors get the usual 502.
* Edge B killed with SIGKILL under a steady load at C: requests keep succeeding through A
  (at most those in flight on B fail), and B's registry entry is gone within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from peers.chromium import CHROMIUM, dump_dom
from peers.qh3_peer import niquests_h3_get
from redis_util import RedisServer, needs_redis, redis_server
from tunnel_chain import TUNNEL_HOST, Chain, tunnel_cli
from waiting import wait_until
from websocket_client_util import websocket_exchange

from pq_quic_plugin import ssl_context
from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from pq_quic_plugin.http3 import client_configuration, fetch, open_session
from tools.loopback import hypercorn_pq
from tools.loopback_cluster import (
    ClusterEdge,
    cluster_edge_config,
    cluster_secret,
    start_cluster_edge,
)
from tools.processes import Process, free_port, stop

pytestmark = [needs_redis, pytest.mark.slow, pytest.mark.e2e]

TTL = 3.0
NEW_HOST = "relayed.example.test"
HOPS = ["visitor-edge", "edge-edge", "edge-connector", "connector-origin"]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs chromium (apt-get install chromium)"
)


@dataclass
class Cluster:
    dir: Path
    pki: DevPKI
    redis: RedisServer
    edges: dict[str, ClusterEdge]
    connector: Process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("relay")
    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    origin_port = free_port()
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    origin_args = ["--pq", *tls, "-b", f"127.0.0.1:{origin_port}", "--graceful-timeout", "1"]
    edges: dict[str, ClusterEdge] = {}
    connector: Process | None = None
    with (
        redis_server(directory / "redis") as redis,
        hypercorn_pq([*origin_args, "app:app"], directory, origin_port),
    ):
        try:
            for name in ("a", "b", "c"):
                edges[name] = cluster_edge_config(directory, pki, redis.url, name, ttl=TTL)
                start_cluster_edge(edges[name], directory)
            made = tunnel_cli(
                "create", "demo", "--hostname", TUNNEL_HOST,
                "--config", str(edges["a"].config), "--credentials-file", "creds.json",
                cwd=directory,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            a, b = edges["a"], edges["b"]
            chain = Chain(
                directory, pki, origin_port, a.public, a.connectors, a.metrics, free_port(),
                edge=_process(a),
            )  # fmt: skip
            config = chain.connector_config(
                edge=[f"127.0.0.1:{a.connectors}", f"127.0.0.1:{b.connectors}"],
                ha_connections=2,
                ingress=[  # every hostname of the tunnel, one added later too
                    {
                        "service": f"https://127.0.0.1:{origin_port}",
                        "origin-ca-file": str(pki.ca_cert),
                        "origin-server-name": "localhost",
                    }
                ],
            )
            connector = chain.start_connector(config=config)
            # C relays once the registry lists the connections of A and B.
            wait_until(lambda: _get(edges["c"], "/pid")[0] == 200, 10, "C to relay")
            yield Cluster(directory, pki, redis, edges, connector)
        finally:
            if connector is not None:
                stop(connector.proc)
            for edge in edges.values():
                if edge.process is not None:
                    stop(edge.process.proc)


def _process(edge: ClusterEdge) -> Process:
    assert edge.process is not None
    return edge.process


def _get(edge: ClusterEdge, path: str, host: str = TUNNEL_HOST) -> tuple[int, bytes]:
    """GET over post-quantum TLS/TCP at ``edge``'s public listener with ``Host: host``."""
    return asyncio.run(_get_async(edge, path, host))


async def _get_async(edge: ClusterEdge, path: str, host: str = TUNNEL_HOST) -> tuple[int, bytes]:
    cafile = edge.config.parent / "pki" / "ca.pem"
    context = ssl_context("require", server_side=False, cafile=cafile)
    async with httpx.AsyncClient(verify=context, timeout=15) as client:
        url = f"https://{TUNNEL_HOST}:{edge.public}{path}"
        got = await client.get(url, headers={"Host": host})
        return got.status_code, got.content


def _hops(body: bytes) -> list[dict[str, Any]]:
    return list(json.loads(body)["hops"])


def test_a_visitor_at_c_sees_four_post_quantum_hops_over_tcp(cluster: Cluster) -> None:
    status, body = _get(cluster.edges["c"], "/api/connection")
    assert status == 200
    hops = _hops(body)
    assert [h["hop"] for h in hops] == HOPS
    assert all(h["post_quantum"] and h["group"] == "X25519MLKEM768" for h in hops), hops
    relay = hops[1]
    assert relay["transport"] in ("quic", "tcp") and relay["signature_scheme"], relay
    assert hops[0]["transport"] == "tcp"


def test_a_visitor_at_c_sees_four_post_quantum_hops_over_http3(cluster: Cluster) -> None:
    url = f"https://{TUNNEL_HOST}:{cluster.edges['c'].public}/api/connection"
    resp = asyncio.run(fetch(url, "require", cafile=str(cluster.pki.ca_cert), timeout=15))
    assert resp.status == 200 and resp.group is not None and resp.group.name == "X25519MLKEM768"
    hops = _hops(resp.body)
    assert [h["hop"] for h in hops] == HOPS
    assert hops[0]["transport"] == "quic" and hops[0]["http_version"] == "3"
    assert all(h["post_quantum"] for h in hops), hops
    assert json.loads(resp.body)["all_hops_post_quantum"] is True


def _assert_four_pq_hops(facts: dict[str, Any], transport: str, http_version: str) -> None:
    """What a visitor at C must see: four post-quantum hops, the relay's group named, and
    its own hop as it reached C (the edge's view of the visitor's handshake)."""
    hops = list(facts["hops"])
    assert [h["hop"] for h in hops] == HOPS
    assert all(h["post_quantum"] and h["group"] == "X25519MLKEM768" for h in hops), hops
    assert hops[1]["transport"] in ("quic", "tcp"), hops[1]
    visitor = hops[0]
    assert (visitor["transport"], visitor["http_version"]) == (transport, http_version), visitor
    assert facts["all_hops_post_quantum"] is True


def test_qh3_at_c_sees_four_post_quantum_hops(cluster: Cluster) -> None:
    """niquests over qh3 (an independent QUIC/TLS stack), HTTP/3 only, no fallback to TCP."""
    url = f"https://{TUNNEL_HOST}:{cluster.edges['c'].public}/api/connection"
    got = niquests_h3_get(url, cluster.pki.ca_cert, timeout=15)
    assert got.status == 200 and got.http_version == "HTTP/3.0", got
    _assert_four_pq_hops(json.loads(got.body), "quic", "3")


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("http3", [True, False], ids=["http3", "tcp"])
def test_chromium_at_c_sees_four_post_quantum_hops(cluster: Cluster, http3: bool) -> None:
    """Debian's Chromium (BoringSSL) at C, over QUIC forced on and over TCP with QUIC off."""
    url = f"https://{TUNNEL_HOST}:{cluster.edges['c'].public}/api/connection"
    flags = [f"--host-resolver-rules=MAP {TUNNEL_HOST} 127.0.0.1"]
    dom = dump_dom(url, cluster.pki.spki_sha256_b64, force_quic=http3, extra_flags=flags)
    shown = re.search(r"<pre[^>]*>(.*?)</pre>", dom, re.S)  # Chromium's view of a JSON body
    assert shown is not None, dom[:2000]
    facts = json.loads(html.unescape(shown.group(1)))
    _assert_four_pq_hops(facts, "quic" if http3 else "tcp", "3" if http3 else "2")


def _status(edge: ClusterEdge) -> dict[str, Any]:
    got = httpx.get(f"http://127.0.0.1:{edge.metrics}/status.json", timeout=5)
    return dict(got.json())


def _in_flight_at_connections(c: Cluster) -> int:
    """Requests in flight on the tunnel's connections at A and B (the serving edges)."""
    total = 0
    for name in ("a", "b"):
        for tunnel in _status(c.edges[name])["tunnels"]:
            total += sum(conn["in_flight"] for conn in tunnel["connections"])
    return total


def test_bodies_stream_both_ways_through_the_relay(cluster: Cluster) -> None:
    size = 6 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # what /bytes serves, repeated
    want = hashlib.sha256(chunk * (size // len(chunk))).hexdigest()

    async def upload():  # type: ignore[no-untyped-def]
        for _ in range(size // len(chunk)):
            yield chunk

    async def scenario() -> tuple[str, dict[str, Any], str]:
        config = client_configuration("require", cafile=str(cluster.pki.ca_cert))
        url = f"https://{TUNNEL_HOST}:{cluster.edges['c'].public}"
        async with open_session(url, config) as session:
            status, _, body = await session.stream_request("GET", f"/bytes/{size}")
            down = hashlib.sha256()
            async for piece in body:
                down.update(piece)
            assert status == 200
            status, _, answer = await session.stream_request("POST", "/sha256", [], upload())
            up = json.loads(b"".join([piece async for piece in answer]))
            assert status == 200
            status, _, echoed = await session.stream_request("POST", "/echo", [], upload())
            echo = hashlib.sha256()
            async for piece in echoed:
                echo.update(piece)
            return down.hexdigest(), up, echo.hexdigest()

    down, up, echo = asyncio.run(scenario())
    assert down == want and echo == want
    assert up == {"bytes": size, "sha256": want}


def test_a_websocket_works_through_the_relay(cluster: Cluster) -> None:
    messages: list[str | bytes] = ["hello", b"\x00\x01binary", "x" * 100_000]
    exchanged = websocket_exchange(
        "127.0.0.1", cluster.edges["c"].public, TUNNEL_HOST, "/ws", cluster.pki.ca_cert, messages
    )
    assert exchanged == (messages, None)


def test_a_visitor_that_goes_away_cancels_the_relayed_request(cluster: Cluster) -> None:
    async def give_up() -> None:
        with contextlib.suppress(asyncio.TimeoutError, httpx.TimeoutException):
            await asyncio.wait_for(_get_async(cluster.edges["c"], "/slow?seconds=30"), 1.5)

    asyncio.run(give_up())
    # The origin would answer after 30 s; the cancellation frees A's or B's stream at once.
    seconds = wait_until(lambda: _in_flight_at_connections(cluster) == 0, 10, "the cancel")
    assert seconds < 10


def test_route_at_a_is_served_at_c_within_seconds(cluster: Cluster) -> None:
    c = cluster.edges["c"]
    assert _get(c, "/pid", host=NEW_HOST)[0] == 404
    routed = tunnel_cli(
        "route", "demo", "--add-hostname", NEW_HOST, "--config", str(cluster.edges["a"].config),
        cwd=cluster.dir,
    )  # fmt: skip
    assert routed.returncode == 0, routed.stderr
    seconds = wait_until(lambda: _get(c, "/pid", host=NEW_HOST)[0] == 200, 5, "C to serve it")
    assert seconds < 5


def test_an_edge_with_another_secret_cannot_relay(cluster: Cluster) -> None:
    directory = cluster.dir / "stranger"
    directory.mkdir()
    (directory / "pki").symlink_to(cluster.dir / "pki")
    secret = cluster_secret(directory, "other.key")
    d = cluster_edge_config(directory, cluster.pki, cluster.redis.url, "d", secret=secret, ttl=TTL)
    start_cluster_edge(d, directory)
    try:
        status, body = _get(d, "/pid")
        assert status == 502 and b"no live connection" in body
        process = _process(d)
        process.wait_for_log("cluster authentication failed", 10)
        refused = [cluster.edges[n].process for n in ("a", "b")]
        wait_until(
            lambda: any(
                p is not None and "does not hold this cluster's secret" in p.log() for p in refused
            ),
            10,
            "A or B to log the refusal",
        )
        for p in refused:
            assert p is not None and "Traceback" not in p.log()
        assert "edge-d" not in json.dumps(_status(cluster.edges["c"])["cluster"]["counts"])
    finally:
        stop(_process(d).proc)


def test_an_edge_relays_over_tls_tcp_with_protocol_http2(cluster: Cluster) -> None:
    directory = cluster.dir / "tcp-edge"
    directory.mkdir()
    (directory / "pki").symlink_to(cluster.dir / "pki")
    secret = cluster.dir / "cluster.key"  # the cluster's own
    e = cluster_edge_config(
        directory, cluster.pki, cluster.redis.url, "e", secret=secret, ttl=TTL,
        relay_protocol="http2",
    )  # fmt: skip
    start_cluster_edge(e, directory)
    try:
        status, body = _get(e, "/api/connection")
        assert status == 200
        hops = _hops(body)
        assert [h["hop"] for h in hops] == HOPS
        assert hops[1]["transport"] == "tcp" and hops[1]["group"] == "X25519MLKEM768"
        assert all(h["post_quantum"] for h in hops), hops
        peers = _status(e)["cluster"]["peers"]
        assert {p["link"] for p in peers if p["link"]} == {"http2"}
        assert sum(p.get("relayed", 0) for p in peers) == 1
    finally:
        stop(_process(e).proc)


def test_killing_b_under_load_keeps_c_serving_through_a(cluster: Cluster) -> None:
    """Last: it kills B. Four visitors keep requests going at C; B dies with SIGKILL."""
    c = cluster.edges["c"]
    results: list[tuple[float, int]] = []  # (when, status; 0 for an exception)
    stop_at: list[float] = []
    workers = 4

    async def visitor() -> None:
        cafile = cluster.pki.ca_cert
        context = ssl_context("require", server_side=False, cafile=cafile)
        async with httpx.AsyncClient(verify=context, timeout=10) as client:
            while not stop_at or time.monotonic() < stop_at[0]:
                try:
                    got = await client.get(f"https://{TUNNEL_HOST}:{c.public}/api/connection")
                    results.append((time.monotonic(), got.status_code))
                except httpx.HTTPError:
                    results.append((time.monotonic(), 0))

    def load() -> None:
        async def main() -> None:
            await asyncio.gather(*(visitor() for _ in range(workers)))

        asyncio.run(main())

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(2.0)
        before = _status(c)["cluster"]["counts"]
        b = _process(cluster.edges["b"])
        os.kill(b.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        b.proc.wait(10)
        client = cluster.redis.client()
        wait_until(lambda: not client.exists("pq-tunnel:edge:edge-b"), TTL + 2, "B to expire")
        expired = time.monotonic() - killed
        time.sleep(max(0.0, 3.0 - expired))
        stop_at.append(time.monotonic())
    finally:
        if not stop_at:
            stop_at.append(0.0)
        thread.join(30)
    assert expired <= TTL + 2
    assert before.get("edge-b", {}).get("relayed", 0) > 0, f"B was never used: {before}"
    failed = [t for t, status in results if status != 200]
    after = [t for t, status in results if status == 200 and t > killed + 1.0]
    print(f"{len(results)} requests, {len(failed)} failed, B expired after {expired:.1f}s")
    assert len(failed) <= workers, f"{len(failed)} failed; at most those in flight on B may"
    assert len(after) >= 20, "C stopped serving after B died"
    # C reads the registry every second: B is gone from its view right after.
    wait_until(
        lambda: [p["edge_id"] for p in _status(c)["cluster"]["peers"]] == ["edge-a"],
        3,
        "C to drop B",
    )
