"""The rule both origin pools (HTTP/2 and HTTP/3) use to place a request on a connection.

The pools themselves are tested against real origins (test_tunnel_origin_streaming.py: the
request past one connection's stream limit opens a second); here, the branches those tests do
not reach in seconds: every connection full at the cap.
"""

from __future__ import annotations

from pq_quic_plugin.tunnel.origin.connection_choice import MAX_CONNECTIONS_PER_ORIGIN, choose


def _choose(loads: list[int], room: set[int]) -> int | None:
    return choose(list(range(len(loads))), lambda c: c in room, lambda c: loads[c])


def test_the_oldest_connection_with_room_is_used() -> None:
    assert _choose([100, 40, 3], room={1, 2}) == 1


def test_all_full_below_the_cap_asks_for_a_new_connection() -> None:
    assert _choose([100, 100], room=set()) is None
    assert _choose([], room=set()) is None


def test_all_full_at_the_cap_waits_on_the_least_busy() -> None:
    loads = [100] * MAX_CONNECTIONS_PER_ORIGIN
    loads[5] = 97
    assert _choose(loads, room=set()) == 5
