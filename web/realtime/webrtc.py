"""``/v1/realtime/calls``: start a realtime session over WebRTC.

``POST /v1/realtime/calls`` takes an SDP offer, either as the raw body
(``application/sdp``, what browsers send) or as a multipart form with an
``sdp`` part and an optional ``session`` part (JSON session config, applied
like ``session.update``; what the openai SDK's ``realtime.calls.create`` sends).
It answers 201 with the SDP answer and a ``Location`` naming the call.
``POST /v1/realtime/calls/{call_id}/hangup`` ends a call. Errors are JSON.

When replicas share state (``VOICE_REDIS_URL``), each call is also recorded in the
cluster's :class:`~web.access.shared.CallDirectory`, so a hang-up that reaches
another replica is passed to the one serving the call.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipelines.realtime.config import SessionRequest, apply_session_update, session_request
from pipelines.realtime.emitter import Send
from pipelines.realtime.protocol import ProtocolError
from pipelines.realtime.session import RealtimeSession
from pipelines.services import Services
from web.access.auth import ANONYMOUS, Principal
from web.access.bodies import read_body, replay
from web.access.live_sessions import Refused, expired
from web.access.shared import CallDirectory, Cluster, SharedStateError
from web.api_errors import ApiError
from web.meetings.live import meeting_sink
from web.operations.logs import set_log_context
from web.operations.observability import session_observer
from web.realtime.rtc_ice import IceOptions
from web.realtime.rtc_peer import CallRegistry, OfferError, RtcCall
from web.realtime.websocket import create_session

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
"""Largest offer request accepted (an SDP offer is a few KiB)."""


def routes() -> list[BaseRoute]:
    """The HTTP routes of this feature, mounted by :func:`web.app.create_app`."""
    return [
        Route("/v1/realtime/calls", create_call, methods=["POST"]),
        Route("/v1/realtime/calls/{call_id}/hangup", hang_up, methods=["POST"]),
    ]


def calls(app: Starlette) -> CallRegistry:
    """The app's call registry (created on first use)."""
    registry: CallRegistry | None = getattr(app.state, "webrtc_calls", None)
    if registry is None:
        registry = app.state.webrtc_calls = CallRegistry()
    return registry


def directory(app: Starlette) -> CallDirectory | None:
    """The cluster's call directory; None when calls are known to this process only."""
    cluster: Cluster | None = getattr(app.state, "cluster", None)
    return cluster.calls if cluster is not None else None


def serve_remote_hang_ups(app: Starlette) -> None:
    """Let other replicas end this replica's calls (no-op without a cluster)."""
    shared = directory(app)
    if shared is not None:
        shared.serve(lambda call_id: calls(app).hang_up(call_id))


async def shutdown(app: Starlette) -> None:
    """End every WebRTC call of ``app`` and wait for them (called by the app lifespan)."""
    registry: CallRegistry | None = getattr(app.state, "webrtc_calls", None)
    if registry is not None:
        await registry.close_all()


async def create_call(request: Request) -> Response:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return error(503, "the server is still loading its models", "server_not_ready")
    try:
        offer, session_update = await read_offer(request)
    except ApiError as exc:
        return exc.response()
    except OfferError as exc:
        return error(400, str(exc), "invalid_offer")
    except ProtocolError as exc:
        return error(400, exc.message, exc.code or "invalid_session", param=exc.param)
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    try:
        slot = await request.app.state.live_sessions.open("webrtc")
    except Refused as refused:
        return refused.ending.response()

    def make_session(send: Send) -> RealtimeSession:
        sink = meeting_sink(request.app, principal.owner)
        observer = session_observer(request.app, "webrtc")
        session = create_session(services, send, sink, principal, observer)
        set_log_context(session_id=session.id)
        if session_update is not None:
            session.config = apply_session_update(session.config, session_update)
        slot.attach(session, lambda ending: call.end(ending.event()))
        return session

    settings = request.app.state.settings
    call = RtcCall(
        IceOptions.from_settings(settings),
        owner=principal.owner,
        max_s=settings.max_session_s,
        expired_event=expired(settings.max_session_s).event(),
    )
    shared = directory(request.app)

    def on_end() -> None:
        slot.release()
        if shared is not None:
            shared.forget(call.id)

    try:
        answer = await calls(request.app).open(call, offer, make_session, on_end=on_end)
    except OfferError as exc:
        return error(400, str(exc), "invalid_offer")
    except ProtocolError as exc:
        return error(400, exc.message, exc.code or "invalid_session", param=exc.param)
    if shared is not None:
        try:
            await shared.register(call.id, principal.owner)
        except SharedStateError as exc:
            log.warning("call %s not shared (%s): only this server can hang it up", call.id, exc)
    log.info("call %s answered (session %s)", call.id, call.session.id if call.session else "-")
    return Response(
        answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/v1/realtime/calls/{call.id}"},
    )


