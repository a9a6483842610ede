"""The edge's host -> tunnel answers are reused for a second, then looked up again, and the
table stays bounded whatever hosts visitors send (edge/host_cache.py), on a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from pq_quic_plugin.tunnel.edge.host_cache import MAX_HOSTS, TTL, HostCache
from pq_quic_plugin.tunnel.edge.store_sqlite import TunnelStore


class _Clock:
    """The cache's clock, moved by the test (the store stays real)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_reused_for_a_second_then_looked_up_again(tmp_path: Path) -> None:
    with TunnelStore(tmp_path / "tunnels.db") as store:
        record, _ = store.create("demo", ["app.example.test"])
        clock = _Clock()
        cache = HostCache(store.by_hostname, clock)
        assert cache.lookup("app.example.test") == record
        assert cache.lookup("new.example.test") is None  # an unknown host: the edge's own 404
        store.remove_hostname("demo", "app.example.test")
        store.add_hostname("demo", "new.example.test")
        clock.now += TTL / 2
        assert cache.lookup("app.example.test") == record  # still the answer of a moment ago
        assert cache.lookup("new.example.test") is None
        clock.now += TTL
        assert cache.lookup("app.example.test") is None  # the route change is seen
        found = cache.lookup("new.example.test")
        assert found is not None and found.id == record.id


def test_the_table_stays_bounded_under_a_flood_of_hosts(tmp_path: Path) -> None:
    with TunnelStore(tmp_path / "tunnels.db") as store:
        store.create("demo", ["app.example.test"])
        cache = HostCache(store.by_hostname, _Clock())
        for n in range(MAX_HOSTS * 2 + 7):
            assert cache.lookup(f"h{n}.flood.example.test") is None
            assert len(cache) <= MAX_HOSTS
        assert cache.lookup("app.example.test") is not None
