"""The relay between edges (hop 2) in ``/metrics``: requests relayed to each peer edge, relay
errors per peer edge, requests served for each peer, and the links' round-trip times.

Read at scrape time from the relay's own counters (:class:`..cluster.stats.PeerStats`), so the
relay's request path never touches the metrics library.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..cluster.peers import ClusterPeers

__all__ = ["RelayCollector"]

_P = "pq_tunnel_edge_relay"


class RelayCollector(Collector):
    """``pq_tunnel_edge_relay_*{peer="EDGE_ID"}`` for every peer this edge has dealt with."""

    def __init__(self, peers: ClusterPeers) -> None:
        self.peers = peers

    def collect(self) -> Iterator[Metric]:
        relayed = CounterMetricFamily(
            f"{_P}_requests", "Visitor requests relayed to a peer edge", labels=["peer"]
        )
        errors = CounterMetricFamily(
            f"{_P}_errors",
            "Relayed requests that failed in the relay (link broken or not opened, or the peer "
            "had no connection for the tunnel)",
            labels=["peer"],
        )
        served = CounterMetricFamily(
            f"{_P}_served", "Requests peer edges relayed here", labels=["peer", "result"]
        )
        in_flight = GaugeMetricFamily(
            f"{_P}_in_flight", "Requests relayed to a peer edge in flight now", labels=["peer"]
        )
        rtt = GaugeMetricFamily(
            f"{_P}_rtt_seconds", "Smoothed round-trip time of the link to a peer", labels=["peer"]
        )
        for peer, counts in sorted(self.peers.stats.peers.items()):
            relayed.add_metric([peer], counts.relayed)
            errors.add_metric([peer], counts.errors)
            served.add_metric([peer, "served"], counts.served)
            served.add_metric([peer, "refused"], counts.refused)
            in_flight.add_metric([peer], counts.in_flight)
        for peer, link in sorted(self.peers.links.items()):
            if link.srtt is not None:
                rtt.add_metric([peer], link.srtt)
        yield from (relayed, errors, served, in_flight, rtt)