async def hang_up(request: Request) -> Response:
    """End a call, here or (in a cluster) on the replica serving it; a call placed
    with another key is answered 404, like a missing one."""
    call_id = request.path_params["call_id"]
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    call = calls(request.app).get(call_id)
    if call is not None:
        ended = principal.may_see(call.owner) and await calls(request.app).hang_up(call_id)
    else:
        try:
            ended = await _hang_up_elsewhere(request.app, principal, call_id)
        except SharedStateError:
            return error(503, "the call directory cannot be reached; retry", "shared_state_unavailable")
    if not ended:
        return error(404, f"there is no call {call_id!r}", "call_not_found")
    return JSONResponse({"id": call_id, "status": "closed"})


async def _hang_up_elsewhere(app: Starlette, principal: Principal, call_id: str) -> bool:
    """End ``call_id`` on the replica serving it; False when none does (or not for
    ``principal``). Raises :class:`SharedStateError`."""
    shared = directory(app)
    record = await shared.locate(call_id) if shared is not None else None
    if shared is None or record is None or record.replica == shared.replica:
        return False
    if not principal.may_see(record.owner):
        return False
    return await shared.hang_up(record, call_id)


async def read_offer(request: Request) -> tuple[str, SessionRequest | None]:
    """The offer SDP and, if sent, the session config. Raises :class:`OfferError`, and
    :class:`ApiError` 413 as soon as the body (declared or chunked) passes
    :data:`MAX_BODY_BYTES`."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/sdp", "text/plain", ""):
        raise OfferError(
            f"send the offer as application/sdp or multipart/form-data, not {content_type!r}"
        )
    body = await read_body(request, MAX_BODY_BYTES)
    session_raw: str | None = None
    if content_type == "multipart/form-data":
        parsed = Request(request.scope, replay(body))
        async with parsed.form(max_files=2, max_fields=4, max_part_size=MAX_BODY_BYTES) as form:
            sdp = await _part_text(form.get("sdp"))
            session_raw = await _part_text(form.get("session"))
        if sdp is None:
            raise OfferError("the form has no 'sdp' part")
    else:
        sdp = body.decode("utf-8", errors="replace")
    check_sdp(sdp)
    return sdp, parse_session(session_raw) if session_raw else None


async def _part_text(part: str | UploadFile | None) -> str | None:
    if part is None or isinstance(part, str):
        return part
    return (await part.read()).decode("utf-8", errors="replace")


def check_sdp(sdp: str) -> None:
    """Cheap checks before the peer connection parses it: an SDP offer with audio."""
    lines = sdp.strip().splitlines()
    if not lines or lines[0].strip() != "v=0":
        raise OfferError("the body is not an SDP offer (it must start with 'v=0')")
    if not any(line.startswith("m=audio ") for line in lines):
        raise OfferError("the SDP offer has no audio section (m=audio)")


def parse_session(raw: str) -> SessionRequest:
    """The ``session`` part as a session config; raises :class:`ProtocolError`."""
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise ProtocolError("the session part is not valid JSON", param="session") from None
    return session_request(data)


def error(status: int, message: str, code: str, *, param: str | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    body = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
    return JSONResponse({"error": body}, status_code=status)
