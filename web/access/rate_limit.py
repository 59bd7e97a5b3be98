"""Per-key request rate limits: one token bucket per caller.

Pure logic without I/O: a bucket holds at most ``burst`` tokens, refills at
``per_minute / 60`` tokens a second, and each request takes one. A refused
request learns how many seconds to wait (the ``Retry-After`` it is answered
with). Time comes from ``now`` (monotonic seconds; injectable for tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 10_000
"""Buckets kept at most; the fullest (idle) ones are forgotten first."""


@dataclass
class TokenBucket:
    tokens: float
    updated: float


class RateLimiter:
    """``per_minute`` requests a minute per key after a ``burst``; 0 = no limit."""

    def __init__(
        self, per_minute: int, burst: int, *, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_s = per_minute / 60.0
        self.burst = max(1, burst)
        self._now = now
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate_s > 0

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self._buckets[key] = TokenBucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_s)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate_s

    async def acquire(self, key: str) -> float:
        """:meth:`take` as the :class:`~web.access.shared.RateLimits` coroutine."""
        return self.take(key)

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled completely (they hold no state worth keeping)."""
        full_after = self.burst / self.rate_s
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:  # all busy: drop the oldest half
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in oldest[: MAX_BUCKETS // 2]:
                del self._buckets[key]
