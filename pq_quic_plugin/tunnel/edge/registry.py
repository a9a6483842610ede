"""The edge's view of live connector connections, per tunnel.

Kept apart from the networking so the routing rule (round-robin over registered, non-draining
connections) is easy to read and to test.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..wire import ERROR_SHUTDOWN, TunnelConnection


@dataclass
class LiveConnection:
    """One registered connector connection and what the edge shows about it."""

    tunnel_id: str
    tunnel_name: str
    connector_id: str
    conn_index: int
    connection: TunnelConnection
    group: str | None
    post_quantum: bool
    remote: str
    version: str = ""
    registered_at: float = field(default_factory=time.time)
    draining: bool = False
    requests: int = 0
    in_flight: int = 0

    @property
    def usable(self) -> bool:
        return not self.draining and not self.connection.closed

    def close(self, reason: str) -> None:
        """Drop this connection now; the connector reconnects with backoff."""
        self.connection.close(error_code=ERROR_SHUTDOWN, reason_phrase=reason)
        self.connection.transmit()

    def describe(self) -> dict[str, Any]:
        return {
            "connector_id": self.connector_id,
            "conn_index": self.conn_index,
            "group": self.group,
            "post_quantum": self.post_quantum,
            "remote": self.remote,
            "version": self.version,
            "registered_at": self.registered_at,
            "draining": self.draining,
            "requests": self.requests,
            "in_flight": self.in_flight,
        }


class Registry:
    """Live connections by tunnel ID; picks one per request, round-robin."""

    def __init__(self) -> None:
        self._by_tunnel: dict[str, list[LiveConnection]] = {}
        self._counter = itertools.count()

    def add(self, live: LiveConnection) -> None:
        self._by_tunnel.setdefault(live.tunnel_id, []).append(live)

    def remove(self, live: LiveConnection) -> None:
        conns = self._by_tunnel.get(live.tunnel_id, [])
        if live in conns:
            conns.remove(live)

    def connections(self, tunnel_id: str) -> list[LiveConnection]:
        return list(self._by_tunnel.get(tunnel_id, []))

    def pick(self, tunnel_id: str) -> LiveConnection | None:
        usable = [c for c in self._by_tunnel.get(tunnel_id, []) if c.usable]
        if not usable:
            return None
        return usable[next(self._counter) % len(usable)]

    def __iter__(self) -> Iterator[LiveConnection]:
        for conns in self._by_tunnel.values():
            yield from conns

    def count(self) -> int:
        return sum(len(c) for c in self._by_tunnel.values())
