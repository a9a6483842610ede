"""Token buckets by key, bounded in memory: how often a stranger may make us do work.

Each key (a source address, a tunnel) has a bucket of ``burst`` tokens refilled at ``rate`` per
second; an action takes one token or is refused. The table keeps at most ``max_keys`` buckets:
when full, the least recently used one goes, which only ever forgives a key (its next bucket
starts full), so a flood of new addresses costs bounded memory and cannot starve known ones.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["TokenBuckets"]


class TokenBuckets:
    """Per-key token buckets; :meth:`take` answers whether the key may act now."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def take(self, key: str) -> bool:
        """Take one token for ``key``; False (and nothing taken) when its bucket is empty."""
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again (0 when it has one now)."""
        tokens, then = self._buckets.get(key, (float(self.burst), self._clock()))
        tokens = min(float(self.burst), tokens + (self._clock() - then) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
