"""The Starlette application: routes, static page and the model lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from pipelines.services import Services
from voice.settings import Settings
from web.access import client_secrets, guard
from web.access.shared import Cluster
from web.api_errors import http_exception_response, unexpected_error_response
from web.meetings import links as meeting_links
from web.meetings import routes as meetings
from web.meetings import transcriptions
from web.operations import observability
from web.operations.health import health, ready
from web.realtime import webrtc
from web.realtime.websocket import realtime_endpoint

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html")


def _cluster(settings: Settings) -> Cluster | None:
    """State shared with other replicas when ``VOICE_REDIS_URL`` is set (redis-py is
    imported only then); None = everything in this process, as on one machine."""
    if not settings.redis_url:
        return None
    from web.cluster import redis_cluster

    return redis_cluster(settings)


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """Build the app. Without ``services`` the lifespan loads (and later closes) them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else await Services.start(settings)
        try:
            async with meetings.job_worker(app):
                yield
        finally:
            await webrtc.shutdown(app)
            if owned:
                await app.state.services.aclose()

    routes = [
        Route("/", index),
        Route("/health", health),
        Route("/ready", ready),
        WebSocketRoute("/v1/realtime", realtime_endpoint),
        *webrtc.routes(),
        *client_secrets.routes(),
        *transcriptions.routes(),
        *meetings.routes(),
        *meeting_links.routes(),
        *observability.routes(),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    guard.install(app, settings, _cluster(settings))
    webrtc.serve_remote_hang_ups(app)
    observability.install(app)  # outermost: request ids and metrics cover the guard's refusals
    app.add_exception_handler(HTTPException, http_exception_response)
    app.add_exception_handler(Exception, unexpected_error_response)
    return app
