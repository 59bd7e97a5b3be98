"""Serving the app with uvicorn, with a graceful drain on SIGTERM / SIGINT.

uvicorn's own shutdown closes every WebSocket with 1012 at once. To let running
turns finish, the first signal starts a drain instead: the app refuses new
sessions and uploads (503 JSON, WebSocket ``error`` + 1012), waits up to
``shutdown_grace_s`` for running responses, ends every realtime session
(``error`` event ``server_shutting_down``, close 1012; WebRTC peers closed),
and only then lets uvicorn stop: it stops listening, gives in-flight HTTP
requests up to ``shutdown_grace_s`` more, and runs the lifespan shutdown (the
job queue leaves running meeting jobs to be resumed by the next start). A
second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from voice.settings import Settings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """A :class:`uvicorn.Server` that drains ``app`` (:mod:`web.access.live_sessions`) first."""

    def __init__(self, config: uvicorn.Config, app: Starlette, grace_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await super().serve(sockets)
        finally:
            if self._drain is not None and not self._drain.done():
                self._drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: the first signal drains, a second one exits now."""
        if self._drain is not None or self.should_exit or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_then_exit(), name="drain")

    async def _drain_then_exit(self) -> None:
        log.info("shutting down: draining realtime sessions (grace %.1f s)", self._grace_s)
        try:
            await self._app.state.live_sessions.drain(self._grace_s)
        finally:
            self.should_exit = True


def serve(app: Starlette, settings: Settings, **options: Any) -> None:
    """Run ``app`` on ``settings.host``/``port`` until a signal stops it (blocking).
    ``options`` are passed on to :class:`uvicorn.Config` (e.g. ``log_config``)."""
    grace_s = settings.shutdown_grace_s
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=4 * settings.realtime_max_event_bytes,
        timeout_graceful_shutdown=max(1, math.ceil(grace_s)),
        **options,
    )
    DrainingServer(config, app, grace_s).run()
