"""The realtime sessions a server has open, over WebSocket and WebRTC together.

:meth:`LiveSessions.admit` hands out a :class:`Slot` while fewer sessions than
the server's capacity (:func:`session_capacity`: ``realtime_sessions_per_core``
per core of the CPU budget, at most ``max_realtime_sessions``) are open and the
server is not draining; otherwise it raises :class:`Refused`. Transports call
:meth:`LiveSessions.open`, which also takes a cluster-wide lease when replicas
share a session cap (:class:`~web.access.shared.SessionLeases`). A transport attaches its session and an ``end``
callback to the slot and releases it when the session is over.
:meth:`LiveSessions.drain` (graceful shutdown) refuses new sessions, waits up
to a grace period for running responses to finish, then asks every transport
to end its session with :data:`SHUTDOWN` and waits for them to go.

Endings and refusals reach clients as the protocol's ``error`` event followed
by a WebSocket close code (:func:`refuse_websocket`) or an HTTP error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from pipelines.realtime.protocol import Ids, ProtocolError, error_event
from pipelines.realtime.session import RealtimeSession
from voice.cpu_budget import available_cores
from voice.settings import Settings
from web.access.shared import SessionLeases, SharedStateError

log = logging.getLogger(__name__)

CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY = 1008
CLOSE_UNAUTHORIZED = 4001
"""Close codes: 4001 mirrors HTTP 401 (missing, wrong or expired key); 1008 a
session limit (maximum length); 1013 too many sessions or requests; 1012 the
server is restarting."""


@dataclass(frozen=True)
class Ending:
    """Why the server ends (or refuses) a session: the ``error`` event's ``code`` and
    ``message``, the WebSocket close code, and the HTTP status for refusals."""

    code: str
    message: str
    close_code: int
    status: int = 400
    error_type: str = "invalid_request_error"
    retry_after_s: float | None = None

    def response(self) -> JSONResponse:
        """The HTTP refusal: OpenAI-shaped JSON with ``status``, and ``Retry-After`` if set."""
        body = {"type": self.error_type, "code": self.code, "message": self.message, "param": None}
        headers = (
            {"Retry-After": str(math.ceil(self.retry_after_s))} if self.retry_after_s else None
        )
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)

    def event(self) -> dict[str, Any]:
        """The protocol's ``error`` server event."""
        err = ProtocolError(self.message, code=self.code, error_type=self.error_type)
        return error_event(Ids(), err)


SHUTDOWN = Ending(
    "server_shutting_down",
    "the server is shutting down; reconnect in a moment",
    CLOSE_SERVICE_RESTART,
    status=503,
    error_type="server_error",
    retry_after_s=5,
)


def expired(max_s: float) -> Ending:
    return Ending(
        "session_expired",
        f"the session reached its maximum length of {max_s:g} seconds; start a new one",
        CLOSE_POLICY,
    )


def session_capacity(settings: Settings) -> int:
    """Realtime sessions the machine serves at once at the expected latency:
    ``realtime_sessions_per_core`` × the cores of the CPU budget (``cpu_cores``, else
    the process's), at least 1 and at most ``max_realtime_sessions``."""
    cores = settings.cpu_cores or available_cores()
    capacity = int(cores * settings.realtime_sessions_per_core)
    return max(1, min(settings.max_realtime_sessions, capacity))


class Refused(Exception):
    """A new session cannot be admitted; ``ending`` says why."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.message)
        self.ending = ending


class Slot:
    """One admitted session. Attach the session and its ``end`` callback, release once over."""

    def __init__(self, owner: LiveSessions, transport: str) -> None:
        self.id = secrets.token_hex(8)
        """Names the slot's cluster lease."""
        self.transport = transport
        self.session: RealtimeSession | None = None
        self._owner = owner
        self._end: Callable[[Ending], None] | None = None
        self._ending: Ending | None = None

    def attach(self, session: RealtimeSession, end: Callable[[Ending], None]) -> None:
        """``end`` asks the transport to send the ending's event and close; it must
        return at once. An ending asked for before the session was attached applies now."""
        self.session, self._end = session, end
        if self._ending is not None:
            end(self._ending)

    def end(self, ending: Ending) -> None:
        self._ending = self._ending or ending
        if self._end is not None:
            self._end(ending)

    def release(self) -> None:
        """The session is over (safe to call twice)."""
        self._owner._release(self)


