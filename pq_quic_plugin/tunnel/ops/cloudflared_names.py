"""cloudflared's metric names, over the tunnel's own counts, so its dashboards work unchanged.

cloudflared (the connector) exports ``cloudflared_tunnel_ha_connections``, ``..._total_requests``,
``..._request_errors``, ``..._concurrent_requests_per_tunnel`` and ``..._server_locations``;
our connector exports the same names with the same meaning, without labels (one connector
serves one tunnel) except ``server_locations`` (``connection_id``, ``edge_location``, as
cloudflared). The edge serves many tunnels, so it exports the request and connection names with
a ``tunnel_id`` label (what ``pq-tunnel list`` shows), which cloudflared, not being an edge, has
no equivalent of. Our own ``pq_tunnel_*`` names stay; ``docs/tunnel.md`` maps one to the other.

cloudflared's Go client types the two counters as counters without the ``_total`` suffix, which
Python's client cannot write (it adds ``_total`` to every counter), so they are written here
with the exact names and the type ``untyped``: PromQL's ``rate()`` and ``increase()`` work the
same on them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CloudflaredNames"]

PREFIX = "cloudflared_tunnel"


class CloudflaredNames(Collector):
    """Counts kept by :class:`~.metrics.Metrics` and written under cloudflared's names at
    scrape time. ``per_tunnel`` (the edge) labels each value with ``tunnel_id``."""

    def __init__(self, per_tunnel: bool) -> None:
        self.per_tunnel = per_tunnel
        self.requests: defaultdict[str, int] = defaultdict(int)
        self.errors: defaultdict[str, int] = defaultdict(int)
        self.concurrent: defaultdict[str, int] = defaultdict(int)
        self.connections: defaultdict[str, int] = defaultdict(int)
        #: The connector's registered connections: index -> the edge's location.
        self.locations: dict[int, str] = {}

    def tunnel(self, tunnel_id: str) -> str:
        """The key counts are kept under: the tunnel on the edge, one key on the connector."""
        return tunnel_id if self.per_tunnel else ""

    def collect(self) -> Iterator[Metric]:
        yield self._family(
            "ha_connections", "Number of active ha connections", self.connections, "gauge"
        )
        yield self._family(
            "total_requests", "Amount of requests proxied through all the tunnels", self.requests
        )
        yield self._family("request_errors", "Count of error proxying to origin", self.errors)
        yield self._family(
            "concurrent_requests_per_tunnel",
            "Concurrent requests proxied through each tunnel",
            self.concurrent,
            "gauge",
        )
        if not self.per_tunnel:
            locations = GaugeMetricFamily(
                f"{PREFIX}_server_locations",
                "Where each tunnel connection is registered (value 1)",
                labels=["connection_id", "edge_location"],
            )
            for index, location in sorted(self.locations.items()):
                locations.add_metric([str(index), location], 1)
            yield locations

    def _family(self, name: str, doc: str, values: dict[str, int], kind: str = "unknown") -> Metric:
        full = f"{PREFIX}_{name}"
        family = Metric(full, doc, kind)
        if not self.per_tunnel:
            family.add_sample(full, {}, float(values.get("", 0)))
            return family
        for tunnel_id, value in sorted(values.items()):
            family.add_sample(full, {"tunnel_id": tunnel_id}, float(value))
        return family
