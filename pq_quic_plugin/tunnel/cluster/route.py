"""A visitor request's way through a peer edge: what :class:`..edge.app.EdgeApp` proxies over
when this edge holds no connection of the tunnel, in place of a local ``LiveConnection``.

It offers the same surface the app's proxying uses (``connection``, ``tunnel_id``,
``tunnel_name``, ``requests``, ``in_flight``), so a relayed request and a WebSocket run the
very same code as a local one; what differs is the hop it adds (``edge-edge``, the serving
edge adds ``edge-connector``) and the ``tunnel_id`` the serving edge routes on.
"""

from __future__ import annotations

from typing import Any

from ..wire import TunnelLink
from .peer_client import PeerLink

__all__ = ["NO_CONNECTION_STATUS", "PeerRoute"]

#: The ERROR status a serving edge answers when it holds no live connection for the tunnel
#: (any more): the relaying edge may try another edge (docs/cluster.md, "Failing over").
NO_CONNECTION_STATUS = 503


class PeerRoute:
    """One tunnel, through one peer edge's link; counts go to that peer's counters."""

    def __init__(self, peer: PeerLink, tunnel_id: str, tunnel_name: str) -> None:
        self.peer = peer
        self.tunnel_id = tunnel_id
        self.tunnel_name = tunnel_name

    @property
    def edge_id(self) -> str:
        return self.peer.edge_id

    @property
    def connection(self) -> TunnelLink:
        return self.peer.link

    @property
    def requests(self) -> int:
        return self.peer.counts.relayed

    @requests.setter
    def requests(self, value: int) -> None:
        self.peer.counts.relayed = value

    @property
    def in_flight(self) -> int:
        return self.peer.counts.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.peer.counts.in_flight = value

    def failed(self) -> None:
        """The relay failed this request (link broke, or the peer had no connection)."""
        self.peer.counts.errors += 1

    def head_fields(self) -> dict[str, Any]:
        """What the relayed head adds to a connector's: the tunnel the peer routes on."""
        return {"tunnel_id": self.tunnel_id}

    def hops(self) -> list[dict[str, Any]]:
        return [self.peer.hop()]
