"""What the relay counts, per peer edge: for ``/metrics`` and the status page (ops/).

Kept as plain counters the relay updates on its own path and the operations server reads when
scraped, so relaying never waits on the metrics library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PeerCounts", "PeerStats"]


@dataclass
class PeerCounts:
    """One peer edge, from this edge's side."""

    #: Visitor requests this edge relayed to the peer (each attempt).
    relayed: int = 0
    #: Of those, how many failed in the relay: the peer link broke, the peer had no
    #: connection, or the link could not be opened.
    errors: int = 0
    #: Requests the peer relayed to this edge that this edge served ...
    served: int = 0
    #: ... and refused (no live connection for the tunnel here).
    refused: int = 0
    #: Relayed requests to the peer in flight now.
    in_flight: int = 0


class PeerStats:
    """:class:`PeerCounts` by peer edge ID."""

    def __init__(self) -> None:
        self.peers: dict[str, PeerCounts] = {}

    def of(self, peer: str) -> PeerCounts:
        counts = self.peers.get(peer)
        if counts is None:
            counts = self.peers[peer] = PeerCounts()
        return counts

    def served(self, peer: str, ok: bool) -> None:
        counts = self.of(peer)
        if ok:
            counts.served += 1
        else:
            counts.refused += 1

    def describe(self) -> dict[str, dict[str, int]]:
        return {peer: asdict(c) for peer, c in sorted(self.peers.items())}
