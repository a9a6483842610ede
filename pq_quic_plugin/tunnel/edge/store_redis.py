"""The Redis tunnel store for the commands: ``pq-tunnel create``, ``route``, ``delete``,
``list`` and ``info`` with ``store: redis://...``.

Same records, same rules and the same error messages as the SQLite store (both use
:mod:`.store_records`); each change is one atomic Lua script that also tells every edge
(:mod:`.redis_schema`). The commands run once and exit, so this uses Redis's synchronous
client; the edge uses the asyncio one (:mod:`.store_redis_edge`).

Errors name the store by its URL with the password masked: a wrong password, an unreachable
server and a server that wants a password each get their own sentence, never the password.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis import exceptions as redis_errors

from .. import strict_json
from ..config.store_url import RedisURL
from . import redis_schema as schema
from . import store_records as records
from .store_records import REPORTS_KEPT, StoreError, TunnelRecord

__all__ = ["CONNECT_TIMEOUT", "RedisTunnelStore", "client_options", "store_error"]

#: How long a command waits for Redis to answer before saying it cannot reach it.
CONNECT_TIMEOUT = 5.0


def client_options(url: RedisURL, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """What both clients are made with: binary replies (auth keys are bytes) and timeouts, so
    an unreachable server is an error within ``timeout``, not a hang."""
    return {
        "decode_responses": False,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "health_check_interval": 0,
    }


def store_error(url: RedisURL, exc: BaseException) -> StoreError:
    """A :class:`StoreError` that says what went wrong with the Redis store at ``url`` (shown
    masked), in words an operator can act on."""
    where = f"tunnel store {url.masked}"
    message = str(exc)
    wants_password = not url.has_password and (
        "NOAUTH" in message or "required" in message.lower() or "authenticated" in message
    )
    if wants_password:
        return StoreError(
            f"{where}: Redis wants a password: give it in the URL (redis://:PASSWORD@HOST:PORT/DB)"
        )
    if isinstance(exc, redis_errors.AuthenticationError) or "WRONGPASS" in message:
        return StoreError(f"{where}: authentication failed: wrong password (or user) in the URL")
    if isinstance(exc, redis_errors.NoPermissionError) or "NOPERM" in message:
        return StoreError(
            f"{where}: the Redis user may not run what the store needs ({message[:200]}); "
            "docs/cluster.md lists the ACL it needs"
        )
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)):
        reason = message.replace(url.url, url.masked)[:200] or type(exc).__name__
        return StoreError(f"{where}: cannot reach Redis ({reason})")
    return StoreError(f"{where}: Redis error: {message.replace(url.url, url.masked)[:200]}")


class RedisTunnelStore:
    """:class:`~.store.Store` on Redis, for one command; use as a context manager."""

    def __init__(self, url: RedisURL, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url.url, **client_options(url, timeout))
        self._scripts = {
            name: self.client.register_script(source)
            for name, source in (
                ("create", schema.CREATE),
                ("add", schema.ADD_HOSTNAME),
                ("remove", schema.REMOVE_HOSTNAME),
                ("delete", schema.DELETE),
                ("tunnel", schema.TUNNEL),
                ("snapshot", schema.SNAPSHOT),
            )
        }
        with self._talking():
            self.client.ping()

    def describe(self) -> str:
        return self.url.masked

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RedisTunnelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _talking(self) -> Iterator[None]:
        try:
            yield
        except (redis_errors.RedisError, OSError) as exc:
            raise store_error(self.url, exc) from None

    def _run(self, script: str, *args: Any) -> list[Any]:
        with self._talking():
            reply = self._scripts[script](keys=[], args=[schema.PREFIX, *args])
        return list(reply)

    def _resolve(self, id_or_name: str) -> TunnelRecord:
        record = self.get(id_or_name)
        if record is None:
            raise records.not_found(id_or_name, (r.name for r in self.list()))
        return record

    def _check(self, reply: list[Any], id_or_name: str, name: str = "") -> None:
        """Turn a script's refusal into the SQLite store's error for the same case."""
        kind = schema.text(reply[0])
        if kind == "ok":
            return
        if kind == "name":
            raise records.name_conflict(name, schema.text(reply[1]))
        if kind == "host":
            host, owner, owner_name = (schema.text(v) for v in reply[1:4])
            raise records.hostname_conflict(host, owner, owner_name)
        raise records.not_found(id_or_name, (r.name for r in self.list()))

    # -- Store --------------------------------------------------------------------------------

    def create(self, name: str, hostnames: Iterable[str] = ()) -> tuple[TunnelRecord, bytes]:
        new = records.new_tunnel(name, hostnames)
        reply = self._run("create", new.id, name, repr(time.time()), new.auth_key, *new.hostnames)
        self._check(reply, name, name)
        return self.require(new.id), new.secret

    def by_id(self, tunnel_id: str) -> TunnelRecord | None:
        tid = records.canonical_id(tunnel_id)
        return None if tid is None else schema.parse_record(self._run("tunnel", tid))

    def get(self, id_or_name: str) -> TunnelRecord | None:
        tid = records.canonical_id(id_or_name)
        if tid is None:
            with self._talking():
                found = self.client.hget(schema.NAMES, id_or_name)
            if found is None:
                return None
            tid = schema.text(found)
        return self.by_id(tid)

    def require(self, id_or_name: str) -> TunnelRecord:
        return self._resolve(id_or_name)

    def by_hostname(self, host: str) -> TunnelRecord | None:
        candidates = records.host_candidates(host)
        if not candidates:
            return None
        with self._talking():
            owners = self.client.hmget(schema.PREFIX + "hostnames", candidates)
        for owner in owners:
            if owner is not None:
                return self.by_id(schema.text(owner))
        return None

    def list(self) -> builtins.list[TunnelRecord]:
        return builtins.list(schema.parse_snapshot(self._run("snapshot")).records)

    def add_report(self, report: dict[str, object], keep: int = REPORTS_KEPT) -> None:
        text = strict_json.dumps(report, separators=(",", ":"))
        with self._talking():
            pipe = self.client.pipeline(transaction=True)
            pipe.lpush(schema.REPORTS, text)
            pipe.ltrim(schema.REPORTS, 0, keep - 1)
            pipe.execute()

    def reports(self, count: int = REPORTS_KEPT) -> builtins.list[dict[str, object]]:
        if count <= 0:
            return []
        with self._talking():
            rows = self.client.lrange(schema.REPORTS, 0, count - 1)
        return [json.loads(row) for row in rows]

    def delete(self, id_or_name: str) -> TunnelRecord:
        record = self._resolve(id_or_name)
        self._check(self._run("delete", record.id), id_or_name)
        return record

    def add_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord:
        (host,) = records.normalize_all([hostname])
        record = self._resolve(id_or_name)
        self._check(self._run("add", record.id, host), id_or_name)
        return self.require(record.id)

    def remove_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord:
        (host,) = records.normalize_all([hostname])
        record = self._resolve(id_or_name)
        self._check(self._run("remove", record.id, host), id_or_name)
        return self.require(record.id)

    # -- the live registry --------------------------------------------------------------------

    def edges(self, now: float | None = None) -> builtins.list[schema.EdgeEntry]:
        """Every edge whose entry has not expired, by edge ID."""
        moment = time.time() if now is None else now
        with self._talking():
            ids = self.client.zrangebyscore(schema.EDGES, moment, "+inf")
            raws = self.client.mget([schema.edge_key(schema.text(i)) for i in ids]) if ids else []
        entries = [e for e in (schema.parse_edge(r) for r in raws) if e is not None]
        return sorted(entries, key=lambda e: e.edge_id)
