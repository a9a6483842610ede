"""How the tunnel store and the live registry are laid out in Redis, defined once for the
commands (synchronous client) and the edge (asyncio client).

Keys (all under :data:`PREFIX`):

* ``tunnels``: sorted set of tunnel IDs by creation time;
  ``tunnel:ID``: hash ``name``, ``created_at``, ``auth_key`` (the derived key, never the
  secret); ``tunnel:ID:hostnames``: set; ``names``: hash name → ID; ``hostnames``: hash
  hostname → ID.
* ``version``: a counter every change increments, and ``changes``: the pub/sub channel every
  change publishes ``"TUNNEL_ID VERSION"`` on, which the edges subscribe to; a version that is
  not the next one tells an edge it missed a change.
* ``reports``: list of post-quantum failure reports (JSON), newest first, at most
  ``REPORTS_KEPT``.
* ``edges``: sorted set of edge IDs by the time their entry expires; ``edge:ID``: the edge's
  entry (JSON: who it is, its relay address, its live connections by tunnel), written with a
  TTL at every heartbeat, so a dead edge's entry disappears by itself.

Every change is one Lua script, so it is atomic (two ``create`` commands cannot both take a
hostname) and bumps ``version`` and publishes in the same step. Reads of the whole store are
one script too, so an edge's copy is a consistent snapshot tagged with its version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .store_records import TunnelRecord

__all__ = [
    "ADD_HOSTNAME",
    "CHANGES",
    "CREATE",
    "DELETE",
    "EDGES",
    "PREFIX",
    "REMOVE_HOSTNAME",
    "REPORTS",
    "SNAPSHOT",
    "TUNNEL",
    "VERSION",
    "EdgeEntry",
    "Snapshot",
    "edge_key",
    "parse_edge",
    "parse_record",
    "parse_snapshot",
    "text",
]

PREFIX = "pq-tunnel:"
CHANGES = PREFIX + "changes"
VERSION = PREFIX + "version"
REPORTS = PREFIX + "reports"
EDGES = PREFIX + "edges"
NAMES = PREFIX + "names"


def edge_key(edge_id: str) -> str:
    return f"{PREFIX}edge:{edge_id}"


# ARGV[1] is always the prefix; the scripts build the key names from it.
_COMMON = """
local p = ARGV[1]
local function changed(id)
  local v = redis.call('INCR', p .. 'version')
  redis.call('PUBLISH', p .. 'changes', id .. ' ' .. v)
end
local function owner_of(host)
  local owner = redis.call('HGET', p .. 'hostnames', host)
  if not owner then return nil end
  return {owner, redis.call('HGET', p .. 'tunnel:' .. owner, 'name') or ''}
end
local function attach(id, host)
  redis.call('HSET', p .. 'hostnames', host, id)
  redis.call('SADD', p .. 'tunnel:' .. id .. ':hostnames', host)
end
"""

# ARGV: prefix, id, hostname; a change to one hostname of a tunnel that may have been deleted.
_ONE_HOSTNAME = (
    _COMMON
    + """
local id, host = ARGV[2], ARGV[3]
if redis.call('EXISTS', p .. 'tunnel:' .. id) == 0 then return {'gone'} end
"""
)

#: ARGV: prefix, id, name, created_at, auth_key, hostname... → {'ok'}, {'name', other id} or
#: {'host', hostname, owner id, owner name}.
CREATE = (
    _COMMON
    + """
local id, name = ARGV[2], ARGV[3]
local other = redis.call('HGET', p .. 'names', name)
if other then return {'name', other} end
for i = 6, #ARGV do
  local owner = owner_of(ARGV[i])
  if owner then return {'host', ARGV[i], owner[1], owner[2]} end
end
redis.call('HSET', p .. 'tunnel:' .. id, 'name', name, 'created_at', ARGV[4], 'auth_key', ARGV[5])
redis.call('HSET', p .. 'names', name, id)
redis.call('ZADD', p .. 'tunnels', ARGV[4], id)
for i = 6, #ARGV do attach(id, ARGV[i]) end
changed(id)
return {'ok'}
"""
)

#: ARGV: prefix, id, hostname → {'ok'}, {'gone'} or {'host', hostname, owner id, owner name}.
ADD_HOSTNAME = (
    _ONE_HOSTNAME
    + """
