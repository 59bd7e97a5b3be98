"""The gate in front of every route: authentication, rate limits, draining.

An ASGI middleware. Open paths (health, readiness, metrics, the OpenAPI document,
the pages and their static files) pass untouched. Every other request must carry a valid token
(:mod:`web.access.auth`; a client secret only opens realtime sessions; a signed read
link, :mod:`web.access.read_links`, only reads one meeting's streams and files), passes the
caller's rate limit, and, once the server is draining, new uploads, secrets and
sessions are refused. The caller's :class:`~web.access.auth.Principal` is put in
``request.state.principal`` for the routes.

HTTP refusals are OpenAI-shaped JSON: 401 with ``WWW-Authenticate: Bearer``,
429 and 503 with ``Retry-After``. A refused WebSocket gets the protocol's
``error`` event and then a close code (:mod:`web.access.live_sessions`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from voice.settings import Settings
from web.access import origins
from web.access.auth import ANONYMOUS, KeyRing, Principal, bearer_token, subprotocol_token
from web.access.client_secret_store import ClientSecretStore
from web.access.live_sessions import (
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    SHUTDOWN,
    Ending,
    LiveSessions,
    refuse_websocket,
    session_capacity,
)
from web.access.rate_limit import RateLimiter
from web.access.read_links import LINK_PARAM, ReadLinks, read_path_meeting
from web.access.shared import Cluster, RateLimits, SecretStore, SharedStateError
from web.api_errors import error_response

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset(
    {"/", "/health", "/ready", "/metrics", "/openapi.json", "/meetings", "/favicon.ico"}
)
OPEN_PREFIXES = ("/static/",)
REALTIME_WS = "/v1/realtime"
CALLS = "/v1/realtime/calls"
STARTS_WORK = frozenset(
    {CALLS, "/v1/meetings", "/v1/audio/transcriptions", "/v1/realtime/client_secrets"}
)
"""POST paths refused (503) while the server drains."""
UNAVAILABLE = Ending(
    "shared_state_unavailable",
    "the server cannot reach its shared state store; retry in a moment",
    CLOSE_TRY_AGAIN_LATER,
    status=503,
    error_type="server_error",
    retry_after_s=5,
)
"""A client secret could not be looked up because the shared store (Redis) failed."""


class AuthFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Guard:
    """ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing,
        secrets: SecretStore,
        limiter: RateLimits,
        live: LiveSessions,
        links: ReadLinks,
    ) -> None:
        self.app = app
        self.keys = keys
        self.secrets = secrets
        self.limiter = limiter
        self.live = live
        self.links = links

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        kind = scope["type"]
        if (
            kind not in ("http", "websocket")
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if kind == "websocket":
            await self._websocket(scope, receive, send, headers)
            return
        refusal = await self._http_refusal(scope, path, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _http_refusal(
        self, scope: Scope, path: str, headers: Headers
    ) -> JSONResponse | None:
        try:
            token = bearer_token(headers)
            if token is None and self.keys.enabled:
                principal = self.link_principal(scope, path)
            else:
                principal = await self.principal(token, realtime=path.startswith(CALLS))
        except AuthFailure as exc:
            response = error_response(401, exc.code, exc.message)
            response.headers["WWW-Authenticate"] = 'Bearer realm="voice-agent"'
            return response
        except SharedStateError:
            return UNAVAILABLE.response()
        if self.live.draining and scope.get("method") == "POST" and path in STARTS_WORK:
            return SHUTDOWN.response()
        wait_s = await self._wait_s(principal)
        if wait_s > 0:
            response = error_response(
                429, "rate_limit_exceeded", f"too many requests; retry in {math.ceil(wait_s)} s"
            )
            return _with_retry(response, wait_s)
        scope.setdefault("state", {})["principal"] = principal
        return None

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers
    ) -> None:
        offered = list(scope.get("subprotocols") or [])
        subprotocol = "realtime" if "realtime" in offered else None
        token = bearer_token(headers) or subprotocol_token(offered)
        ending: Ending | None = None
        try:
            principal = await self.principal(token, realtime=scope.get("path") == REALTIME_WS)
        except AuthFailure as exc:
            ending = Ending(exc.code, exc.message, CLOSE_UNAUTHORIZED, status=401)
        except SharedStateError:
            ending = UNAVAILABLE
        else:
            wait_s = await self._wait_s(principal)
            if wait_s > 0:
                ending = Ending(
                    "rate_limit_exceeded",
                    f"too many requests; retry in {math.ceil(wait_s)} s",
                    CLOSE_TRY_AGAIN_LATER,
                    status=429,
                    error_type="rate_limit_error",
                )
            else:
                scope.setdefault("state", {})["principal"] = principal
        if ending is not None:
            await refuse_websocket(WebSocket(scope, receive, send), ending, subprotocol)
            return
        await self.app(scope, receive, send)

    async def _wait_s(self, principal: Principal) -> float:
        """Seconds the caller must wait (0 = go on); a shared store that fails lets the
        request through (rate limits fail open, logged)."""
        try:
            return await self.limiter.acquire(principal.owner or "anonymous")
        except SharedStateError as exc:
            log.warning("rate limit not checked (%s); request let through", exc)
            return 0.0

    def link_principal(self, scope: Scope, path: str) -> Principal:
        """Who a read link in the query names, for the paths it opens; without a
        link, the missing-key refusal. Raises :class:`AuthFailure`."""
        meeting_id = read_path_meeting(scope.get("method", ""), path)
        link = QueryParams(scope.get("query_string", b"")).get(LINK_PARAM)
        if meeting_id is None or link is None:
            return self.keys_principal(None)
        owner = self.links.verify(link, meeting_id)
        if not owner:  # anonymous links (signed with keys off) never open anything here
            raise AuthFailure("invalid_link", "the link is invalid or has expired; reload the page")
        return Principal(owner=owner, name=f"{owner} (read link)")

    async def principal(self, token: str | None, *, realtime: bool) -> Principal:
        """Who ``token`` is; raises :class:`AuthFailure`, and :class:`SharedStateError`
        when a client secret cannot be looked up. ``realtime``: client secrets are
        accepted (they only open realtime sessions)."""
        if token is not None and token.startswith("ek_"):
            found = await self.secrets.resolve(token)
            if found is not None and realtime:
                return found
            if found is not None:
                raise AuthFailure(
                    "invalid_api_key",
                    "a client secret only opens realtime sessions; use an API key",
                )
        return self.keys_principal(token)

    def keys_principal(self, token: str | None) -> Principal:
        """Who ``token`` is among the API keys; raises :class:`AuthFailure`."""
        if not self.keys.enabled:
            return ANONYMOUS
        if token is None:
            raise AuthFailure(
                "missing_api_key",
                "no API key: send it as 'Authorization: Bearer <key>' "
                "(or, on the WebSocket, as the subprotocol openai-insecure-api-key.<key>)",
            )
        principal = self.keys.lookup(token)
        if principal is None:
            what = (
                "client secret is invalid or has expired"
                if token.startswith("ek_")
                else "API key is not valid"
            )
            raise AuthFailure("invalid_api_key", f"the {what}")
        return principal


def _with_retry(response: JSONResponse, wait_s: float) -> JSONResponse:
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


def install(app: Starlette, settings: Settings, cluster: Cluster | None = None) -> None:
    """Put the guard, and in front of it the origin/host check and CORS
    (:mod:`web.access.origins`), before ``app`` (call before it starts); its shared state on
    ``app.state`` (``live_sessions``, ``client_secrets``, ``keys``, ``read_links``). Reads the keys file
    (blocking). Around the app's lifespan: starts ``cluster`` (state shared with other
    replicas; None = all in this process), logs whether authentication is on, and at
    shutdown drains realtime sessions (:meth:`LiveSessions.drain`) before the app
    closes its models, then closes ``cluster``."""
    keys = KeyRing.from_settings(settings)
    leases = cluster.leases if cluster is not None else None
    live = app.state.live_sessions = LiveSessions(session_capacity(settings), leases)
    secrets: SecretStore = cluster.secrets if cluster is not None else ClientSecretStore()
    app.state.client_secrets = secrets
    app.state.cluster = cluster
    app.state.keys = keys
    links = app.state.read_links = ReadLinks()
    limiter: RateLimits = (
        cluster.limiter
        if cluster is not None
        else RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    )
    app.add_middleware(
        Guard, keys=keys, secrets=secrets, limiter=limiter, live=live, links=links
    )
    origins.install(app, settings, auth_on=keys.enabled)  # runs before the guard
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        if cluster is not None:
            await cluster.start(live)
        try:
            async with inner(app) as state:
                if keys.enabled:
                    log.info("authentication on: %d API key(s)", len(keys))
                else:
                    log.warning("authentication off: no API keys configured; serving loopback only")
                try:
                    yield state
                finally:
                    await live.drain(settings.shutdown_grace_s)
        finally:
            if cluster is not None:
                await cluster.aclose()

    app.router.lifespan_context = lifespan
