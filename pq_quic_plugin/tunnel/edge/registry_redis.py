"""The live registry on Redis: which edge holds which connector connections, for every edge
of a cluster and for ``pq-tunnel list`` and ``info``.

Each edge writes one entry, ``edge:EDGE_ID`` (:mod:`.redis_schema`): its ID, location, relay
address, host and process, and its live connections by tunnel, as the live file has them.
The entry is written with a TTL (``cluster.registry-ttl``) at every registration change and
every third of the TTL, and listed in ``edges`` with the time it expires; an edge that dies
without cleaning up (SIGKILL, a power cut) simply stops refreshing it, and it is gone within
the TTL. A clean stop deletes it at once.

Two edges must not share an ID (their entries would overwrite each other): an edge that finds
another live edge's entry under its ID refuses to start, unless that entry is its own
machine's and its process is gone (an edge restarted after a crash takes its place back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from ..config.store_url import RedisURL
from ..observer import Observer
from . import redis_schema as schema
from .live_file import process_exists
from .registry import LiveConnection, Registry
from .store_records import StoreError
from .store_redis import store_error

__all__ = ["RedisLive"]

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

_ERRORS = (redis_errors.RedisError, OSError, asyncio.TimeoutError)
#: Delete the entry only if it is still this instance's (another edge may have taken the ID
#: over after this one lost Redis for longer than its TTL).
_REMOVE_OWN = """
local entry = redis.call('GET', KEYS[1])
if entry and string.find(entry, '"instance": "' .. ARGV[1] .. '"', 1, true) then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
"""


class RedisLive(Observer):
    """Publishes this edge's live connections to the registry; the live file's counterpart."""

    def __init__(
        self,
        client: aioredis.Redis,
        url: RedisURL,
        registry: Registry,
        *,
        edge_id: str,
        location: str,
        relay: str = "",
        ttl: float = 15.0,
    ) -> None:
        self.client = client
        self.url = url
        self.registry = registry
        self.edge_id = edge_id
        self.location = location
        self.relay = relay
        self.ttl = ttl
        self.instance = secrets.token_hex(8)
        self.started = time.time()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._stopping = False
        self._remove = client.register_script(_REMOVE_OWN)

    def entry(self) -> dict[str, Any]:
        tunnels: dict[str, list[dict[str, Any]]] = {}
        for live in self.registry:
            tunnels.setdefault(live.tunnel_id, []).append(live.describe())
        return {
            "edge_id": self.edge_id,
            "location": self.location,
            "relay": self.relay,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "instance": self.instance,
            "started": self.started,
            "updated": time.time(),
            "tunnels": tunnels,
        }

    async def start(self) -> None:
        """Claim this edge's ID and publish; :class:`StoreError` if another live edge has it."""
        key = schema.edge_key(self.edge_id)
        try:
            data = json.dumps(self.entry())
            claimed = await self.client.set(key, data, px=self._ttl_ms(), nx=True)
            if not claimed:
                other = schema.parse_edge(await self.client.get(key))
                if other is not None and other.instance != self.instance and _alive(other):
                    raise StoreError(
                        f"edge-id {self.edge_id!r} is already in use by a running edge (host "
                        f"{other.host}, pid {other.pid}) in the cluster at {self.url.masked}: "
                        "give each edge its own edge-id in edge.yaml"
                    )
            await self._publish()
        except _ERRORS as exc:
            raise store_error(self.url, exc) from None
        self._task = asyncio.ensure_future(self._heartbeat())

    async def stop(self) -> None:
        """Stop refreshing and delete the entry: the edge is leaving now, not in a TTL."""
        self._stopping = True  # the client may turn a cancellation into a ConnectionError
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2.0)
        if self._task is None:
            return  # never claimed the ID: the entry there is another edge's
        with contextlib.suppress(*_ERRORS):
            keys = [schema.edge_key(self.edge_id), schema.EDGES]
            await asyncio.wait_for(self._remove(keys=keys, args=[self.instance, self.edge_id]), 2)

    def write(self) -> None:
        """Publish soon (a registration changed); the heartbeat task does the writing."""
        self._dirty.set()

    def _ttl_ms(self) -> int:
        return max(1000, int(self.ttl * 1000))

    async def _publish(self) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(schema.edge_key(self.edge_id), json.dumps(self.entry()), px=self._ttl_ms())
        pipe.zadd(schema.EDGES, {self.edge_id: now + self.ttl})
        pipe.zremrangebyscore(schema.EDGES, "-inf", now)  # edges that died
        await pipe.execute()

    async def _heartbeat(self) -> None:
        """Publish every third of the TTL, and at once after a registration change."""
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.ttl / 3)
            self._dirty.clear()
            try:
                await self._publish()
            except _ERRORS as exc:
                if not self._failing:
                    logger.warning("live registry: %s; retrying", store_error(self.url, exc))
                    self._failing = True
                continue
            if self._failing:
                logger.info("live registry at %s: published again", self.url.masked)
                self._failing = False

    # -- Observer
    def connector_registered(self, live: LiveConnection) -> None:
        self.write()

    def connector_unregistered(self, live: LiveConnection) -> None:
        self.write()


def _alive(entry: schema.EdgeEntry) -> bool:
    """Whether an entry under our ID belongs to an edge that still runs: on another machine
    we cannot tell, so yes; on ours, if its process exists."""
    if entry.host != socket.gethostname():
        return True
    return entry.pid != os.getpid() and process_exists(entry.pid)
