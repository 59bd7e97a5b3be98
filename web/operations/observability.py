"""Wires metrics, request ids and the OpenAPI document into an app.

:func:`install` gives the app its own :class:`~web.operations.metrics.Metrics`, the HTTP
middleware (:mod:`web.operations.http_middleware`) and, around the app's lifespan, the
watchers that feed metrics from the shared models and the job queue, and the
periodic heap trim (:mod:`web.operations.memory`).
:func:`routes` are ``GET /metrics`` and ``GET /openapi.json``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from pipelines.meeting.job_events import JobEvents
from pipelines.meeting.jobs import JobRunner, ProgressFn
from pipelines.meeting.store import Job
from web.operations.http_middleware import HttpMetricsMiddleware, RequestIdMiddleware
from web.operations.logs import log_context
from web.operations.memory import trimming
from web.operations.metrics import Metrics, metrics_endpoint, metrics_of
from web.operations.metrics_realtime import SessionObserver
from web.operations.openapi import openapi_endpoint


def routes() -> list[BaseRoute]:
    return [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]


def install(app: Starlette) -> Metrics:
    """Add metrics and request-id middleware to ``app`` (before it starts)."""
    metrics = app.state.metrics = Metrics()
    # add_middleware puts each new one outermost: request ids wrap the metrics.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[Any]:
        async with inner(app) as state:
            services = app.state.services
            services.stt_watchers.append(metrics.stt_done)
            meetings = getattr(app.state, "meetings", None)
            events = getattr(getattr(meetings, "queue", None), "events", None)
            if isinstance(events, JobEvents):
                events.watch(metrics.job_update)
            try:
                async with trimming(app.state.settings.heap_trim_interval_s):
                    yield state
            finally:
                with contextlib.suppress(ValueError):
                    services.stt_watchers.remove(metrics.stt_done)

    app.router.lifespan_context = lifespan
    return metrics


def session_observer(app: Starlette, transport: str) -> SessionObserver | None:
    """A metrics observer for a new realtime session on ``transport`` (``ws``, ``webrtc``)."""
    metrics = metrics_of(app)
    if metrics is None:
        return None
    return SessionObserver(metrics, transport, log_content=app.state.settings.log_content)


def with_job_ids(runner: JobRunner) -> JobRunner:
    """``runner`` with the job's id as log context for everything the job does."""

    def run(job: Job, progress: ProgressFn) -> Coroutine[Any, Any, Mapping[str, bytes]]:
        async def logged() -> Mapping[str, bytes]:
            with log_context(job_id=job.id):
                return await runner(job, progress)

        return logged()

    return run

