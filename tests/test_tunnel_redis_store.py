"""The tunnel store on Redis (issue 16, phase 1), against real ``redis-server`` processes.

* The commands' store behaves as the SQLite one: the same operations give the same records and
  the same errors (each case runs on both backends).
* The tunnel secret never reaches Redis, only the derived key.
* A wrong or missing password and an unreachable server are clear errors that never print the
  password.
* A running edge's copy (:class:`RedisEdgeStore`) hears of a change at once, keeps answering
  while Redis is down, resyncs when it is back, and does not drop the tunnels it serves when
  Redis comes back empty.
* ``store: redis://`` and the ``cluster`` section in ``edge.yaml``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_util import RedisServer, needs_redis, redis_server
from waiting import wait_until_async

from pq_quic_plugin.tunnel.config import ConfigError, load_edge_config
from pq_quic_plugin.tunnel.config.store_url import RedisURL, parse_redis_url
from pq_quic_plugin.tunnel.edge.store import (
    Store,
    StoreError,
    TunnelConflictError,
    TunnelNotFoundError,
    open_store,
)
from pq_quic_plugin.tunnel.edge.store_redis_edge import RedisEdgeStore

pytestmark = [needs_redis, pytest.mark.slow]

PASSWORD = "pw-7c1e9f-not-in-any-log"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis"), password=PASSWORD) as srv:
        yield srv


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, server: RedisServer, tmp_path: Path) -> Iterator[Store]:
    if request.param == "redis":
        server.client().flushdb()
        location: str = server.url
    else:
        location = str(tmp_path / "tunnels.db")
    with open_store(location) as opened:
        yield opened


def test_both_backends_follow_the_same_rules(store: Store) -> None:
    web, secret = store.create("web", ["Web.Example.TEST", "*.b.example.test"])
    assert len(secret) == 32 and web.hostnames == ("*.b.example.test", "web.example.test")
    api, _ = store.create("api", [])
    assert [r.name for r in store.list()] == ["web", "api"]
    assert store.get("web") == web and store.by_id(web.id.upper()) == web
    assert store.by_id("web") is None  # never by name
    assert store.by_hostname("x.b.example.test:443") == web
    assert store.by_hostname("b.example.test") is None
    with pytest.raises(TunnelConflictError, match="a tunnel named 'web' already exists"):
        store.create("web", [])
    with pytest.raises(TunnelConflictError, match="already belongs to tunnel 'web'"):
        store.create("other", ["web.example.test"])
    assert "other" not in {r.name for r in store.list()}, "a refused create wrote nothing"
    with pytest.raises(TunnelConflictError, match="remove it there first"):
        store.add_hostname("api", "web.example.test")
    assert store.add_hostname("api", "API.example.test").hostnames == ("api.example.test",)
    assert store.add_hostname("api", "api.example.test").hostnames == ("api.example.test",)
    assert store.remove_hostname("web", "web.example.test").hostnames == ("*.b.example.test",)
    assert store.by_hostname("web.example.test") is None
    with pytest.raises(ValueError):
        store.create("bad name", [])
    with pytest.raises(TunnelNotFoundError, match="known tunnels: api, web"):
        store.require("nope")
    assert store.delete("web").id == web.id
    assert store.get(web.id) is None and store.by_hostname("x.b.example.test") is None
    assert store.create("web", ["x.b.example.test"])[0].id != web.id  # the name is free again
    for i in range(5):
        store.add_report({"n": i, "error": "handshake_failure"}, keep=3)
    assert [r["n"] for r in store.reports(10)] == [4, 3, 2]


def test_the_secret_never_reaches_redis(server: RedisServer) -> None:
    server.client().flushdb()
    with open_store(server.url) as store:
        record, secret = store.create("demo", ["demo.example.test"])
        store.add_hostname("demo", "more.example.test")
    forms = [secret, base64.b64encode(secret), secret.hex().encode(), base64.b64encode(secret)[:20]]
    dump = server.dump()
    assert any(record.auth_key in value for _, value in dump), "the derived key is kept"
    for key, value in dump:
        for form in forms:
            assert form not in key and form not in value, f"the secret is in {key!r}"


def test_password_errors_are_clear_and_never_show_it(server: RedisServer) -> None:
    wrong = server.url.replace(PASSWORD, "not-the-password")
    with pytest.raises(StoreError) as refused:
        open_store(wrong)
    text = str(refused.value)
    assert "authentication failed: wrong password" in text, text
    assert "not-the-password" not in text and ":***@127.0.0.1" in text
    missing = f"redis://127.0.0.1:{server.port}/0"
    with pytest.raises(StoreError, match="Redis wants a password: give it in the URL"):
        open_store(missing)
    with pytest.raises(StoreError) as unreachable:
        open_store(f"redis://:{PASSWORD}@127.0.0.1:1/0")
    assert "cannot reach Redis" in str(unreachable.value)
    assert PASSWORD not in str(unreachable.value)
    assert PASSWORD not in repr(parse_redis_url(server.url))
    assert PASSWORD not in str(parse_redis_url(server.url))


def _url(server: RedisServer) -> RedisURL:
    return parse_redis_url(server.url)


async def _edge_store(server: RedisServer, resync: float = 30.0) -> RedisEdgeStore:
    edge = RedisEdgeStore(_url(server), resync=resync)
    await edge.start()
    return edge


def test_an_edge_hears_of_every_change_at_once(server: RedisServer) -> None:
    server.client().flushdb()

    async def main() -> None:
        edge = await _edge_store(server)  # resync every 30s: only pub/sub can be this fast
        try:
            await wait_until_async(lambda: edge.connected, 5, "the subscription")
            with open_store(server.url) as cli:
                record, _ = cli.create("demo", ["a.example.test"])
                await wait_until_async(lambda: edge.by_id(record.id), 2, "the new tunnel")
                cli.add_hostname("demo", "b.example.test")
                await wait_until_async(
                    lambda: edge.by_hostname("b.example.test"), 2, "the added hostname"
                )
                cli.remove_hostname("demo", "a.example.test")
                await wait_until_async(
                    lambda: edge.by_hostname("a.example.test") is None, 2, "the removal"
                )
                cli.delete("demo")
                await wait_until_async(lambda: edge.get("demo") is None, 2, "the deletion")
        finally:
            await edge.aclose()

    asyncio.run(main())


def test_an_edge_serves_from_memory_while_redis_is_down_then_resyncs(tmp_path: Path) -> None:
    with redis_server(tmp_path / "r", password=PASSWORD, persistent=True) as server:

        async def main() -> None:
            with open_store(server.url) as cli:
                record, _ = cli.create("demo", ["a.example.test"])
            edge = await _edge_store(server)
            try:
                await wait_until_async(lambda: edge.connected, 5, "the subscription")
                server.stop()
                await wait_until_async(lambda: not edge.connected, 5, "the lost connection")
                assert edge.by_hostname("a.example.test") == record, "served from memory"
                assert (await edge.fresh_by_id(record.id)) == record, "the copy answers"
                edge.add_report({"error": "kept until Redis is back"})
                await asyncio.to_thread(server.start)
                await wait_until_async(lambda: edge.connected, 15, "the reconnection")
                with open_store(server.url) as cli:
                    cli.add_hostname("demo", "after.example.test")
                    await wait_until_async(
                        lambda: edge.by_hostname("after.example.test"), 3, "a change after"
                    )
                    await wait_until_async(lambda: cli.reports(5), 3, "the report sent later")
                    assert cli.reports(5)[0]["error"] == "kept until Redis is back"
            finally:
                await edge.aclose()

        asyncio.run(main())


def test_an_edge_keeps_its_tunnels_when_redis_comes_back_empty(server: RedisServer) -> None:
    server.client().flushdb()

    async def main() -> None:
        with open_store(server.url) as cli:
            record, _ = cli.create("demo", ["a.example.test"])
            cli.add_hostname("demo", "b.example.test")  # version 2
        edge = await _edge_store(server, resync=0.3)
        try:
            server.client().flushdb()  # as a restart without persistence: version 0
            with open_store(server.url) as cli:
                new, _ = cli.create("new", ["n.example.test"])  # version 1 < 2
            await wait_until_async(lambda: edge.by_id(new.id), 3, "the new store's tunnel")
            await asyncio.sleep(0.7)  # two more resyncs
            assert edge.by_hostname("a.example.test") == edge.by_id(record.id) is not None
        finally:
            await edge.aclose()

    asyncio.run(main())


def _edge_yaml(tmp_path: Path, **extra: object) -> Path:
    tmp_path.joinpath("cert.pem").write_text("x")
    tmp_path.joinpath("key.pem").write_text("x")
    conf = {
        "public": {"bind": "127.0.0.1:8443", "certfile": "cert.pem", "keyfile": "key.pem"},
        "connectors": {"bind": "127.0.0.1:7844"},
        **extra,
    }
    path = tmp_path / "edge.yaml"
    path.write_text(json.dumps(conf))
    return path


def _secret(tmp_path: Path, size: int = 32, mode: int = 0o600) -> str:
    path = tmp_path / f"cluster-{size}-{mode:o}.key"
    path.write_bytes(os.urandom(size))
    path.chmod(mode)
    return str(path)


def test_edge_yaml_takes_a_redis_store_and_checks_the_cluster_secret(tmp_path: Path) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:6390/2"
    cluster = {"relay": "127.0.0.1:7900", "secret-file": _secret(tmp_path), "registry-ttl": "3s"}
    config = load_edge_config(_edge_yaml(tmp_path, store=url, cluster=cluster))
    assert isinstance(config.store, RedisURL) and config.store.db == 2
    assert config.cluster is not None and config.cluster.registry_ttl == 3.0
    assert PASSWORD not in repr(config) and PASSWORD not in str(config.store)
    assert load_edge_config(_edge_yaml(tmp_path)).cluster is None
    for bad, words in (
        ({"store": url, "cluster": {**cluster, "secret-file": _secret(tmp_path, 31)}}, "31 bytes"),
        (
            {"store": url, "cluster": {**cluster, "secret-file": _secret(tmp_path, mode=0o640)}},
            "chmod 600",
        ),
        ({"cluster": cluster}, "a cluster needs a shared store"),
        ({"store": f"redis://:{PASSWORD}@127.0.0.1:x/0"}, "port"),
        ({"store": "redis://127.0.0.1:6379/db1"}, "the database is a number"),
    ):
        with pytest.raises(ConfigError, match=words) as refused:
            load_edge_config(_edge_yaml(tmp_path, **bad))
        assert PASSWORD not in str(refused.value)


def _claim(server: RedisServer, pid: int) -> StoreError | None:
    """Start a registry entry for ``edge-x`` over one left by ``pid`` on this machine."""
    from pq_quic_plugin.tunnel.edge.registry import Registry
    from pq_quic_plugin.tunnel.edge.registry_redis import RedisLive

    left = {"edge_id": "edge-x", "host": socket.gethostname(), "pid": pid, "instance": "old"}
    server.client().set("pq-tunnel:edge:edge-x", json.dumps(left), px=60_000)

    async def main() -> StoreError | None:
        edge = RedisEdgeStore(_url(server))
        await edge.start()
        live = RedisLive(edge.client, edge.url, Registry(), edge_id="edge-x", location="l")
        try:
            await live.start()
        except StoreError as exc:
            return exc
        finally:
            await live.stop()
            await edge.aclose()
        return None

    return asyncio.run(main())


def test_two_running_edges_cannot_share_an_edge_id(server: RedisServer) -> None:
    server.client().flushdb()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        refused = _claim(server, sleeper.pid)  # another edge process that still runs
    finally:
        sleeper.kill()
        sleeper.wait()
    assert refused is not None and "edge-id 'edge-x' is already in use" in str(refused)
    assert PASSWORD not in str(refused)
    assert b'"old"' in (server.client().get("pq-tunnel:edge:edge-x") or b""), "left alone"
    assert _claim(server, sleeper.pid) is None, "a dead edge's entry is taken over"
    assert not server.client().exists("pq-tunnel:edge:edge-x"), "a clean stop removes it"
