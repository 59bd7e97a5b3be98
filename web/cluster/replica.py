"""One replica's part in a cluster sharing Redis: the shared implementations, a
heartbeat and the hang-up listener.

The heartbeat runs every third of ``session_lease_s``: it renews this replica's
session leases and publishes its capacity as ``voice:replica:<id>`` (JSON:
``capacity``, ``sessions``, ``full``, ``draining``; expiring after
``session_lease_s``), which operators and tools can read to see every replica's
load. A heartbeat that fails is logged once per outage and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket

from voice.settings import Settings
from web.access.live_sessions import LiveSessions
from web.access.shared import SharedStateError
from web.cluster.calls import POLL_S, RedisCallDirectory
from web.cluster.connection import PREFIX, connect, shared_errors
from web.cluster.leases import RedisSessionLeases
from web.cluster.rate_limit import RedisRateLimiter
from web.cluster.secret_store import RedisSecretStore

log = logging.getLogger(__name__)

CALL_RECORD_MARGIN_S = 60.0
"""A call's record outlives the longest session by this much."""


def replica_key(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


class RedisCluster:
    """The :class:`~web.access.shared.Cluster` of ``settings.redis_url``."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url, "RedisCluster needs VOICE_REDIS_URL"
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        """This replica's id in keys and channels (unique per process start)."""
        self._redis = connect(settings.redis_url)
        self._lease_s = settings.session_lease_s
        self.limiter = RedisRateLimiter(
            self._redis, settings.rate_limit_per_minute, settings.rate_limit_burst
        )
        self.secrets = RedisSecretStore(self._redis)
        self.leases: RedisSessionLeases | None = (
            RedisSessionLeases(
                self._redis, self.replica, settings.cluster_max_sessions, settings.session_lease_s
            )
            if settings.cluster_max_sessions
            else None
        )
        self.calls = RedisCallDirectory(
            self._redis, self.replica, settings.max_session_s + CALL_RECORD_MARGIN_S
        )
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self, live: LiveSessions) -> None:
        """Check Redis answers, then start the heartbeat and the hang-up listener.
        Raises :class:`SharedStateError` when Redis cannot be reached."""
        with shared_errors("connection"):
            await self._redis.ping()
        await self._beat(live)
        self._heartbeat_task = asyncio.create_task(self._heartbeat(live), name="cluster-heartbeat")
        self._listener = asyncio.create_task(self.calls.run(), name="cluster-hang-ups")
        log.info("cluster: replica %s sharing state in Redis", self.replica)

    async def _beat(self, live: LiveSessions) -> None:
        if self.leases is not None:
            await self.leases.renew()
        record = {
            "capacity": live.limit,
            "sessions": len(live),
            "full": live.full,
            "draining": live.draining,
        }
        with shared_errors("capacity record"):
            await self._redis.set(
                replica_key(self.replica), json.dumps(record), px=round(self._lease_s * 1000)
            )

    async def _heartbeat(self, live: LiveSessions) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._beat(live)
            except SharedStateError as exc:
                if not failing:
                    log.warning("cluster heartbeat failed (%s); retrying", exc)
                failing = True
            else:
                if failing:
                    log.info("cluster heartbeat restored")
                failing = False

    async def stop_tasks(self) -> None:
        """Stop the heartbeat and the hang-up listener (leases then lapse unless
        given back). Safe to call twice."""
        heartbeat, self._heartbeat_task = self._heartbeat_task, None
        listener, self._listener = self._listener, None
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        if listener is not None:
            self.calls.stop()
            try:
                await asyncio.wait_for(asyncio.shield(listener), 3 * POLL_S)
            except TimeoutError:
                log.warning("cluster: the hang-up listener did not stop in time")

    async def aclose(self) -> None:
        """Stop the tasks, give back leases, remove the capacity record, disconnect.
        Safe to call twice."""
        await self.stop_tasks()
        await self.calls.aclose()
        if self.leases is not None:
            await self.leases.aclose()
        with contextlib.suppress(Exception):
            await self._redis.delete(replica_key(self.replica))
        with contextlib.suppress(Exception):
            await self._redis.aclose()
