"""Two edges sharing one Redis (issue 16, phase 1): real ``pq-tunnel edge`` processes, a
connector, an origin and a password-protected ``redis-server``, all on loopback.

* A tunnel created with the CLI against edge A's config is known to edge B at once (B's
  status page lists it long before any resync), and a connector registers at B.
* ``route --add-hostname`` against A's config is served by B within seconds.
* Redis stopped while B serves: known routes keep working; after the restart B resyncs, and a
  change made then reaches it.
* ``pq-tunnel list``/``info`` against the store show the cluster: both edges, and which one
  holds the connections.
* Edge B killed with SIGKILL: its registry entry is gone within the TTL (3 s here).
* An edge that cannot reach Redis, or gives the wrong password, exits at start with an error
  that names the store, without its password.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis_util import RedisServer, needs_redis, redis_server
from tunnel_chain import (
    TUNNEL_HOST,
    Chain,
    origin_rule,
    start_edge,
    tunnel_cli,
    write_edge_config,
)
from waiting import wait_until

from pq_quic_plugin.devcert import DevPKI, make_dev_pki
from tools.loopback import hypercorn_pq
from tools.processes import Process, free_port, stop

pytestmark = [needs_redis, pytest.mark.slow, pytest.mark.e2e]

PASSWORD = "cluster-pw-4b8d2a"
TTL = 3.0
NEW_HOST = "api.example.test"


@dataclass
class Cluster:
    dir: Path
    pki: DevPKI
    redis: RedisServer
    origin_port: int
    edges: dict[str, Process]
    yamls: dict[str, Path]
    public: dict[str, int]
    metrics: dict[str, int]
    chain_b: Chain


def _edge_yaml(directory: Path, pki: DevPKI, name: str, store: str) -> tuple[Path, int, int, int]:
    public, connectors, metrics = free_port(), free_port(), free_port()
    path = write_edge_config(directory, pki, public, connectors, metrics, name=f"edge-{name}.yaml")
    conf: dict[str, Any] = json.loads(path.read_text())
    secret = directory / "cluster.key"
    if not secret.exists():
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
    conf.update(
        {
            "store": store,
            "edge-id": f"edge-{name}",
            "cluster": {
                "relay": f"127.0.0.1:{free_port()}",
                "secret-file": str(secret),
                "registry-ttl": f"{TTL:g}s",
            },
        }
    )
    path.write_text(json.dumps(conf, indent=2))
    return path, public, connectors, metrics


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    pki = make_dev_pki(directory / "pki", hostnames=("localhost",))
    origin_port = free_port()
    tls = ["--certfile", str(pki.cert), "--keyfile", str(pki.key)]
    origin_args = ["--pq", *tls, "-b", f"127.0.0.1:{origin_port}", "--graceful-timeout", "1"]
    with (
        redis_server(directory / "redis", password=PASSWORD, persistent=True) as redis,
        hypercorn_pq([*origin_args, "app:app"], directory, origin_port),
    ):
        edges: dict[str, Process] = {}
        yamls, public, metrics, conns = {}, {}, {}, {}
        try:
            for name in ("a", "b"):
                yamls[name], public[name], conns[name], metrics[name] = _edge_yaml(
                    directory, pki, name, redis.url
                )
                edges[name] = start_edge(yamls[name], directory / f"edge-{name}.log", directory)
            chain_b = Chain(
                directory,
                pki,
                origin_port,
                public["b"],
                conns["b"],
                metrics["b"],
                free_port(),
                edges["b"],
                protocol="quic",
            )
            yield Cluster(
                directory, pki, redis, origin_port, edges, yamls, public, metrics, chain_b
            )
        finally:
            _stop_connector(chain_b if "chain_b" in locals() else None)
            for edge in edges.values():
                stop(edge.proc)


def _stop_connector(chain: Chain | None) -> None:
    if chain is not None and chain.connector is not None:
        stop(chain.connector.proc)


def _cli(c: Cluster, *args: str, edge: str = "a") -> subprocess.CompletedProcess[str]:
    return tunnel_cli(*args, "--config", str(c.yamls[edge]), cwd=c.dir)


def _status_json(c: Cluster, edge: str) -> dict[str, Any]:
    got = httpx.get(f"http://127.0.0.1:{c.metrics[edge]}/status.json", timeout=5)
    return dict(got.json())


def _get(c: Cluster, edge: str, host: str) -> int:
    """GET /api/connection at ``edge``'s public listener with ``Host: host``."""
    context = ssl.create_default_context(cafile=str(c.pki.ca_cert))
    with httpx.Client(verify=context, timeout=10) as client:
        url = f"https://{TUNNEL_HOST}:{c.public[edge]}/api/connection"
        return client.get(url, headers={"Host": host}).status_code


