"""What ``list``, ``info`` and ``delete`` know of the running edges: the live file next to a
SQLite store (one edge), or every edge's entry in a cluster's Redis registry.

Either way the answer is a list of :class:`~..edge.live_file.LiveState`, one per edge that is
alive (a live file whose edge is gone, or a Redis entry past its TTL, is not there), so the
commands print one edge and a cluster the same way.
"""

from __future__ import annotations

from typing import Any

from ..edge.live_file import LiveState, read_live_state
from ..edge.store import Store, TunnelStore

__all__ = ["connections_by_tunnel", "is_cluster", "live_states"]


def is_cluster(store: Store) -> bool:
    """Whether the store is shared by edges (Redis) rather than one edge's file."""
    return not isinstance(store, TunnelStore)


def live_states(store: Store) -> list[LiveState]:
    """Every running edge that uses ``store``, by edge ID."""
    if isinstance(store, TunnelStore):
        state = read_live_state(store.path)
        return [] if state is None else [state]
    from ..edge.store_redis import RedisTunnelStore

    assert isinstance(store, RedisTunnelStore)
    return [
        LiveState(
            edge_id=e.edge_id,
            location=e.location,
            pid=e.pid,
            updated=e.updated,
            tunnels=e.tunnels,
            host=e.host,
            relay=e.relay,
        )
        for e in store.edges()
    ]


def connections_by_tunnel(states: list[LiveState]) -> dict[str, list[dict[str, Any]]]:
    """Every edge's live connections by tunnel ID, each marked with its edge's ID and
    location."""
    out: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        for tunnel_id, conns in state.tunnels.items():
            for conn in conns:
                marked = {**conn, "edge_id": state.edge_id, "location": state.location}
                out.setdefault(tunnel_id, []).append(marked)
    return out
