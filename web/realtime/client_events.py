"""Hand one client message to a realtime session, turning a server bug into an ``error`` event.

:meth:`RealtimeSession.handle` answers bad client events with ``error`` events
itself; an unexpected exception (a bug on the server's side) would otherwise
end the transport's reader task and the session with it, silently. Here it is
logged with its traceback and answered with an ``error`` event (``server_error``,
code ``internal_error``, the client's ``event_id``), and the session carries on.
Both transports (WebSocket and WebRTC data channel) use it; :func:`read_websocket`
is the reading loop of the WebSockets (a session's own, and a call's sideband).
"""

from __future__ import annotations

import contextlib
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from pipelines.realtime.protocol import ProtocolError
from pipelines.realtime.session import RealtimeSession

log = logging.getLogger(__name__)


async def handle_client_event(session: RealtimeSession, raw: str | bytes) -> None:
    """``session.handle(raw)``; never raises except on cancellation (safe to cancel)."""
    try:
        await session.handle(raw)
    except Exception:
        log.exception("realtime session %s: handling a client event failed", session.id)
        await session.emitter.error(
            ProtocolError(
                "the server failed to handle this event; the session carries on",
                code="internal_error",
                event_id=_event_id(raw),
                error_type="server_error",
            )
        )


def _event_id(raw: str | bytes) -> str | None:
    """The client's ``event_id`` in a raw message, when it has a readable one."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        value = json.loads(raw).get("event_id")
        return value if isinstance(value, str) else None
    return None


async def read_websocket(websocket: WebSocket, session: RealtimeSession) -> None:
    """Hand a WebSocket's client messages to ``session`` until the client disconnects.
    Safe to cancel."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await handle_client_event(session, raw)
