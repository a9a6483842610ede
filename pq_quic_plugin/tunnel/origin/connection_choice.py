"""Which of an origin's multiplexed connections (HTTP/2 or HTTP/3) a new request goes on.

One rule for both pools (:mod:`.https`, :mod:`.h3`), as Go's HTTP/2 transport (so cloudflared)
has it: the oldest connection with a stream free, so that a connection opened for a burst goes
idle and is let go when the burst is over; when every one is full, another connection, up to
:data:`MAX_CONNECTIONS_PER_ORIGIN`, so that long polls or event streams holding every stream of
one connection never make the next request wait for them; past that, the least busy one,
where the request waits for a stream (up to its timeout).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["MAX_CONNECTIONS_PER_ORIGIN", "choose"]

#: Multiplexed connections per origin at most (each carries 100 to 128 requests at once).
MAX_CONNECTIONS_PER_ORIGIN = 8

C = TypeVar("C")


def choose(
    connections: Sequence[C], has_room: Callable[[C], bool], load: Callable[[C], int]
) -> C | None:
    """The connection for the next request, oldest first; None when a new one is wanted.

    ``connections`` are the usable ones, oldest first; ``has_room`` says whether a stream may
    open on one now, ``load`` how many requests it carries.
    """
    for connection in connections:
        if has_room(connection):
            return connection
    if len(connections) >= MAX_CONNECTIONS_PER_ORIGIN:
        return min(connections, key=load)
    return None
