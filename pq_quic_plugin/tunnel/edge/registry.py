"""The edge's view of live connector connections, per tunnel.

Kept apart from the networking so the routing rule (round-robin over registered, non-draining
connections) is easy to read and to test.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from ..wire import CONTROL_STREAM_ID, ERROR_SHUTDOWN, FrameType, StreamReset, TunnelLink

#: What :meth:`LiveConnection.describe` leaves out: the tunnel (descriptions are grouped by
#: it), the connection object itself and the tunnel's hostnames (the store has them).
NOT_DESCRIBED = frozenset({"tunnel_id", "tunnel_name", "connection", "hostnames"})
#: How long telling a connector something on its control stream may take.
CONTROL_SEND_TIMEOUT = 5.0


@dataclass
class LiveConnection:
    """One registered connector connection and what the edge shows about it."""

    tunnel_id: str
    tunnel_name: str
    connector_id: str
    conn_index: int
    connection: TunnelLink
    group: str | None
    post_quantum: bool
    remote: str
    version: str = ""
    #: The transport the connector chose (``protocol``): ``quic`` or ``http2``.
    protocol: str = "quic"
    registered_at: float = field(default_factory=time.time)
    draining: bool = False
    requests: int = 0
    in_flight: int = 0
    #: The hostnames the connector was last told it serves (at registration, then on every
    #: change ``pq-tunnel route`` makes).
    hostnames: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.draining and not self.connection.closed

    def close(self, reason: str) -> None:
        """Drop this connection now; the connector reconnects with backoff."""
        self.connection.close(error_code=ERROR_SHUTDOWN, reason_phrase=reason)
        self.connection.transmit()

    async def send_control(self, message: dict[str, Any]) -> bool:
        """Send ``message`` on the connection's control stream; False if it could not go (the
        connection or its control stream is gone, or the send stalled)."""
        channel = self.connection.channels.get(CONTROL_STREAM_ID)
        if channel is None or self.connection.closed:
            return False
        try:
            await asyncio.wait_for(
                channel.send_json(FrameType.CONTROL, message), CONTROL_SEND_TIMEOUT
            )
        except (StreamReset, asyncio.TimeoutError, ConnectionError):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """Every field but :data:`NOT_DESCRIBED`, in order, for the operations endpoints and
        the live file; a field added later is shown without a second list to keep in step."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_DESCRIBED}


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

    def protocols(self) -> dict[str, int]:
        """Live connections by transport (``quic``, ``http2``), for ``/metrics``."""
        counts: dict[str, int] = {}
        for live in self:
            counts[live.protocol] = counts.get(live.protocol, 0) + 1
        return counts
