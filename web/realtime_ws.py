"""``/v1/realtime``: the OpenAI Realtime protocol over a WebSocket.

One :class:`~pipelines.realtime.session.RealtimeSession` per connection. A single
writer task sends events in order; the reader feeds client messages to the
session. Either side ending (client close, error, server shutdown) closes the
session and waits for its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from pipelines.realtime.live_meeting import MeetingSink
from pipelines.realtime.session import RealtimeSession
from pipelines.services import Services
from web.live_meetings import meeting_sink
from web.logs import set_log_context
from web.observability import observed, session_observer

log = logging.getLogger(__name__)


def create_session(
    services: Services, send: Any, meeting_sink: MeetingSink | None = None
) -> RealtimeSession:
    """A session wired to the server's shared models (and meeting store, when given)."""
    return RealtimeSession(
        send=send,
        llm=services.llm,
        tools=services.tools,
        transcriber=services.transcriber,
        synthesizer=services.synthesizer,
        config=services.session_config(),
        options=services.realtime_options(),
        embedder=services.embedder,
        meeting_sink=meeting_sink,
    )


async def realtime_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=2048)

    async def send(event: dict[str, Any]) -> None:
        await outbox.put(event)

    async def writer() -> None:
        while (event := await outbox.get()) is not None:
            await websocket.send_text(json.dumps(event, separators=(",", ":")))

    observer = session_observer(websocket.app, "ws")
    session = create_session(services, observed(send, observer), meeting_sink(websocket.app))
    set_log_context(session_id=session.id)
    writer_task = asyncio.create_task(writer(), name=f"ws-writer-{session.id}")
    log.info("realtime session %s opened", session.id)
    try:
        await session.start()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await session.handle(raw)
            if writer_task.done():
                break
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
        writer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer_task
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=1000)
        log.info("realtime session %s closed", session.id)
        if observer is not None:
            observer.closed()
