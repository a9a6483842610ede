"""Which live registry an edge publishes to, from its ``store:`` setting: the live file next to
a SQLite store, or the cluster's registry on Redis (docs/cluster.md).

The Redis modules are imported only for a Redis store: ``redis`` is an optional dependency
(``pip install 'pq-quic-plugin[redis]'``), and an edge on SQLite must not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from ..config.cluster import DEFAULT_REGISTRY_TTL
from ..config.store_url import RedisURL
from .live_file import LiveFile
from .registry import Registry
from .store import EdgeStore

if TYPE_CHECKING:
    from ..config import EdgeConfig
    from .registry_redis import RedisLive

__all__ = ["LivePublisher", "live_publisher"]

#: Publishes the edge's live connections where ``pq-tunnel list`` (and, in a cluster, the
#: other edges) read them: ``start()``, ``write()`` (now, and as the heartbeat), ``stop()``;
#: an observer told of every registration change.
LivePublisher = Union[LiveFile, "RedisLive"]


def live_publisher(config: EdgeConfig, store: EdgeStore, registry: Registry) -> LivePublisher:
    """The live file next to a SQLite store, or the edge's entry in the Redis registry."""
    if isinstance(config.store, RedisURL):
        from .registry_redis import RedisLive
        from .store_redis_edge import RedisEdgeStore

        assert isinstance(store, RedisEdgeStore)
        cluster = config.cluster
        return RedisLive(
            store.client,
            config.store,
            registry,
            edge_id=config.edge_id,
            location=config.location,
            relay=str(cluster.relay) if cluster else "",
            ttl=cluster.registry_ttl if cluster else DEFAULT_REGISTRY_TTL,
        )
    return LiveFile(config.store, registry, edge_id=config.edge_id, location=config.location)
