"""The client secrets a server has minted (``ek_…``), by SHA-256 digest, in memory.

A restart invalidates them; expired ones are dropped as new ones are minted. The
route that mints them is :mod:`web.access.client_secrets`. Replicas share them
through Redis instead (:mod:`web.cluster.secrets`), with the same limits.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipelines.realtime.config import SessionRequest
from web.access.auth import Principal, digest
from web.api_errors import ApiError

MAX_SECRETS = 10_000
"""Live secrets kept at most; minting more answers 429 until some expire."""
TOO_MANY = ("too_many_client_secrets", "too many live client secrets; retry later")
MAX_PER_OWNER = 1_000
"""Live secrets one key may hold, so that one key cannot use up :data:`MAX_SECRETS`."""


@dataclass(frozen=True)
class ClientSecret:
    principal: Principal
    expires_at: float
    """Unix seconds."""


def new_secret(
    owner: Principal, expires_at: float, session: SessionRequest | None
) -> tuple[str, ClientSecret]:
    """A fresh ``ek_…`` value and what it stands for (``owner`` opening realtime sessions
    with ``session`` applied), valid until ``expires_at`` (Unix seconds)."""
    principal = replace(owner, via_client_secret=True, session=session)
    return "ek_" + secrets.token_urlsafe(24), ClientSecret(principal, expires_at)


class ClientSecretStore:
    """Secrets by digest. ``now`` gives Unix seconds (injectable for tests)."""

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._secrets: dict[bytes, ClientSecret] = {}

    def mint(
        self, owner: Principal, ttl_s: float, session: SessionRequest | None
    ) -> tuple[str, ClientSecret]:
        """A new secret for ``owner``, valid ``ttl_s`` seconds. Raises :class:`ApiError`
        (429) when :data:`MAX_SECRETS` are live, or :data:`MAX_PER_OWNER` of this key's."""
        self._prune()
        mine = sum(1 for v in self._secrets.values() if v.principal.owner == owner.owner)
        if len(self._secrets) >= MAX_SECRETS or mine >= MAX_PER_OWNER:
            raise ApiError(429, *TOO_MANY)
        value, entry = new_secret(owner, self._now() + ttl_s, session)
        self._secrets[digest(value)] = entry
        return value, entry

    def lookup(self, token: str) -> Principal | None:
        """The principal a live secret stands for; None when unknown or expired."""
        if not token.startswith("ek_"):
            return None
        entry = self._secrets.get(digest(token))
        if entry is None or entry.expires_at <= self._now():
            return None
        return entry.principal

    async def issue(
        self, owner: Principal, ttl_s: float, session: SessionRequest | None
    ) -> tuple[str, ClientSecret]:
        """:meth:`mint` as the :class:`~web.access.shared.SecretStore` coroutine."""
        return self.mint(owner, ttl_s, session)

    async def resolve(self, token: str) -> Principal | None:
        """:meth:`lookup` as the :class:`~web.access.shared.SecretStore` coroutine."""
        return self.lookup(token)

    def _prune(self) -> None:
        now = self._now()
        for key in [k for k, v in self._secrets.items() if v.expires_at <= now]:
            del self._secrets[key]
