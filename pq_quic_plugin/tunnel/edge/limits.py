"""How much of the edge one visitor, and one tunnel, may hold at once.

A tunnel has a fixed number of streams (its connections times the connector's stream limit), so
without a share per visitor one visitor opening a few hundred slow requests held all of them
and every other visitor of that tunnel waited. Each request (and WebSocket) takes a slot of its
visitor and of its tunnel for as long as it is in flight. A visitor over its share waits a
little for one of its own requests to finish (holding no tunnel stream), then gets ``429``; a
tunnel over its share gets ``503`` at once; both with a short body, so the excess never queues
behind the tunnel's streams. The header limits bound what one request may make the edge parse
and forward before any of that.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config.edge_fields import PUBLIC_FIELDS, VISITOR_QUEUE_FACTOR, VISITOR_QUEUE_WAIT

if TYPE_CHECKING:
    from ..config import PublicListenerConfig

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_HEADERS",
    "QUEUE_FACTOR",
    "QUEUE_WAIT",
    "VISITOR_UNSENT_LIMIT",
    "InFlight",
    "Limits",
    "Refusal",
    "header_problem",
    "visitor_key",
]

#: How long a visitor over its share waits for one of its requests to finish before ``429``,
#: and how many times its share may wait at once (the rest get ``429`` at once). The share is
#: small (what one visitor may have moving through the tunnel, like a browser's six HTTP/1.1
#: connections per host) and the queue deep: a waiting request holds no tunnel stream, so a
#: page that asks for a hundred assets at once is served in turn rather than refused. Declared
#: with the key they belong to, whose documentation states them.
QUEUE_WAIT = VISITOR_QUEUE_WAIT
QUEUE_FACTOR = VISITOR_QUEUE_FACTOR

#: What a visitor's TCP connection may hold unsent in the edge's kernel (``TCP_NOTSENT_LOWAT``)
#: and, as much again, in its TLS layer. Without it a visitor that stops reading made the edge
#: queue about 4.5 MiB per connection, which the tunnel had to carry first: 40 unread
#: downloads cost a minute of CPU on two cores.
VISITOR_UNSENT_LIMIT = 64 * 1024

#: A request with more header fields than this gets ``431`` (browsers send about 20).
MAX_REQUEST_HEADERS = 128
#: ... or with more bytes of names and values than this (HTTP/1.1 heads are already capped at
#: 16 KiB by the server; HTTP/2 and HTTP/3 allow 64 KiB or more).
MAX_HEADER_BYTES = 32 * 1024


@dataclass(frozen=True)
class Limits:
    """The public listener's limits (``edge.yaml: public``). The defaults are the field
    table's (``config/edge_fields.py``), so an edge built without a configuration file (tests,
    an embedding program) has exactly the limits an ``edge.yaml`` without these keys gives."""

    per_visitor: int = PUBLIC_FIELDS.dataclass_default("max_requests_per_visitor")
    per_tunnel: int = PUBLIC_FIELDS.dataclass_default("max_requests_per_tunnel")
    body_idle_timeout: float = PUBLIC_FIELDS.dataclass_default("body_idle_timeout")

    @classmethod
    def of(cls, public: PublicListenerConfig) -> Limits:
        return cls(
            public.max_requests_per_visitor,
            public.max_requests_per_tunnel,
            float(public.body_idle_timeout),
        )


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted: the status and the short text the visitor gets."""

    status: int
    text: str


def visitor_key(client: Sequence[object] | None) -> str:
    """Who a request counts against: its IPv4 address, or its IPv6 /64 (one host usually has a
    whole /64, so counting single IPv6 addresses would give it billions of shares).
    ``::ffff:a.b.c.d`` is the IPv4 address it carries."""
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class InFlight:
    """Requests in flight per visitor and per tunnel, admitted against :class:`Limits`.

    A visitor over its share waits (at most :data:`QUEUE_WAIT` seconds, and at most
    :data:`QUEUE_FACTOR` times its share may wait) for one of its own requests to finish: a
    client that multiplexes a few hundred requests at once is served in turn, holding no tunnel
    stream while it waits, and only what is over that gets ``429``.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._visitors: dict[str, int] = {}
        self._tunnels: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def visitor(self, key: str) -> int:
        return self._visitors.get(key, 0)

    def tunnel(self, tunnel_id: str) -> int:
        return self._tunnels.get(tunnel_id, 0)

    def waiting(self, key: str) -> int:
        return len(self._waiters.get(key, ()))

    async def _wait_for_share(self, visitor: str) -> bool:
        """Wait until ``visitor`` is under its share; False when it may not wait (or waited
        too long)."""
        if self.waiting(visitor) >= QUEUE_FACTOR * self.limits.per_visitor:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUEUE_WAIT
        while self.visitor(visitor) >= self.limits.per_visitor:
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter = loop.create_future()
            queue = self._waiters.setdefault(visitor, [])
            queue.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                return False
            finally:
                if waiter in queue:
                    queue.remove(waiter)
                if not queue:
                    self._waiters.pop(visitor, None)
        return True

    def _wake_one(self, visitor: str) -> None:
        for waiter in self._waiters.get(visitor, ()):
            if not waiter.done():
                waiter.set_result(None)
                return

    @asynccontextmanager
    async def slot(self, visitor: str, tunnel_id: str) -> AsyncIterator[Refusal | None]:
        """Take a slot for the block, or yield the :class:`Refusal` (and take nothing)."""
        if self.visitor(visitor) >= self.limits.per_visitor and not await self._wait_for_share(
            visitor
        ):
            yield Refusal(
                429,
                "Too many requests from your address are in flight; retry when some finish.",
            )
            return
        if self.tunnel(tunnel_id) >= self.limits.per_tunnel:
            yield Refusal(503, "This service is busy; try again shortly.")
            return
        _add(self._visitors, visitor, 1)
        _add(self._tunnels, tunnel_id, 1)
        try:
            yield None
        finally:
            _add(self._visitors, visitor, -1)
            _add(self._tunnels, tunnel_id, -1)
            self._wake_one(visitor)


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    """Count up or down; a key that reaches zero is dropped, so the maps hold only visitors
    and tunnels with requests in flight (bounded by the limits, never by history)."""
    value = counts.get(key, 0) + delta
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


def header_problem(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """Why a request's header list is too big to take on (the edge answers ``431``), or None."""
    if len(headers) > MAX_REQUEST_HEADERS:
        return f"more than {MAX_REQUEST_HEADERS} header fields"
    size = sum(len(k) + len(v) for k, v in headers)
    if size > MAX_HEADER_BYTES:
        return f"more than {MAX_HEADER_BYTES // 1024} KiB of header fields"
    return None
