"""Which other edges hold live connections for which tunnels, as the Redis registry says
(``edge:ID`` entries, :mod:`..edge.registry_redis`), read by a running edge for relaying.

Read every :attr:`PeerDirectory.interval` seconds in the background (a third of the
registry's TTL, at most a second), and at once when a request finds no edge for its tunnel
(at most every :data:`MIN_REFRESH`), so a connector that just registered at another edge is
reachable within a second. An edge whose entry expired (it died) or was deleted (it stopped)
is gone from the next read; :attr:`PeerDirectory.on_gone` is told, and the relay closes its
link to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ..edge import redis_schema as schema
from ..hostnames import HostPort, parse_hostport

__all__ = ["MIN_REFRESH", "PeerDirectory", "PeerEntry"]

logger = logging.getLogger("pq_quic_plugin.tunnel.cluster")

#: The least time between two reads asked for by requests.
MIN_REFRESH = 0.25
_ERRORS = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class PeerEntry:
    """Another edge, as far as relaying needs it."""

    edge_id: str
    relay: HostPort
    #: Usable (not draining) connector connections it holds, by tunnel ID.
    tunnels: dict[str, int]


class PeerDirectory:
    """This edge's view of the other edges, refreshed from Redis."""

    def __init__(self, client: aioredis.Redis, own_id: str, ttl: float) -> None:
        self.client = client
        self.own_id = own_id
        self.interval = min(1.0, ttl / 3)
        self.peers: dict[str, PeerEntry] = {}
        self.on_gone: Callable[[str], None] = lambda edge_id: None
        self._read_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)

    def holders(self, tunnel_id: str) -> list[PeerEntry]:
        """The other edges with a usable connection for the tunnel, as last read."""
        return [p for p in self.peers.values() if p.tunnels.get(tunnel_id, 0) > 0]

    async def refresh_soon(self) -> None:
        """Read now, unless a read happened in the last :data:`MIN_REFRESH` seconds."""
        if time.monotonic() - self._read_at >= MIN_REFRESH:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(self.refresh(), 2.0)

    async def refresh(self) -> None:
        async with self._lock:
            now = time.time()
            ids = await self.client.zrangebyscore(schema.EDGES, now, "+inf")
            keys = [schema.edge_key(schema.text(i)) for i in ids]
            raws = await self.client.mget(keys) if keys else []
            self._read_at = time.monotonic()
            peers: dict[str, PeerEntry] = {}
            for raw in raws:
                entry = schema.parse_edge(raw)
                if entry is None or entry.edge_id == self.own_id or not entry.relay:
                    continue
                try:
                    relay = parse_hostport(entry.relay)
                except ValueError:
                    continue
                tunnels = {
                    tid: sum(1 for c in conns if isinstance(c, dict) and not c.get("draining"))
                    for tid, conns in entry.tunnels.items()
                }
                peers[entry.edge_id] = PeerEntry(entry.edge_id, relay, tunnels)
            gone = set(self.peers) - set(peers)
            self.peers = peers
        for edge_id in gone:
            logger.info("edge %s left the cluster's registry", edge_id)
            self.on_gone(edge_id)

    async def _follow(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
                failing = False
            except _ERRORS as exc:
                if not failing:
                    logger.warning("cluster registry: cannot read the edges (%s); retrying", exc)
                    failing = True
            await asyncio.sleep(self.interval)
