"""Rate limits: token buckets keyed by actor or client, kept per worker process.

They stop brute-force guessing of codes (a client trying serials until one
authenticates) and runaway clients. Each worker enforces the configured rate on
its own connections; with N workers a client spread over all of them gets at
most N times the rate (docs/server.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``rate`` events per ``per_s`` seconds per key, with a burst of
    ``rate``; the least recently seen keys are forgotten past ``max_keys``."""

    def __init__(self, rate: int, per_s: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate, self.per_s = rate, per_s
        self._fill = rate / per_s if rate else 0.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys, self._clock = max_keys, clock

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.rate), now))
        return min(float(self.rate), tokens + (now - at) * self._fill)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough."""
        if not self.enabled:
            return True
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < cost:
            return False
        self._put(key, tokens - cost, now)
        return True

    def blocked(self, key: str) -> bool:
        """True if ``key`` has no token left (without taking one)."""
        return self.enabled and self._level(key, self._clock()) < 1.0

    def charge(self, key: str, cost: float = 1.0) -> None:
        """Take tokens unconditionally (an event that already happened)."""
        if self.enabled:
            now = self._clock()
            self._put(key, max(self._level(key, now) - cost, -float(self.rate)), now)

    def _put(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
