"""Per-key token buckets in Redis, shared by every replica.

The same rule as :class:`web.access.rate_limit.RateLimiter` (``burst`` tokens,
refilled at ``per_minute / 60`` a second, one per request), applied atomically by
a Lua script on Redis's own clock, so replicas whose clocks differ still agree. A
bucket key expires once it would have refilled completely. (The ``limits`` package
offers windows, not this bucket with its ``Retry-After``; the script is 15 lines.)
"""

from __future__ import annotations

from typing import Any

from web.cluster.connection import PREFIX, shared_errors

TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """``per_minute`` requests a minute per key after a ``burst``, across replicas; 0 = no limit."""

    def __init__(self, redis: Any, per_minute: int, burst: int) -> None:
        self.rate_s = per_minute / 60.0
        self.burst = max(1, burst)
        self._take = redis.register_script(TAKE)

    @property
    def enabled(self) -> bool:
        return self.rate_s > 0

    async def acquire(self, key: str) -> float:
        """0.0 when allowed, else the seconds until a token is free. Raises
        :class:`~web.access.shared.SharedStateError`. Safe to cancel."""
        if not self.enabled:
            return 0.0
        with shared_errors("rate limit"):
            wait = await self._take(keys=[f"{PREFIX}rate:{key}"], args=[self.rate_s, self.burst])
        return float(wait)