local owner = owner_of(host)
if owner then
  if owner[1] == id then return {'ok'} end
  return {'host', host, owner[1], owner[2]}
end
attach(id, host)
changed(id)
return {'ok'}
"""
)

#: ARGV: prefix, id, hostname → {'ok'} or {'gone'}.
REMOVE_HOSTNAME = (
    _ONE_HOSTNAME
    + """
if redis.call('HGET', p .. 'hostnames', host) == id then
  redis.call('HDEL', p .. 'hostnames', host)
  redis.call('SREM', p .. 'tunnel:' .. id .. ':hostnames', host)
  changed(id)
end
return {'ok'}
"""
)

#: ARGV: prefix, id → {'ok'} or {'gone'}.
DELETE = (
    _COMMON
    + """
local id = ARGV[2]
local name = redis.call('HGET', p .. 'tunnel:' .. id, 'name')
if not name then return {'gone'} end
for _, host in ipairs(redis.call('SMEMBERS', p .. 'tunnel:' .. id .. ':hostnames')) do
  if redis.call('HGET', p .. 'hostnames', host) == id then
    redis.call('HDEL', p .. 'hostnames', host)
  end
end
redis.call('DEL', p .. 'tunnel:' .. id, p .. 'tunnel:' .. id .. ':hostnames')
redis.call('HDEL', p .. 'names', name)
redis.call('ZREM', p .. 'tunnels', id)
changed(id)
return {'ok'}
"""
)

_READ = """
local p = ARGV[1]
local function tunnel(id)
  local t = redis.call('HMGET', p .. 'tunnel:' .. id, 'name', 'created_at', 'auth_key')
  if not t[1] then return nil end
  return {id, t[1], t[2], t[3], redis.call('SMEMBERS', p .. 'tunnel:' .. id .. ':hostnames')}
end
"""

#: ARGV: prefix, id → {} or {id, name, created_at, auth_key, {hostname...}}.
TUNNEL = _READ + "return tunnel(ARGV[2]) or {}\n"

#: ARGV: prefix → {version, tunnel...} (each as :data:`TUNNEL` returns it), oldest first.
SNAPSHOT = (
    _READ
    + """
local out = {redis.call('GET', p .. 'version') or '0'}
for _, id in ipairs(redis.call('ZRANGE', p .. 'tunnels', 0, -1)) do
  local t = tunnel(id)
  if t then table.insert(out, t) end
end
return out
"""
)


def text(value: Any) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)


def parse_record(raw: Any) -> TunnelRecord | None:
    """A tunnel as :data:`TUNNEL` returns it, or ``None`` for an empty reply."""
    if not raw:
        return None
    tid, name, created, key, hosts = raw
    when = datetime.fromtimestamp(float(text(created)), tz=timezone.utc)
    return TunnelRecord(
        text(tid), text(name), tuple(sorted(text(h) for h in hosts)), when, bytes(key)
    )


@dataclass(frozen=True)
class Snapshot:
    """Every tunnel at one :attr:`version` of the store."""

    version: int
    records: tuple[TunnelRecord, ...]


def parse_snapshot(raw: Any) -> Snapshot:
    version, *tunnels = raw
    records = [r for r in (parse_record(t) for t in tunnels) if r is not None]
    records.sort(key=lambda r: (r.created_at, r.name))
    return Snapshot(int(text(version)), tuple(records))


@dataclass(frozen=True)
class EdgeEntry:
    """One edge's entry in the live registry (``edge:ID``), as the commands read it."""

    edge_id: str
    location: str
    relay: str
    host: str
    pid: int
    instance: str
    started: float
    updated: float
    tunnels: dict[str, list[dict[str, Any]]]


def parse_edge(raw: Any) -> EdgeEntry | None:
    """An ``edge:ID`` value, or ``None`` if it is missing or not ours."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return EdgeEntry(
            edge_id=str(data["edge_id"]),
            location=str(data.get("location", "")),
            relay=str(data.get("relay") or ""),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            instance=str(data.get("instance", "")),
            started=float(data.get("started", 0)),
            updated=float(data.get("updated", 0)),
            tunnels={str(k): list(v) for k, v in dict(data.get("tunnels", {})).items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
