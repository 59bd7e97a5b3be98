"""The state replicas may share, as narrow protocols: rate limits, client secrets,
session leases, and the replica's part in a cluster.

Each has an in-memory implementation in this package (one process, today's
default) and a Redis one in :mod:`web.cluster` (used when ``VOICE_REDIS_URL`` is
set). Every coroutine here is safe to cancel; a shared store that does not answer
raises :class:`SharedStateError` (the caller decides whether to fail open).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pipelines.realtime.config import SessionRequest
    from web.access.auth import Principal
    from web.access.client_secret_store import ClientSecret
    from web.access.live_sessions import LiveSessions


class SharedStateError(Exception):
    """The shared store (Redis) failed or did not answer in time."""


class RateLimits(Protocol):
    """Per-key token buckets (see :mod:`web.access.rate_limit` for the rule)."""

    @property
    def enabled(self) -> bool: ...

    async def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else seconds until one is free."""
        ...


class SecretStore(Protocol):
    """Client secrets by digest (see :mod:`web.access.client_secret_store`)."""

    async def issue(
        self, owner: Principal, ttl_s: float, session: SessionRequest | None
    ) -> tuple[str, ClientSecret]:
        """A new secret for ``owner`` valid ``ttl_s`` seconds; :class:`ApiError` 429 when
        too many are live."""
        ...

    async def resolve(self, token: str) -> Principal | None:
        """The principal a live secret stands for; None when unknown or expired."""
        ...


class SessionLeases(Protocol):
    """Cluster-wide admission: one expiring lease per open realtime session."""

    @property
    def limit(self) -> int:
        """Sessions open at once across the cluster."""
        ...

    async def acquire(self, lease_id: str) -> bool:
        """Take a lease; False when ``limit`` leases are live."""
        ...

    def release(self, lease_id: str) -> None:
        """Give a lease back (returns at once; the store is told in the background,
        and a lease never given back expires by itself)."""
        ...


class CallRecord(Protocol):
    """Where a WebRTC call is served: the replica and the key that placed it."""

    @property
    def replica(self) -> str: ...

    @property
    def owner(self) -> str | None: ...


class CallDirectory(Protocol):
    """Which replica serves which WebRTC call; hang-ups sent to the one that does."""

    @property
    def replica(self) -> str:
        """This replica's id."""
        ...

    def serve(self, handler: Callable[[str], Awaitable[bool]]) -> None:
        """End calls of this replica that others ask to hang up with ``handler``."""
        ...

    async def register(self, call_id: str, owner: str | None) -> None:
        """Record that this replica serves ``call_id``."""
        ...

    def forget(self, call_id: str) -> None:
        """The call ended here (returns at once)."""
        ...

    async def locate(self, call_id: str) -> CallRecord | None:
        """Who serves ``call_id``; None when no replica does."""
        ...

    async def hang_up(self, record: CallRecord, call_id: str) -> bool:
        """Ask ``record.replica`` to end the call; True once it has ended."""
        ...


class Cluster(Protocol):
    """This replica's part in a cluster: the shared implementations above, and a
    life that publishes this replica's capacity (``live``) while it runs."""

    @property
    def limiter(self) -> RateLimits: ...

    @property
    def secrets(self) -> SecretStore: ...

    @property
    def leases(self) -> SessionLeases | None: ...

    @property
    def calls(self) -> CallDirectory: ...

    async def start(self, live: LiveSessions) -> None:
        """Connect and start publishing ``live``'s capacity; raises
        :class:`SharedStateError` when the store cannot be reached."""
        ...

    async def aclose(self) -> None:
        """Stop, give back this replica's leases and disconnect. Safe to call twice."""
        ...
