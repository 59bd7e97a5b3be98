"""``/v1/realtime?call_id=…``: a sideband WebSocket attached to a WebRTC call's session.

A server of the caller's (its tools, its moderation) joins the call's session: it
receives every event the caller's data channel receives (the session's view for its
extensions), starting with ``session.created``, and its client events go to the same
session (``session.update``, ``function_call_output``, ``response.create``…). Only the
key that placed the call may attach (any other is answered as if there were no such
call). The sideband ends when its client closes or the call ends; the call goes on
without it. It holds no live-session slot of its own: the call holds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from web.access.auth import Principal
from web.access.live_sessions import Ending, refuse_websocket
from web.realtime.client_events import read_websocket
from web.realtime.rtc_peer import CallRegistry, RtcCall

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
MAX_QUEUED = 2048
"""Events queued for a sideband client that reads too slowly; past this it is closed."""


async def serve_sideband(
    websocket: WebSocket, call_id: str, principal: Principal, subprotocol: str | None
) -> None:
    """Attach ``websocket`` to call ``call_id`` until either ends (or refuse it)."""
    registry: CallRegistry | None = getattr(websocket.app.state, "webrtc_calls", None)
    call = registry.get(call_id) if registry is not None else None
    if call is None or call.session is None or not principal.may_see(call.owner):
        missing = Ending("call_not_found", f"there is no call {call_id!r}", CLOSE_POLICY)
        await refuse_websocket(websocket, missing, subprotocol)
        return
    await websocket.accept(subprotocol=subprotocol)
    await _attached(websocket, call)


async def _attached(websocket: WebSocket, call: RtcCall) -> None:
    session = call.session
    assert session is not None
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=MAX_QUEUED)
    overflow = asyncio.Event()

    def listener(event: dict[str, Any]) -> None:
        try:
            outbox.put_nowait(event)
        except asyncio.QueueFull:
            overflow.set()

    detach = call.attach(listener)
    outbox.put_nowait(session.created_event())

    async def writer() -> None:
        while True:
            event = await outbox.get()
            await websocket.send_text(json.dumps(event, separators=(",", ":")))

    tasks = [
        asyncio.create_task(writer(), name=f"sideband-writer-{call.id}"),
        asyncio.create_task(read_websocket(websocket, session), name=f"sideband-reader-{call.id}"),
        asyncio.create_task(call.ended(), name=f"sideband-call-{call.id}"),
        asyncio.create_task(overflow.wait(), name=f"sideband-overflow-{call.id}"),
    ]
    log.info("sideband attached to call %s (session %s)", call.id, session.id)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        detach()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if websocket.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=1000)
        log.info("sideband of call %s detached", call.id)
