"""The Redis tunnel store as a running edge uses it: every tunnel held in memory, changed the
moment any edge or command announces a change.

The edge looks a tunnel up on every request, so lookups never wait on Redis: they read this
edge's copy. The copy is loaded whole at start (a consistent snapshot, :mod:`.redis_schema`),
then kept current by the ``changes`` channel (each message names one tunnel, reloaded at once)
and checked every :data:`RESYNC` seconds against the store's ``version`` counter as a safety
net for a message lost while the subscription was down.

**Redis going away.** The edge keeps serving the routes it holds; lookups answer from the
copy, reports wait in memory (at most ``REPORTS_KEPT``), and the watcher reconnects with
backoff (0.5 s doubling to :data:`MAX_BACKOFF`, jittered), then reloads everything, since
changes made meanwhile were announced to no one. One WARNING when it is lost, one INFO when it
is back; the URL is always shown with its password masked.

**Redis down at start** is a :class:`~.store_records.StoreError` naming the store: an edge with
no tunnels to serve should not look as if it were running (docs/cluster.md).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import random
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from .. import strict_json
from ..config.store_url import RedisURL
from . import redis_schema as schema
from .store_records import (
    REPORTS_KEPT,
    TunnelRecord,
    canonical_id,
    host_candidates,
    not_found,
)
from .store_redis import client_options, store_error

__all__ = ["MAX_BACKOFF", "RESYNC", "RedisEdgeStore"]

logger = logging.getLogger("pq_quic_plugin.tunnel.edge")

#: How often the edge compares its copy's version with the store's, whatever it was told.
RESYNC = 30.0
#: The longest wait between two attempts to reach a lost Redis.
MAX_BACKOFF = 10.0
#: How long a lookup made on the network (a registration's) may wait before the copy answers.
LOOKUP_TIMEOUT = 2.0
_ERRORS = (redis_errors.RedisError, OSError, asyncio.TimeoutError)


class RedisEdgeStore:
    """:class:`~.store.EdgeStore` on Redis: lookups from memory, kept current by pub/sub."""

    def __init__(self, url: RedisURL, *, resync: float = RESYNC) -> None:
        self.url = url
        self.resync = resync
        self.client = aioredis.Redis.from_url(url.url, **client_options(url))
        self._tunnel = self.client.register_script(schema.TUNNEL)
        self._snapshot = self.client.register_script(schema.SNAPSHOT)
        self._by_id: dict[str, TunnelRecord] = {}
        self._by_host: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self.version = -1
        self._changed = asyncio.Event()
        self._reports: deque[dict[str, object]] = deque(maxlen=REPORTS_KEPT)
        self._unsent: deque[str] = deque(maxlen=REPORTS_KEPT)
        self._flush: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        #: Whether the watcher holds a live subscription (False while Redis is away).
        self.connected = False
        self._started = True
        self._closing = False

    def describe(self) -> str:
        return self.url.masked

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every tunnel and subscribe to changes; :class:`StoreError` if Redis cannot be
        reached or refuses us (wrong password, missing permission)."""
        try:
            await self.client.ping()
            await self._resync()
            await self._load_reports()
        except _ERRORS as exc:
            await self.client.aclose()
            raise store_error(self.url, exc) from None
        self._watcher = asyncio.ensure_future(self._watch())

    async def aclose(self) -> None:
        self._closing = True  # the client may turn a cancellation into a ConnectionError
        for task in (self._watcher, self._flush):
            if task is not None:
                task.cancel()
                await asyncio.wait([task], timeout=2.0)
        if self._unsent:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(self._send_reports(), 2.0)
        await self.client.aclose()

    async def next_change(self, timeout: float) -> None:
        """Return as soon as the copy changed (or after ``timeout``)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    # -- lookups (from memory) ----------------------------------------------------------------

    def by_id(self, tunnel_id: str) -> TunnelRecord | None:
        tid = canonical_id(tunnel_id)
        return None if tid is None else self._by_id.get(tid)

    def get(self, id_or_name: str) -> TunnelRecord | None:
        tid = canonical_id(id_or_name) or self._by_name.get(id_or_name)
        return None if tid is None else self._by_id.get(tid)

    def require(self, id_or_name: str) -> TunnelRecord:
        record = self.get(id_or_name)
        if record is None:
            raise not_found(id_or_name, self._by_name)
        return record

    def by_hostname(self, host: str) -> TunnelRecord | None:
        for candidate in host_candidates(host):
            tid = self._by_host.get(candidate)
            if tid is not None:
                return self._by_id.get(tid)
        return None

    def list(self) -> builtins.list[TunnelRecord]:
        return sorted(self._by_id.values(), key=lambda r: (r.created_at, r.name))

    async def fresh_by_id(self, tunnel_id: str) -> TunnelRecord | None:
        """The tunnel as Redis has it now (and the copy updated); the copy while Redis is
        away. A registration asks this, so a connector that registers a moment after
        ``pq-tunnel create`` on another machine is not refused as an unknown tunnel."""
        tid = canonical_id(tunnel_id)
        if tid is None:
            return None
        try:
            raw = await asyncio.wait_for(self._tunnel(args=[schema.PREFIX, tid]), LOOKUP_TIMEOUT)
        except _ERRORS:
            return self._by_id.get(tid)
        self._put(tid, schema.parse_record(raw))
        return self._by_id.get(tid)

    # -- reports ------------------------------------------------------------------------------

    def add_report(self, report: dict[str, object], keep: int = REPORTS_KEPT) -> None:
        """Keep the report here at once and send it to Redis in the background (it waits
        here while Redis is away)."""
        self._reports.appendleft(report)
        self._unsent.append(strict_json.dumps(report, separators=(",", ":")))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.ensure_future(self._send_reports(keep))

    def reports(self, count: int = REPORTS_KEPT) -> builtins.list[dict[str, object]]:
        """The newest reports of the whole cluster as last read, and this edge's since."""
        return builtins.list(self._reports)[: max(0, count)]

    async def _send_reports(self, keep: int = REPORTS_KEPT) -> None:
        while self._unsent:
            text = self._unsent[0]
            try:
                pipe = self.client.pipeline(transaction=True)
                pipe.lpush(schema.REPORTS, text)
                pipe.ltrim(schema.REPORTS, 0, keep - 1)
                await pipe.execute()
            except _ERRORS:
                return  # sent by the watcher once Redis is back
            self._unsent.popleft()

    async def _load_reports(self) -> None:
        rows = await self.client.lrange(schema.REPORTS, 0, REPORTS_KEPT - 1)
        loaded = [json.loads(row) for row in rows]
        mine = [json.loads(t) for t in self._unsent]  # not in Redis yet
        self._reports = deque(mine[::-1] + loaded, maxlen=REPORTS_KEPT)

    # -- keeping the copy current -------------------------------------------------------------

    def _put(self, tid: str, record: TunnelRecord | None) -> None:
        """Replace one tunnel in the copy (``None``: it was deleted)."""
        old = self._by_id.pop(tid, None)
        if old is not None:
            self._by_name.pop(old.name, None)
            for host in old.hostnames:
                if self._by_host.get(host) == tid:
                    del self._by_host[host]
        if record is not None:
            self._by_id[tid] = record
            self._by_name[record.name] = tid
            for host in record.hostnames:
                self._by_host[host] = tid
        if old != record:
            self._changed.set()

    async def _resync(self) -> None:
        """Replace the whole copy with a snapshot of the store.

        A store whose version went backwards lost its data (a Redis restarted without
        persistence, or flushed): its snapshot would delete every tunnel this edge serves and
        cut off their connectors. The edge keeps those it holds instead (and takes what the
        store has), with an ERROR saying what happened; they go when deleted explicitly.
        """
        snap = schema.parse_snapshot(await self._snapshot(args=[schema.PREFIX]))
        by_id = {r.id: r for r in snap.records}
        lost = [r for tid, r in self._by_id.items() if tid not in by_id]
        if snap.version < self.version and lost:
            logger.error(
                "tunnel store %s went back from version %d to %d and lacks %d tunnel(s) this "
                "edge serves (%s): it lost its data (Redis restarted without persistence?). "
                "Still serving them from memory; restore Redis's data (docs/cluster.md)",
                self.url.masked,
                self.version,
                snap.version,
                len(lost),
                ", ".join(sorted(r.name for r in lost))[:300],
            )
            by_id.update({r.id: r for r in lost})
            records = list(by_id.values())
        else:
            records = list(snap.records)
        if by_id != self._by_id:
            self._changed.set()
        self._by_id = by_id
        self._by_name = {r.name: r.id for r in records}
        self._by_host = {h: r.id for r in records for h in r.hostnames}
        self.version = snap.version

    async def _watch(self) -> None:
        """Follow the ``changes`` channel; on a lost connection, back off, reconnect and
        resync. Runs until cancelled."""
        delay = 0.5
        while not self._closing:
            try:
                await self._follow()
            except _ERRORS as exc:
                if self.connected:
                    logger.warning(
                        "%s; serving the %d tunnel(s) this edge holds until it is back",
                        store_error(self.url, exc),
                        len(self._by_id),
                    )
                    self.connected = False
                    delay = 0.5
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MAX_BACKOFF)

    async def _follow(self) -> None:
        """One subscription: subscribe first, then resync (nothing announced in between is
        missed), then apply each announced change until the connection fails."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(schema.CHANGES)
            await self._resync()
            await self._send_reports()
            await self._load_reports()
            logger.info(
                "tunnel store %s: %s changes (%d tunnel(s), version %d)",
                self.url.masked,
                "following" if self._started else "back: resynced, following",
                len(self._by_id),
                self.version,
            )
            self._started = False
            self.connected = True
            while True:
                message = await pubsub.get_message(timeout=self.resync)
                if message is not None and message.get("type") == "message":
                    await self._announced(schema.text(message["data"]))
                else:
                    await self._check_version()
        finally:
            with contextlib.suppress(*_ERRORS):
                await pubsub.aclose()

    async def _announced(self, message: str) -> None:
        """``"TUNNEL_ID VERSION"``: reload that tunnel; a version that skips one means a
        change was missed, so reload everything."""
        tunnel_id, _, number = message.partition(" ")
        await self._reload(tunnel_id)
        version = int(number) if number.isdigit() else -1
        if version == self.version + 1:
            self.version = version
        elif version > self.version:
            logger.info("tunnel store %s: missed a change; reloading", self.url.masked)
            await self._resync()

    async def _reload(self, tunnel_id: str) -> None:
        tid = canonical_id(tunnel_id)
        if tid is None:
            return
        self._put(tid, schema.parse_record(await self._tunnel(args=[schema.PREFIX, tid])))

    async def _check_version(self) -> None:
        """The safety net: reload everything if the store moved on without telling us."""
        current = await self.client.get(schema.VERSION)
        if int(schema.text(current or b"0")) != self.version:
            logger.info("tunnel store %s changed unannounced: reloading", self.url.masked)
            await self._resync()
        await self._load_reports()

    def stats(self) -> dict[str, Any]:
        """For the status page: how current this edge's copy is."""
        return {
            "store": self.url.masked,
            "connected": self.connected,
            "version": self.version,
            "tunnels": len(self._by_id),
        }