class LiveSessions:
    """Admission and shutdown of realtime sessions; use from the event loop only."""

    def __init__(self, limit: int, leases: SessionLeases | None = None) -> None:
        self.limit = limit
        """Sessions admitted at once (see :func:`session_capacity`)."""
        self.leases = leases
        """The cluster-wide cap, when replicas share one."""
        self.draining = False
        self._slots: set[Slot] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def full(self) -> bool:
        """This server admits no new session now (at capacity or draining)."""
        return self.draining or len(self._slots) >= self.limit

    def admit(self, transport: str) -> Slot:
        """A slot on this server for a new session; raises :class:`Refused` when
        draining or full. Takes no cluster lease: transports call :meth:`open`."""
        if self.draining:
            raise Refused(SHUTDOWN)
        if len(self._slots) >= self.limit:
            raise Refused(
                _at_capacity(
                    f"the server is at capacity: it already serves its maximum of "
                    f"{self.limit} realtime sessions at once; try again later"
                )
            )
        slot = Slot(self, transport)
        self._slots.add(slot)
        self._empty.clear()
        return slot

    async def open(self, transport: str) -> Slot:
        """:meth:`admit`, then a cluster lease when replicas share a cap; raises
        :class:`Refused` when either is full. A shared store that fails is logged and
        the session admitted on this server's capacity alone (fail open). Safe to
        cancel (the slot is given back)."""
        slot = self.admit(transport)
        if self.leases is None:
            return slot
        try:
            leased = await self.leases.acquire(slot.id)
        except SharedStateError as exc:
            log.warning("session lease not checked (%s); admitted on local capacity", exc)
            leased = True
        except BaseException:
            self._discard(slot)
            raise
        if not leased:
            self._discard(slot)
            raise Refused(
                _at_capacity(
                    f"the service is at capacity: its servers already serve their maximum "
                    f"of {self.leases.limit} realtime sessions at once; try again later"
                )
            )
        return slot

    def _release(self, slot: Slot) -> None:
        if slot in self._slots and self.leases is not None:
            self.leases.release(slot.id)
        self._discard(slot)

    def _discard(self, slot: Slot) -> None:
        self._slots.discard(slot)
        if not self._slots:
            self._empty.set()

    def responding(self) -> int:
        """Sessions with a response running now."""
        return sum(1 for s in self._slots if s.session is not None and s.session.responding)

    async def drain(self, grace_s: float, close_timeout_s: float = 10.0) -> None:
        """Refuse new sessions; wait up to ``grace_s`` for running responses to finish;
        end every session with :data:`SHUTDOWN` and wait up to ``close_timeout_s`` for
        them to close. Safe to call twice and safe to cancel."""
        first = not self.draining
        self.draining = True
        if first:
            log.info(
                "draining: %d realtime session(s), %d responding; grace %.1f s",
                len(self._slots),
                self.responding(),
                grace_s,
            )
        busy = [s.session for s in self._slots if s.session is not None and s.session.responding]
        if busy and grace_s > 0:
            waiters = [asyncio.create_task(s.responses_finished()) for s in busy]
            try:
                await asyncio.wait(waiters, timeout=grace_s)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        for slot in list(self._slots):
            slot.end(SHUTDOWN)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), close_timeout_s)
        if self._slots:
            log.warning("%d realtime session(s) did not close in time", len(self._slots))


def _at_capacity(message: str) -> Ending:
    return Ending(
        "session_limit_reached",
        message,
        CLOSE_TRY_AGAIN_LATER,
        status=429,
        error_type="rate_limit_error",
        retry_after_s=5,
    )


async def refuse_websocket(websocket: WebSocket, ending: Ending, subprotocol: str | None) -> None:
    """Accept the handshake, send the ending's ``error`` event and close with its code."""
    await websocket.accept(subprotocol=subprotocol)
    await websocket.send_text(json.dumps(ending.event(), separators=(",", ":")))
    await websocket.close(code=ending.close_code, reason=ending.code[:120])
