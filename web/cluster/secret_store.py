"""Client secrets in Redis: one minted on any replica opens sessions on every other.

A secret is stored under the hex SHA-256 digest of its value (never the value),
as JSON naming the key's owner and name and the session config it carries, with
Redis expiring it at the secret's end. Two sorted sets of digests by expiry
(all, and the owner's) enforce the in-memory store's limits
(:data:`~web.access.client_secret_store.MAX_SECRETS`, ``MAX_PER_OWNER``)
atomically in one Lua script.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pipelines.realtime.config import SessionRequest, session_request
from web.access import client_secret_store
from web.access.auth import Principal, digest
from web.access.client_secret_store import TOO_MANY, ClientSecret, new_secret
from web.api_errors import ApiError
from web.cluster.connection import PREFIX, shared_errors

STORE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4])
   or redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.max(ttl, redis.call('PTTL', KEYS[2])))
redis.call('SET', KEYS[3], ARGV[3], 'PX', ttl)
return 1
"""
ALL = f"{PREFIX}secrets"


def _key(hexdigest: str) -> str:
    return f"{PREFIX}secret:{hexdigest}"


class RedisSecretStore:
    """The :class:`~web.access.shared.SecretStore` of a cluster. ``now``: Unix seconds."""

    def __init__(self, redis: Any, *, now: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._now = now
        self._store = redis.register_script(STORE)

    async def issue(
        self, owner: Principal, ttl_s: float, session: SessionRequest | None
    ) -> tuple[str, ClientSecret]:
        """A new secret valid ``ttl_s`` seconds on every replica. Raises :class:`ApiError`
        429 when too many are live, :class:`~web.access.shared.SharedStateError` when
        Redis fails. Safe to cancel (a secret stored but not returned just expires)."""
        value, entry = new_secret(owner, self._now() + ttl_s, session)
        hexdigest = digest(value).hex()
        payload = {
            "owner": owner.owner,
            "name": owner.name,
            "expires_at": entry.expires_at,
            "session": session.model_dump(mode="json", exclude_unset=True) if session else None,
        }
        with shared_errors("client secret store"):
            stored = await self._store(
                keys=[ALL, f"{PREFIX}secrets-of:{owner.owner}", _key(hexdigest)],
                args=[
                    hexdigest,
                    max(1, round(ttl_s * 1000)),
                    json.dumps(payload, separators=(",", ":")),
                    client_secret_store.MAX_SECRETS,
                    client_secret_store.MAX_PER_OWNER,
                ],
            )
        if not stored:
            raise ApiError(429, *TOO_MANY)
        return value, entry

    async def resolve(self, token: str) -> Principal | None:
        """The principal a live secret stands for; None when unknown or expired. Raises
        :class:`~web.access.shared.SharedStateError`. Safe to cancel."""
        if not token.startswith("ek_"):
            return None
        with shared_errors("client secret lookup"):
            raw = await self._redis.get(_key(digest(token).hex()))
        if raw is None:
            return None
        data = json.loads(raw)
        if data["expires_at"] <= self._now():
            return None
        session = session_request(data["session"]) if data["session"] is not None else None
        return Principal(
            owner=data["owner"], name=data["name"], via_client_secret=True, session=session
        )
