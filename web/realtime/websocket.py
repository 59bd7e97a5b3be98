"""``/v1/realtime``: the OpenAI Realtime protocol over a WebSocket.

One :class:`~pipelines.realtime.session.RealtimeSession` per connection, admitted
by the app's :class:`~web.access.live_sessions.LiveSessions` (else refused with an
``error`` event and close code 1013 or 1012). A single writer task sends events
in order; a reader task feeds client messages to the session. The session ends
when the client closes, when it reaches ``max_session_s`` (``error`` event
``session_expired``, close 1008) or when the server ends it (shutdown: ``error``
event ``server_shutting_down``, close 1012); then it is closed and its tasks
awaited before the socket closes.

Failures are never silent: a client event whose handling raises an unexpected
exception (a server bug) is answered with an ``error`` event
(:mod:`web.realtime.client_events`) and the session carries on. A session that cannot start, or whose
reader fails, ends with that ``error`` event and close code 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import replace
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from pipelines.realtime.config import apply_session_update
from pipelines.realtime.live_meeting import MeetingSink
from pipelines.realtime.session import RealtimeSession
from pipelines.services import Services
from web.access.auth import ANONYMOUS, Principal
from web.access.live_sessions import Ending, LiveSessions, Refused, expired, refuse_websocket
from web.meetings.live import meeting_sink
from web.operations.logs import set_log_context
from web.operations.metrics_realtime import SessionObserver
from web.operations.observability import session_observer
from web.realtime.client_events import read_websocket
from web.realtime.sideband import serve_sideband

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 2.0
"""How long the last events (an ending's ``error``) may take to be written."""
CLOSE_INTERNAL_ERROR = 1011
CLOSE_POLICY = 1008
INTERNAL_ERROR = Ending(
    "internal_error",
    "the server failed and ended this session; please reconnect",
    CLOSE_INTERNAL_ERROR,
    status=500,
    error_type="server_error",
)


def create_session(
    services: Services,
    send: Any,
    meeting_sink: MeetingSink | None = None,
    principal: Principal = ANONYMOUS,
    observer: SessionObserver | None = None,
) -> RealtimeSession:
    """A session wired to the server's shared models (and meeting store, when given),
    with the session config a client secret carries applied; ``observer`` sees every
    event in full (metrics), before extensions the client did not ask for are removed."""
    session = RealtimeSession(
        send=send,
        llm=services.llm,
        tools=services.tools,
        transcriber=services.transcriber,
        synthesizer=services.synthesizer,
        config=services.session_config(),
        options=services.realtime_options(),
        embedder=services.embedder,
        meeting_sink=meeting_sink,
        tap=observer.observe if observer is not None else None,
    )
    if principal.session is not None:
        session.config = apply_session_update(session.config, principal.session)
    return session


async def realtime_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    live: LiveSessions = websocket.app.state.live_sessions
    principal: Principal = getattr(websocket.state, "principal", ANONYMOUS)
    offered = websocket.scope.get("subprotocols") or []
    subprotocol = "realtime" if "realtime" in offered else None
    call_id = websocket.query_params.get("call_id")
    if call_id is not None:
        await serve_sideband(websocket, call_id, principal, subprotocol)
        return
    intent = websocket.query_params.get("intent")
    if intent not in (None, "transcription"):
        bad = Ending("invalid_intent", f"unknown intent {intent!r}; the only intent is "
                     "'transcription' (leave it out for a conversation)", CLOSE_POLICY)
        await refuse_websocket(websocket, bad, subprotocol)
        return
    try:
        slot = await live.open("websocket")
    except Refused as refused:
        await refuse_websocket(websocket, refused.ending, subprotocol)
        return
    try:
        await websocket.accept(subprotocol=subprotocol)
        await _serve(websocket, services, principal, slot.attach, intent)
    finally:
        slot.release()


async def _serve(
    websocket: WebSocket,
    services: Services,
    principal: Principal,
    attach: Any,
    intent: str | None = None,
) -> None:
    """Run one session until it ends, then close the socket with the ending's code;
    ``intent`` ``transcription`` starts a transcription session."""
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=2048)
    ended: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()

    async def send(event: dict[str, Any]) -> None:
        await outbox.put(event)

    async def writer() -> None:
        while (event := await outbox.get()) is not None:
            await websocket.send_text(json.dumps(event, separators=(",", ":")))

    def end(ending: Ending) -> None:
        if not ended.done():
            ended.set_result(ending)

    sink = meeting_sink(websocket.app, principal.owner)
    observer = session_observer(websocket.app, "ws")
    session = create_session(services, send, sink, principal, observer)
    if intent == "transcription":
        session.config = replace(session.config, type="transcription")
    set_log_context(session_id=session.id)
    attach(session, end)
    max_s = websocket.app.state.settings.max_session_s
    writer_task = asyncio.create_task(writer(), name=f"ws-writer-{session.id}")
    reader_task = asyncio.create_task(read_websocket(websocket, session), name=f"ws-reader-{session.id}")
    log.info("realtime session %s opened (%s)", session.id, principal.name)
    ending: Ending | None = None
    try:
        await session.start()
        waits: list[asyncio.Future[Any]] = [reader_task, writer_task, ended]
        await asyncio.wait(waits, timeout=max_s, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            ending = ended.result()
        elif not reader_task.done() and not writer_task.done():
            ending = expired(max_s)
        elif reader_task.done() and not reader_task.cancelled() and reader_task.exception():
            ending = INTERNAL_ERROR
    except Exception:
        log.exception("realtime session %s failed", session.id)
        ending = INTERNAL_ERROR
    finally:
        reader_task.cancel()
        try:
            await reader_task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("realtime session %s: reading client events failed", session.id)
        await session.close()
        await _flush(outbox, writer_task, ending)
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                if ending is None:
                    await websocket.close(code=1000)
                else:
                    await websocket.close(code=ending.close_code, reason=ending.code)
        log.info("realtime session %s closed%s", session.id, f" ({ending.code})" if ending else "")
        if observer is not None:
            observer.closed()




async def _flush(
    outbox: asyncio.Queue[dict[str, Any] | None],
    writer_task: asyncio.Task[None],
    ending: Ending | None,
) -> None:
    """Write what is queued (and the ending's ``error`` event) within
    :data:`FLUSH_TIMEOUT_S`, then stop the writer."""
    if ending is not None and not writer_task.done():
        with contextlib.suppress(asyncio.QueueFull):
            outbox.put_nowait(ending.event())
            outbox.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(writer_task), FLUSH_TIMEOUT_S)
    writer_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await writer_task
