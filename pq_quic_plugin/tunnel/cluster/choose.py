"""Which peer edge a request for a tunnel goes to when this edge holds no connection of it.

A local connection always wins (:class:`..edge.app.EdgeApp` asks the registry first). Among
the other edges that hold one, the fastest, least loaded first: each peer's score is its
smoothed round-trip time times one plus its load (requests in flight there, as its last pong
said, plus ours to it now), so a loaded near edge can lose to an idle one slightly further
away. An edge not dialled yet counts as :data:`UNKNOWN_RTT`; an edge whose link failed a
moment ago waits :data:`DOWN_FOR` before it is tried again (it is dead, or about to leave the
registry).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .directory import PeerEntry
from .peer_client import PeerLink

__all__ = ["DOWN_FOR", "UNKNOWN_RTT", "rank"]

#: The RTT assumed for an edge this one has no link to yet.
UNKNOWN_RTT = 0.05
#: How long an edge whose link failed is left out.
DOWN_FOR = 5.0


def score(link: PeerLink | None) -> float:
    if link is None or not link.usable:
        return UNKNOWN_RTT
    rtt = link.srtt if link.srtt is not None else UNKNOWN_RTT
    return rtt * (1 + link.load + link.counts.in_flight)


def rank(
    holders: list[PeerEntry],
    links: Mapping[str, PeerLink],
    down_until: Mapping[str, float],
    now: float | None = None,
) -> list[PeerEntry]:
    """``holders`` best first, leaving out edges marked down until after ``now``."""
    moment = time.monotonic() if now is None else now
    up = [p for p in holders if down_until.get(p.edge_id, 0.0) <= moment]
    return sorted(up, key=lambda p: (score(links.get(p.edge_id)), p.edge_id))