def test_a_tunnel_created_at_a_is_known_to_b_at_once(cluster: Cluster) -> None:
    made = _cli(
        cluster, "create", "demo", "--hostname", TUNNEL_HOST, "--credentials-file", "creds.json"
    )
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr and ":***@" in made.stdout
    seconds = wait_until(
        lambda: any(t["name"] == "demo" for t in _status_json(cluster, "b")["tunnels"]),
        5,
        "edge B to know the new tunnel",
    )
    assert seconds < 3, "announced, not found by the 30 s resync"
    chain = cluster.chain_b
    config = chain.connector_config(
        ingress=[origin_rule(cluster.origin_port, cluster.pki.ca_cert)]  # every hostname
    )
    chain.connector = chain.start_connector(config=config)
    assert _get(cluster, "b", TUNNEL_HOST) == 200
    listed = json.loads(_cli(cluster, "list", "--json").stdout)
    (demo,) = listed
    assert {c["edge_id"] for c in demo["connections"]} == {"edge-b"}
    text = _cli(cluster, "list").stdout
    assert "edge-a" in text and "edge-b" in text and "@edge-b" in text, text
    info = json.loads(_cli(cluster, "info", "demo", "--json").stdout)
    assert [(e["edge_id"], e["connections"]) for e in info["edges"]] == [
        ("edge-a", 0),
        ("edge-b", 2),
    ]
    assert {c["edge_id"] for k in info["connectors"] for c in k["connections"]} == {"edge-b"}


def test_route_at_a_is_served_by_b_within_seconds(cluster: Cluster) -> None:
    assert _get(cluster, "b", NEW_HOST) == 404
    routed = _cli(cluster, "route", "demo", "--add-hostname", NEW_HOST)
    assert routed.returncode == 0, routed.stderr
    seconds = wait_until(lambda: _get(cluster, "b", NEW_HOST) == 200, 5, "B to serve the host")
    assert seconds < 5
    assert cluster.chain_b.connector is not None
    cluster.chain_b.connector.wait_for_log(f"routes hostnames {NEW_HOST}, {TUNNEL_HOST}", 5)


def test_b_serves_known_routes_while_redis_is_down_and_resyncs(cluster: Cluster) -> None:
    cluster.redis.stop()
    try:
        cluster.edges["b"].wait_for_log("cannot reach Redis", 10)
        for _ in range(3):
            assert _get(cluster, "b", TUNNEL_HOST) == 200
            assert _get(cluster, "b", NEW_HOST) == 200
        failed = _cli(cluster, "list")
        assert failed.returncode == 2 and "cannot reach Redis" in failed.stderr
        assert PASSWORD not in failed.stderr
    finally:
        cluster.redis.start()
    cluster.edges["b"].wait_for_log("back: resynced", 20)
    later = "later.example.test"
    assert _cli(cluster, "route", "demo", "--add-hostname", later).returncode == 0
    wait_until(lambda: _get(cluster, "b", later) == 200, 5, "B to serve a host added after")
    # B's entry in the registry is back too (Redis kept it; B refreshes it anyway).
    wait_until(lambda: "@edge-b" in _cli(cluster, "list").stdout, 2 * TTL, "B's connections listed")
    for edge in cluster.edges.values():
        assert PASSWORD not in edge.log()


def test_the_secret_is_not_in_redis(cluster: Cluster) -> None:
    creds = json.loads((cluster.dir / "creds.json").read_text())
    secret = creds["TunnelSecret"].encode()
    for key, value in cluster.redis.dump():
        assert secret not in key and secret not in value, key


def test_a_killed_edge_leaves_the_registry_within_its_ttl(cluster: Cluster) -> None:
    client = cluster.redis.client()
    assert client.exists("pq-tunnel:edge:edge-b")
    os.kill(cluster.edges["b"].proc.pid, signal.SIGKILL)
    cluster.edges["b"].proc.wait(10)
    killed = time.monotonic()
    wait_until(lambda: not client.exists("pq-tunnel:edge:edge-b"), TTL + 2, "B's entry to expire")
    assert time.monotonic() - killed <= TTL + 2
    listed = _cli(cluster, "list")
    assert "edge-b" not in listed.stdout and "edge-a" in listed.stdout, listed.stdout
    info = json.loads(_cli(cluster, "info", "demo", "--json").stdout)
    assert [e["edge_id"] for e in info["edges"]] == ["edge-a"] and info["connectors"] == []


def _edge_exit(tmp_path: Path, store: str) -> subprocess.CompletedProcess[str]:
    pki = make_dev_pki(tmp_path / "pki", hostnames=("localhost",))
    path, *_ = _edge_yaml(tmp_path, pki, "x", store)
    return tunnel_cli("edge", "--config", str(path), cwd=tmp_path)


def test_an_edge_without_its_redis_exits_with_a_clear_error(tmp_path: Path) -> None:
    down = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    done = _edge_exit(tmp_path, down)
    assert done.returncode == 2, done.stderr
    assert "tunnel store redis://:***@127.0.0.1" in done.stderr
    assert "cannot reach Redis" in done.stderr and PASSWORD not in done.stderr
    assert "Traceback" not in done.stderr


def test_an_edge_with_the_wrong_password_exits_with_a_clear_error(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", password=PASSWORD) as redis:
        wrong = redis.url.replace(PASSWORD, "wrong-password-9")
        done = _edge_exit(tmp_path, wrong)
    assert done.returncode == 2, done.stderr
    assert "authentication failed: wrong password" in done.stderr
    assert "wrong-password-9" not in done.stderr and "Traceback" not in done.stderr
