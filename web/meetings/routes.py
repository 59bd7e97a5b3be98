"""Meeting jobs over HTTP: upload, list, inspect, follow (SSE), cancel, delete.

Results (transcript, summary, audio, speaker names) are served by
:mod:`web.meetings.results`. :func:`job_worker` is entered by the app's lifespan:
it opens the job store under ``data_dir`` and runs the job queue while the
server is up. Errors are JSON ``{"error": {"type", "code", "message", "param"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pipelines.meeting.blob_store import blob_store
from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.jobs import JobQueue, running
from pipelines.meeting.known_speakers import write_references
from pipelines.meeting.local_queue import LocalJobQueue
from pipelines.meeting.meeting_jobs import meeting_options, meeting_runner
from pipelines.meeting.spool_recovery import recover_spools
from pipelines.meeting.store import JobStore, TooManyJobs, new_job_id, open_job_store
from pipelines.meeting.summarize import SummaryOptions
from voice.audio.decode import AudioDecodeError
from web.api_errors import ApiError
from web.meetings import results as meeting_results
from web.meetings.context import MeetingContext, api, context, job_json, job_or_404, principal
from web.meetings.known_speakers_form import known_speakers
from web.meetings.languages import check_language
from web.meetings.upload_checks import (
    decode_error,
    display_filename,
    inspect_upload,
    media_type,
)
from web.meetings.uploads import ReceivedForm, receive_upload
from web.operations.observability import with_job_ids

PAGE = Path(__file__).parent.parent / "static" / "meetings.html"
KEEPALIVE_S = 15.0
"""Seconds between SSE comments that keep idle proxies from closing the stream."""
STREAM_MAX_S = 60.0
"""An SSE stream ends after this long (the browser reconnects and gets the current
state first), so an open stream never holds up a graceful server shutdown for long."""


@contextlib.asynccontextmanager
async def job_worker(app: Starlette) -> AsyncIterator[None]:
    """Open the job store and run the queue (resuming interrupted jobs) while inside.
    Needs ``app.state.settings`` and ``app.state.services``; sets ``app.state.meetings``."""
    settings = app.state.settings
    store = open_job_store(settings)
    await store.open()
    try:
        blobs = JobBlobs(JobFiles(settings.data_dir), await asyncio.to_thread(blob_store, settings))
        queue = _queue(app, store, blobs)
        async with running(queue):
            await recover_spools(store, queue, blobs.files)
            app.state.meetings = MeetingContext(settings, store, queue, blobs.files, blobs)
            yield
    finally:
        app.state.meetings = None
        await store.close()


def _queue(app: Starlette, store: JobStore, blobs: JobBlobs) -> JobQueue:
    """The queue backend of the settings: in this process (``local``), or Procrastinate
    with ``voice worker`` processes running the jobs (no batch models loaded here).
    Uploads are received into ``blobs.files`` and kept in ``blobs.store``."""
    settings = app.state.settings
    limit = settings.max_queued_jobs_per_key or None
    if settings.job_backend == "procrastinate":
        from pipelines.meeting.pg_queue import ProcrastinateJobQueue
        from pipelines.meeting.pg_store import PostgresJobStore

        assert isinstance(store, PostgresJobStore)  # settings require database_url
        return ProcrastinateJobQueue(
            store, blobs.files, max_unfinished_per_owner=limit, blobs=blobs.store
        )
    return LocalJobQueue(
        store,
        blobs.files,
        with_job_ids(
            meeting_runner(
                app.state.services,
                blobs,
                settings.max_audio_minutes * 60,
                SummaryOptions.from_settings(settings),
            )
        ),
        concurrency=settings.max_concurrent_jobs,
        max_unfinished_per_owner=limit,
        retention_s=settings.job_retention_days * 86400.0 or None,
        blobs=blobs.store,
    )


def _int_field(form: ReceivedForm, name: str) -> int | None:
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(422, "invalid_value", f"{name} must be a whole number", param=name) from None


def _options(form: ReceivedForm) -> dict[str, Any]:
    """Job options from the form fields; 422 for a bad value."""
    summarize = (form.get("summarize") or "true").strip().lower()
    if summarize not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ApiError(422, "invalid_value", "summarize must be true or false", param="summarize")
    language = (form.get("language") or "").strip()
    options: dict[str, Any] = {
        "language": None if language == "auto" else check_language(language, status=422),
        "num_speakers": _int_field(form, "num_speakers"),
        "min_speakers": _int_field(form, "min_speakers"),
        "max_speakers": _int_field(form, "max_speakers"),
        "summarize": summarize in ("true", "1", "yes", "on"),
    }
    try:
        meeting_options(options)
    except ValueError as exc:
        raise ApiError(422, "invalid_value", str(exc)) from None
    return options


@api
async def create_meeting(request: Request) -> Response:
    """``POST /v1/meetings``: receive the recording, check it, queue a job (202)."""
    ctx = context(request)
    job_id = new_job_id()
    try:
        form = await receive_upload(
            request, ctx.files.upload(job_id), max_bytes=ctx.settings.max_upload_mb << 20
        )
        if form.file_path is None:
            raise ApiError(
                422, "missing_file", "send the recording as form field 'file'", param="file"
            )
        options = _options(form)
        names, samples = known_speakers(form)
        if names:
            options["known_speaker_names"] = names
            await asyncio.to_thread(write_references, ctx.files.upload_dir(job_id), samples)
        try:
            info = await asyncio.to_thread(
                inspect_upload, form.file_path, ctx.settings.max_audio_minutes * 60
            )
        except AudioDecodeError as exc:
            raise decode_error(exc) from None
        job = ctx.store.new(
            job_id,
            options=options,
            filename=display_filename(form.filename),
            media_type=media_type(info, form.content_type),
            duration_s=info.duration_s,
            size_bytes=form.size_bytes,
            owner=principal(request).owner,
        )
        try:
            job = await ctx.queue.submit(job)
        except TooManyJobs as exc:
            raise ApiError(429, "too_many_jobs", str(exc)) from None
    except BaseException:
        await asyncio.to_thread(ctx.files.remove, job_id)
        if ctx.blobs.shared:  # published, but no row: remove the objects too
            await ctx.blobs.remove(job_id)
        raise
    return JSONResponse(
        job_json(job), status_code=202, headers={"Location": f"/v1/meetings/{job.id}"}
    )


@api
async def list_meetings(request: Request) -> Response:
    """``GET /v1/meetings?limit=N``: newest first."""
    ctx = context(request)
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(422, "invalid_value", "limit must be 1 to 1000", param="limit")
    jobs = await ctx.store.list(limit=int(raw), owner=principal(request).owner)
    return JSONResponse({"object": "list", "data": [job_json(job) for job in jobs]})


@api
async def get_meeting(request: Request) -> Response:
    _, job = await job_or_404(request)
    return JSONResponse(job_json(job))


@api
async def cancel_meeting(request: Request) -> Response:
    """``POST /v1/meetings/{id}/cancel``: 409 once it has finished."""
    ctx, job = await job_or_404(request)
    if job.state.final:
        raise ApiError(409, "meeting_finished", f"the meeting already {job.state}")
    ended = await ctx.queue.cancel(job.id)
    return JSONResponse(job_json(ended or job))


@api
async def delete_meeting(request: Request) -> Response:
    """``DELETE /v1/meetings/{id}``: cancels it if needed, removes files and record."""
    ctx, job = await job_or_404(request)
    if not await ctx.queue.delete(job.id):
        raise ApiError(404, "meeting_not_found", f"no meeting with id {job.id!r}", param="id")
    return JSONResponse({"id": job.id, "object": "meeting.deleted", "deleted": True})


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def _event_stream(ctx: MeetingContext, job_id: str) -> AsyncIterator[str]:
    """``job`` events with the meeting's JSON until a final state (or ``deleted``).
    Ends by itself after :data:`STREAM_MAX_S`. Safe to cancel (client gone)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_MAX_S
    yield "retry: 2000\n\n"
    async with ctx.queue.subscribe(job_id) as updates:
        job = await ctx.store.get(job_id)
        while job is not None:
            yield _sse("job", job_json(job))
            if job.state.final:
                return
            while True:
                wait_s = min(KEEPALIVE_S, deadline - loop.time())
                if wait_s <= 0:
                    return
                try:
                    job = await asyncio.wait_for(updates.get(), wait_s)
                    break
                except TimeoutError:
                    yield ": keep-alive\n\n"
        yield _sse("deleted", {"id": job_id})


@api
async def meeting_events(request: Request) -> Response:
    """``GET /v1/meetings/{id}/events``: server-sent events (see :func:`_event_stream`)."""
    ctx, job = await job_or_404(request)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _event_stream(ctx, job.id), media_type="text/event-stream", headers=headers
    )


async def meetings_page(request: Request) -> Response:
    return FileResponse(PAGE)


def routes() -> list[BaseRoute]:
    """The HTTP routes of this feature, mounted by :func:`web.app.create_app`."""
    one = "/v1/meetings/{id}"
    return [
        Route("/meetings", meetings_page),
        Route("/v1/meetings", create_meeting, methods=["POST"]),
        Route("/v1/meetings", list_meetings, methods=["GET"]),
        Route(one, get_meeting, methods=["GET"]),
        Route(one, delete_meeting, methods=["DELETE"]),
        Route(f"{one}/cancel", cancel_meeting, methods=["POST"]),
        Route(f"{one}/events", meeting_events, methods=["GET"]),
        *meeting_results.routes(),
    ]
