"""Which replica owns which WebRTC call, and hang-ups sent to another replica.

A call's media and session live on the replica that answered its offer. That
replica records ``call id -> (replica, owner)`` in Redis for the call's life
(:meth:`RedisCallDirectory.register`). A hang-up that reaches another replica
finds the owner there and publishes the request on the owner's channel
(``voice:calls:<replica>``); the owner's listener ends the call with its local
handler and publishes the outcome on the reply channel the request named. The
requester waits for it at most :data:`HANG_UP_TIMEOUT_S`. A request that no
replica receives means the owner died: its stale record is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from web.access import shared
from web.access.shared import SharedStateError
from web.cluster.connection import PREFIX, shared_errors

log = logging.getLogger(__name__)

HANG_UP_TIMEOUT_S = 15.0
"""How long a replica waits for the owner to confirm a hang-up (its peer closes
within a few seconds)."""
POLL_S = 1.0
"""The listener's wait for one message (below the client's read timeout)."""

HangUp = Callable[[str], Awaitable[bool]]
"""Ends a call of this replica by id; False when it has no such call."""


@dataclass(frozen=True)
class CallRecord:
    replica: str
    owner: str | None


def _key(call_id: str) -> str:
    return f"{PREFIX}call:{call_id}"


def channel(replica: str) -> str:
    return f"{PREFIX}calls:{replica}"


class RedisCallDirectory:
    """The calls of every replica, as seen from ``replica``."""

    def __init__(self, redis: Any, replica: str, ttl_s: float) -> None:
        self._redis = redis
        self.replica = replica
        self._ttl_s = max(1, round(ttl_s))
        self._handler: HangUp | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    def serve(self, handler: HangUp) -> None:
        """Use ``handler`` for hang-ups other replicas send here (set before :meth:`run`)."""
        self._handler = handler

    async def register(self, call_id: str, owner: str | None) -> None:
        """Record that this replica serves ``call_id`` (for at most ``ttl_s``). Raises
        :class:`SharedStateError`."""
        record = json.dumps({"replica": self.replica, "owner": owner})
        with shared_errors("call registration"):
            await self._redis.set(_key(call_id), record, ex=self._ttl_s)

    def forget(self, call_id: str) -> None:
        """Remove the record in the background (the call ended here)."""
        self._spawn(self._delete(call_id))

    async def locate(self, call_id: str) -> CallRecord | None:
        """Who serves ``call_id``; None when no replica does. Raises :class:`SharedStateError`."""
        with shared_errors("call lookup"):
            raw = await self._redis.get(_key(call_id))
        if raw is None:
            return None
        data = json.loads(raw)
        return CallRecord(data["replica"], data["owner"])

    async def hang_up(self, record: shared.CallRecord, call_id: str) -> bool:
        """Ask the replica in ``record`` to end ``call_id`` and wait for its answer:
        True once ended, False when it has no such call (or it is gone, or did not
        answer in :data:`HANG_UP_TIMEOUT_S`). Raises :class:`SharedStateError`. Safe to
        cancel."""
        reply = f"{PREFIX}reply:{secrets.token_hex(12)}"
        request = json.dumps({"call_id": call_id, "reply": reply})
        with shared_errors("remote hang-up"):
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(reply)
                if await self._redis.publish(channel(record.replica), request) == 0:
                    log.warning("call %s: its replica %s is gone", call_id, record.replica)
                    await self._delete(call_id)
                    return False
                answer = await _next_message(pubsub, HANG_UP_TIMEOUT_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
        if answer is None:
            log.warning("call %s: replica %s did not confirm the hang-up", call_id, record.replica)
            return False
        return bool(json.loads(answer).get("ended"))

    async def run(self) -> None:
        """Serve hang-ups other replicas send to this one until :meth:`stop` (it then
        returns within :data:`POLL_S`); a lost connection is retried every
        :data:`POLL_S`. Stop it rather than cancel it: a pub/sub connection cancelled
        mid-read may never close."""
        while not self._stopping.is_set():
            try:
                await self._listen()
            except Exception as exc:
                log.warning("call directory: listener lost Redis (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), POLL_S)

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stopping.set()

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(channel(self.replica))
            while not self._stopping.is_set():
                data = await _next_message(pubsub, POLL_S)
                if data is not None:
                    self._spawn(self._answer(json.loads(data)))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _answer(self, request: dict[str, Any]) -> None:
        ended = False
        if self._handler is not None:
            try:
                ended = await self._handler(str(request["call_id"]))
            except Exception:
                log.exception("remote hang-up of call %s failed", request.get("call_id"))
        with contextlib.suppress(SharedStateError), shared_errors("hang-up reply"):
            await self._redis.publish(str(request["reply"]), json.dumps({"ended": ended}))

    async def _delete(self, call_id: str) -> None:
        with contextlib.suppress(Exception):
            await self._redis.delete(_key(call_id))

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait for answers and removals in flight (bounded by the client's timeouts)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _next_message(pubsub: Any, timeout_s: float) -> bytes | None:
    """The next published message's data within ``timeout_s``; None if none came."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := deadline - loop.time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, POLL_S))
        if message is not None and message.get("type") == "message":
            data: bytes = message["data"]
            return data
    return None
