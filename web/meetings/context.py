"""What the meeting routes share: the job context on ``app.state``, the job's JSON
form, lookups that answer 404, and the wrapper that turns :class:`ApiError` into
a JSON response."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.jobs import JobQueue
from pipelines.meeting.meeting_jobs import summary_status, transcript_ready
from pipelines.meeting.store import Job, JobState, JobStore, is_job_id
from voice.settings import Settings
from web.access.auth import ANONYMOUS, Principal
from web.api_errors import ApiError

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class MeetingContext:
    """The job store, queue and file layout the lifespan set up (``app.state.meetings``):
    ``files`` is this replica's folder (uploads are received there), ``blobs`` where
    accepted uploads and results live (the same folder, or S3)."""

    settings: Settings
    store: JobStore
    queue: JobQueue
    files: JobFiles
    blobs: JobBlobs


def context(request: Request) -> MeetingContext:
    ctx: MeetingContext | None = getattr(request.app.state, "meetings", None)
    if ctx is None:
        raise ApiError(503, "not_ready", "the job queue is not running")
    return ctx


def api(handler: Endpoint) -> Endpoint:
    """Answer an :class:`ApiError` raised by ``handler`` with its JSON error."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    return endpoint


def principal(request: Request) -> Principal:
    """Who is asking (set by :mod:`web.access.guard`; anonymous when auth is off)."""
    return getattr(request.state, "principal", ANONYMOUS)


async def job_or_404(request: Request) -> tuple[MeetingContext, Job]:
    """The job named in the path; 404 when it does not exist or belongs to another
    key (so that other keys' jobs cannot be told apart from missing ones)."""
    ctx = context(request)
    job_id = request.path_params["id"]
    job = await ctx.store.get(job_id) if is_job_id(job_id) else None
    if job is None or not principal(request).may_see(job.owner):
        raise ApiError(404, "meeting_not_found", f"no meeting with id {job_id!r}", param="id")
    return ctx, job


def require_transcript(job: Job) -> None:
    """409 unless the job's transcript is stored (it may still be summarising)."""
    if not transcript_ready(job):
        require_succeeded(job)


def require_succeeded(job: Job) -> None:
    """409 unless the job's results exist."""
    if job.state is JobState.SUCCEEDED:
        return
    if job.state.final:
        raise ApiError(409, "result_unavailable", f"the meeting {job.state}; it has no results")
    raise ApiError(
        409,
        "result_not_ready",
        f"the meeting is {job.state} ({round(job.progress * 100)}% done); try later",
    )


def job_json(job: Job) -> dict[str, Any]:
    """The public JSON form of a meeting job (times in Unix seconds)."""
    base = f"/v1/meetings/{job.id}"
    error = {"code": job.error_code, "message": job.error} if job.error else None
    return {
        "id": job.id,
        "object": "meeting",
        "state": str(job.state),
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "error": error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration": job.duration_s,
        "filename": job.filename,
        "size_bytes": job.size_bytes,
        "media_type": job.media_type,
        "options": dict(job.options),
        "attempts": job.attempts,
        "transcript_ready": transcript_ready(job),
        "summary_status": summary_status(job),
        "urls": {
            "self": base,
            "events": f"{base}/events",
            "audio": f"{base}/audio",
            "transcript": f"{base}/transcript",
            "summary": f"{base}/summary",
        },
    }
