"""Session leases in Redis: a cap on realtime sessions across every replica.

Each open session holds one lease, a member ``<replica>:<slot>`` of one sorted set
scored by its expiry (Redis clock, ms). Taking one (a Lua script) first drops the
expired, then refuses when ``limit`` are live. The replica renews its leases every
third of ``ttl_s`` (:meth:`RedisSessionLeases.renew`, which also writes them back
after Redis lost them); a replica that dies stops renewing, so its leases lapse
within ``ttl_s`` and their places free up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from web.cluster.connection import PREFIX, shared_errors

log = logging.getLogger(__name__)

KEY = f"{PREFIX}sessions"
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
"""


class RedisSessionLeases:
    """At most ``limit`` sessions across replicas; this replica's leases by slot id."""

    def __init__(self, redis: Any, replica: str, limit: int, ttl_s: float) -> None:
        self._redis = redis
        self._replica = replica
        self._limit = limit
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._held: set[str] = set()
        self._releases: set[asyncio.Task[None]] = set()
        self._acquire = redis.register_script(ACQUIRE)
        self._renew = redis.register_script(RENEW)

    @property
    def limit(self) -> int:
        return self._limit

    def _member(self, lease_id: str) -> str:
        return f"{self._replica}:{lease_id}"

    async def acquire(self, lease_id: str) -> bool:
        """Take a lease (False when ``limit`` are live). Raises
        :class:`~web.access.shared.SharedStateError`. Safe to cancel."""
        with shared_errors("session lease"):
            ok = await self._acquire(
                keys=[KEY], args=[self._member(lease_id), self._limit, self.ttl_ms]
            )
        if ok:
            self._held.add(lease_id)
        return bool(ok)

    def release(self, lease_id: str) -> None:
        """Stop renewing the lease and remove it in the background (it lapses anyway)."""
        if lease_id not in self._held:
            return
        self._held.discard(lease_id)
        task = asyncio.get_running_loop().create_task(self._remove([lease_id]))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def renew(self) -> None:
        """Push every held lease's expiry ``ttl_s`` ahead. Raises
        :class:`~web.access.shared.SharedStateError`."""
        if not self._held:
            return
        members = [self._member(lease) for lease in self._held]
        with shared_errors("session lease renewal"):
            await self._renew(keys=[KEY], args=[self.ttl_ms, *members])

    async def aclose(self) -> None:
        """Remove every lease this replica holds (best effort; they lapse otherwise)."""
        held, self._held = list(self._held), set()
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        if held:
            await self._remove(held)

    async def _remove(self, lease_ids: list[str]) -> None:
        with contextlib.suppress(Exception):
            await self._redis.zrem(KEY, *[self._member(lease) for lease in lease_ids])
