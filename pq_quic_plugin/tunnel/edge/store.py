"""The tunnel store: where tunnels, their hostnames and auth keys, and the post-quantum failure
reports are kept; two backends behind one small interface.

* **SQLite** (``store: tunnels.db``, the default; :mod:`.store_sqlite`): a file next to one
  edge, shared with ``pq-tunnel create`` on the same machine.
* **Redis** (``store: redis://...``; :mod:`.store_redis` for the commands,
  :mod:`.store_redis_edge` for a running edge): shared by several edges, which also publish
  their live connections there (docs/cluster.md).

The commands (``create``, ``route``, ``delete``, ``list``, ``info``) use :class:`Store` and
work the same on both. A running edge uses :class:`EdgeStore`: it looks a tunnel up on every
request, so lookups are synchronous and answered from memory (SQLite's page cache, or the Redis
backend's copy of every tunnel, refreshed when a change is announced), and the few things that
wait on the network are coroutines.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config.store_url import RedisURL, is_redis_url, parse_redis_url
from .store_records import (
    REPORTS_KEPT,
    StoreError,
    TunnelConflictError,
    TunnelNotFoundError,
    TunnelRecord,
)
from .store_sqlite import TunnelStore

if TYPE_CHECKING:
    from ..config import EdgeConfig

__all__ = [
    "REPORTS_KEPT",
    "EdgeStore",
    "Store",
    "StoreError",
    "TunnelConflictError",
    "TunnelNotFoundError",
    "TunnelRecord",
    "TunnelStore",
    "open_edge_store",
    "open_store",
    "store_location",
]


class TunnelLookups(Protocol):
    """What reading tunnels takes, in a command and in the edge alike."""

    def by_id(self, tunnel_id: str) -> TunnelRecord | None:
        """The tunnel with this UUID (any case), never looked up by name."""

    def get(self, id_or_name: str) -> TunnelRecord | None: ...

    def require(self, id_or_name: str) -> TunnelRecord:
        """As :meth:`get`, or :class:`TunnelNotFoundError` naming the tunnels there are."""

    def by_hostname(self, host: str) -> TunnelRecord | None:
        """The tunnel a request's host goes to: exact name first, then the most specific
        wildcard."""

    def list(self) -> builtins.list[TunnelRecord]:
        """Every tunnel, oldest first."""

    def add_report(self, report: dict[str, object], keep: int = REPORTS_KEPT) -> None: ...

    def reports(self, count: int = REPORTS_KEPT) -> builtins.list[dict[str, object]]:
        """The newest reports, newest first."""

    def describe(self) -> str:
        """The store as logs and errors name it (a Redis URL's password masked)."""


class Store(TunnelLookups, Protocol):
    """What the commands use: lookups and changes, each change seen by every edge."""

    def create(self, name: str, hostnames: Iterable[str] = ()) -> tuple[TunnelRecord, bytes]:
        """A new tunnel and its secret (returned once, never stored)."""

    def delete(self, id_or_name: str) -> TunnelRecord: ...

    def add_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord: ...

    def remove_hostname(self, id_or_name: str, hostname: str) -> TunnelRecord: ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...


class EdgeStore(TunnelLookups, Protocol):
    """What a running edge uses: lookups from memory, and the network parts as coroutines."""

    async def start(self) -> None:
        """Connect and load; :class:`StoreError` naming the store when it cannot."""

    async def fresh_by_id(self, tunnel_id: str) -> TunnelRecord | None:
        """:meth:`by_id` as the store has it now (a registration must not be refused because
        a tunnel created a moment ago has not reached this edge's copy yet)."""

    async def next_change(self, timeout: float) -> None:
        """Return when the tunnels may have changed, after ``timeout`` at the latest."""

    async def aclose(self) -> None: ...


def store_location(text: str | Path | RedisURL) -> Path | RedisURL:
    """A ``--store`` value or ``store:`` key: a Redis URL or a file path."""
    if isinstance(text, (Path, RedisURL)):
        return text
    return parse_redis_url(text) if is_redis_url(text) else Path(text)


def open_store(location: str | Path | RedisURL) -> Store:
    """The store for a command (``pq-tunnel create`` and the others)."""
    where = store_location(location)
    if isinstance(where, RedisURL):
        _need_redis(where)
        from .store_redis import RedisTunnelStore

        return RedisTunnelStore(where)
    return TunnelStore(where)


def open_edge_store(config: EdgeConfig) -> EdgeStore:
    """The store for a running edge; not connected until :meth:`EdgeStore.start`."""
    if isinstance(config.store, RedisURL):
        _need_redis(config.store)
        from .store_redis_edge import RedisEdgeStore

        return RedisEdgeStore(config.store)
    return TunnelStore(config.store)


def _need_redis(url: RedisURL) -> None:
    """A clear error when the optional ``redis`` package is missing."""
    try:
        import redis  # noqa: F401
    except ImportError:
        raise StoreError(
            f"tunnel store {url.masked}: a Redis store needs the redis package: "
            "pip install 'pq-quic-plugin[redis]'"
        ) from None
