"""Short-lived client secrets: ``POST /v1/realtime/client_secrets``.

A caller with an API key mints a secret (``ek_…``) to hand to a browser or an
app, which then uses it as its bearer token for ``/v1/realtime`` (WebSocket)
and ``/v1/realtime/calls`` (WebRTC) until it expires; it opens sessions as the
key that minted it, and a session config sent with the request is applied to
every session the secret opens (the client may still change it). The request
and response are those of the ``openai`` SDK's
``client.realtime.client_secrets.create(expires_after=..., session=...)``.

The secrets themselves are kept by a :class:`~web.access.shared.SecretStore`: in
memory (:class:`~web.access.client_secret_store.ClientSecretStore`), or in Redis
when replicas share them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from pipelines.realtime.config import apply_session_update, session_request
from pipelines.realtime.protocol import Ids, ProtocolError
from pipelines.services import Services
from web.access.auth import Principal
from web.access.bodies import read_body
from web.access.shared import SecretStore, SharedStateError
from web.api_errors import ApiError

MAX_BODY_BYTES = 256 * 1024
MIN_TTL_S, MAX_TTL_S = 10, 7200


def _ttl(body: dict[str, Any], default_s: int) -> int:
    after = body.get("expires_after")
    if after is None:
        return default_s
    if not isinstance(after, dict) or after.get("anchor", "created_at") != "created_at":
        raise ApiError(
            400, "invalid_value", "expires_after.anchor must be 'created_at'", param="expires_after"
        )
    seconds = after.get("seconds", default_s)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int)
        or not (MIN_TTL_S <= seconds <= MAX_TTL_S)
    ):
        raise ApiError(
            400,
            "invalid_value",
            f"expires_after.seconds must be a whole number from {MIN_TTL_S} to {MAX_TTL_S}",
            param="expires_after.seconds",
        )
    return seconds


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY_BYTES)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


async def create_client_secret(request: Request) -> Response:
    """``POST /v1/realtime/client_secrets`` (module docstring). Needs an API key: the
    guard lets client secrets through on realtime paths only."""
    try:
        principal: Principal = request.state.principal
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            raise ApiError(503, "not_ready", "models are still loading")
        body = await _body(request)
        ttl_s = _ttl(body, request.app.state.settings.client_secret_ttl_s)
        session = None
        if body.get("session") is not None:
            try:
                session = session_request(body["session"])
                config = apply_session_update(services.session_config(), session)
            except ProtocolError as exc:
                raise ApiError(
                    400, exc.code or "invalid_value", exc.message, param=exc.param
                ) from None
        else:
            config = services.session_config()
        store: SecretStore = request.app.state.client_secrets
        value, entry = await store.issue(principal, ttl_s, session)
    except ApiError as exc:
        return exc.response()
    except SharedStateError:
        return ApiError(
            503, "shared_state_unavailable", "the secret could not be stored; retry in a moment"
        ).response()
    expires_at = int(entry.expires_at)
    effective = config.to_protocol(Ids().new("sess"), services.tools.realtime_tools())
    effective["expires_at"] = expires_at
    return JSONResponse({"value": value, "expires_at": expires_at, "session": effective})


def routes() -> list[BaseRoute]:
    """The HTTP routes of this feature, mounted by :func:`web.app.create_app`."""
    return [Route("/v1/realtime/client_secrets", create_client_secret, methods=["POST"])]
