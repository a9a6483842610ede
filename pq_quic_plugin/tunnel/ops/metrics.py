"""The Prometheus implementation of the tunnel's :class:`~..observer.Observer`.

One class for both roles: the connector and the edge count the same things (handshakes,
requests, latency, bytes), only the metric prefix differs (``pq_tunnel_connector_*``,
``pq_tunnel_edge_*``), so dashboards can put the two sides of a tunnel next to each other.
Both also export cloudflared's names (:mod:`.cloudflared_names`) and ``build_info``; only the
connector has ``reconnects_total`` (the edge never reconnects). Each instance has a registry of
its own rather than the process-global one, so two roles (or two tests) in one process never
collide.
"""

from __future__ import annotations

import platform
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ... import __version__
from ..observer import Direction, Observer
from .cloudflared_names import CloudflaredNames

if TYPE_CHECKING:
    from ..edge.registry import LiveConnection

__all__ = ["LATENCY_BUCKETS", "Metrics", "RecentRequests", "Role"]

Role = Literal["connector", "edge"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RecentRequests:
    """The last few thousand requests, for per-tunnel rates on the status page.

    Prometheus counters answer "how many in total"; the status page wants "how busy is this
    tunnel now" without a Prometheus server, hence a bounded window kept in memory.
    """

    def __init__(self, maxlen: int = 5000) -> None:
        self.recent: deque[tuple[float, str, int]] = deque(maxlen=maxlen)

    def add(self, tunnel_id: str, status: int) -> None:
        self.recent.append((time.time(), tunnel_id, status))

    def rate(self, tunnel_id: str, window: float = 60.0) -> float:
        """Requests per second for ``tunnel_id`` over the last ``window`` seconds."""
        cutoff = time.time() - window
        return sum(1 for t, tid, _ in self.recent if t >= cutoff and tid == tunnel_id) / window


class Metrics(Observer):
    """Every counter an operator needs, on a registry of its own (one per process and role)."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.registry = CollectorRegistry()
        self.recent = RecentRequests()
        r = self.registry
        p = f"pq_tunnel_{role}"
        self.ha_connections = Gauge(
            f"{p}_ha_connections", "Registered tunnel connections", registry=r
        )
        self.by_protocol = Gauge(
            f"{p}_connections",
            "Registered tunnel connections by transport (protocol: quic, http2)",
            ["protocol"],
            registry=r,
        )
        self.handshakes = Counter(
            f"{p}_handshakes_total", "Tunnel QUIC handshakes", ["group", "result"], registry=r
        )
        self.requests = Counter(
            f"{p}_requests_total", "Proxied requests by status code", ["status"], registry=r
        )
        self.errors = Counter(
            f"{p}_request_errors_total",
            "Proxied requests that failed (status >= 500)",
            registry=r,
        )
        self.concurrent = Gauge(f"{p}_concurrent_requests", "Requests in flight", registry=r)
        self.latency = Histogram(
            f"{p}_request_duration_seconds",
            "Request latency",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connect_latency = Histogram(
            f"{p}_connect_duration_seconds",
            "Tunnel connection handshake time",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes = Counter(f"{p}_bytes_total", "Body bytes relayed", ["direction"], registry=r)
        for direction in ("to_origin", "from_origin"):
            self.bytes.labels(direction=direction)  # both exist (at 0) before any traffic
        self.reconnects = (
            Counter(f"{p}_reconnects_total", "Tunnel reconnect attempts", registry=r)
            if role == "connector"
            else None
        )
        self.build_info = Gauge(
            "build_info",
            "Build and version information",
            ["python_version", "version", "type"],
            registry=r,
        )
        self.build_info.labels(platform.python_version(), __version__, role).set(1)
        self.cloudflared = CloudflaredNames(per_tunnel=role == "edge")
        r.register(self.cloudflared)

    # -- Observer
    def handshake(self, group: str | None, ok: bool, seconds: float) -> None:
        self.handshakes.labels(group=group or "none", result="ok" if ok else "failed").inc()
        if ok:
            self.connect_latency.observe(seconds)

    def reconnect(self) -> None:
        if self.reconnects is not None:
            self.reconnects.inc()

    def connection_registered(self, conn_index: int, location: str) -> None:
        self.cloudflared.locations[conn_index] = location

    def connection_lost(self, conn_index: int) -> None:
        self.cloudflared.locations.pop(conn_index, None)

    def origin_error(self) -> None:
        self.cloudflared.errors[""] += 1

    def request_started(self, tunnel_id: str = "") -> None:
        self.concurrent.inc()
        self.cloudflared.concurrent[self.cloudflared.tunnel(tunnel_id)] += 1

    def request_done(self, tunnel_id: str, status: int, seconds: float) -> None:
        self.concurrent.dec()
        self.requests.labels(status=str(status)).inc()
        if status >= 500:
            self.errors.inc()
        key = self.cloudflared.tunnel(tunnel_id)
        self.cloudflared.concurrent[key] -= 1
        self.cloudflared.requests[key] += 1
        if self.cloudflared.per_tunnel and status >= 500:
            # The edge cannot tell the origin's own 5xx from a failure to reach it; the
            # connector counts only the failures (``origin_error``), as cloudflared does.
            self.cloudflared.errors[key] += 1
        self.latency.observe(seconds)
        self.recent.add(tunnel_id, status)

    def relayed(self, direction: Direction, count: int) -> None:
        self.bytes.labels(direction=direction).inc(count)

    def connector_registered(self, live: LiveConnection) -> None:
        self.cloudflared.connections[live.tunnel_id] += 1

    def connector_unregistered(self, live: LiveConnection) -> None:
        self.cloudflared.connections[live.tunnel_id] -= 1

    def connector_refused(self, remote: str, reason: str) -> None:
        self.handshakes.labels(group="none", result="refused").inc()

    # -- exposition
    def render(self, ha_connections: int, by_protocol: Mapping[str, int] | None = None) -> bytes:
        """The Prometheus text format, with the connection gauges read at scrape time."""
        self.ha_connections.set(ha_connections)
        for protocol in ("quic", "http2"):
            self.by_protocol.labels(protocol=protocol).set((by_protocol or {}).get(protocol, 0))
        if not self.cloudflared.per_tunnel:
            self.cloudflared.connections[""] = ha_connections
        return generate_latest(self.registry)
