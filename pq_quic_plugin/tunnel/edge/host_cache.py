"""Which tunnel serves a request's host, remembered for a second.

The SQLite store answers that with a lock, a read transaction and three SQL statements: about 86
us per request in a wall-clock cProfile of the edge (http2 path; with this cache the edge's CPU
per request in bench/tunnel.py went from 0.65 to 0.58 ms), for an answer that changes only when
an operator runs ``route`` or ``delete``. A change is seen within :data:`TTL` here, inside the 5
s ``route`` promises (docs/tunnel.md). Hosts that match no tunnel are remembered too (a 404
costs a lookup like any other), so the table is bounded: a visitor sending a new ``Host`` per
request must not grow the edge's memory. The connector listener's ownership checks read the
store directly, never this."""

from __future__ import annotations

import time
from collections.abc import Callable

from .store_records import TunnelRecord

__all__ = ["MAX_HOSTS", "TTL", "HostCache"]

#: Seconds a lookup is reused.
TTL = 1.0
#: Hosts remembered at once; past that the table starts again (a flood of unknown hosts costs
#: one lookup per request, as with no cache, and a bounded table).
MAX_HOSTS = 4096


class HostCache:
    """``lookup(host)`` through ``by_hostname``, each answer reused for :data:`TTL` seconds."""

    def __init__(
        self,
        by_hostname: Callable[[str], TunnelRecord | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_hostname = by_hostname
        self._clock = clock
        self._answers: dict[str, tuple[float, TunnelRecord | None]] = {}

    def lookup(self, host: str) -> TunnelRecord | None:
        now = self._clock()
        known = self._answers.get(host)
        if known is not None and known[0] > now:
            return known[1]
        record = self._by_hostname(host)
        if len(self._answers) >= MAX_HOSTS:
            self._answers.clear()
        self._answers[host] = (now + TTL, record)
        return record

    def __len__(self) -> int:
        return len(self._answers)
