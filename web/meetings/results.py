"""A finished meeting's results over HTTP: transcript renderings, the summary, the
uploaded audio (with Range support, for the page's player) and speaker renaming.

Results are read from the blob store (``results/<id>/``: the data folder, or S3
when ``VOICE_BLOB_URL`` is set); a rename rewrites ``transcript.json`` whole under
a per-meeting lock, so concurrent renames on one replica apply one after the
other and readers never see half a file (renames racing on two replicas: the
last one wins). The audio is a file response with ``Range`` support when local,
streamed from the store otherwise.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from pipelines.meeting.blob_store import upload_key
from pipelines.meeting.document import RENDER_FORMATS, TranscriptDocument
from pipelines.meeting.meeting_jobs import SUMMARY, TRANSCRIPT
from pipelines.meeting.store import Job
from pipelines.meeting.summary import MeetingSummary
from web.access.bodies import read_body
from web.api_errors import ApiError
from web.meetings.context import (
    MeetingContext,
    api,
    job_or_404,
    require_succeeded,
    require_transcript,
)

MEDIA_TYPES = {
    "json": "application/json",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "md": "text/markdown",
    "txt": "text/plain",
}
NAME_LIMIT = 100
"""Longest accepted speaker name (characters)."""
RENAME_BODY_BYTES = 64 * 1024
"""Largest accepted rename request."""
_rename_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


async def _read_json(ctx: MeetingContext, job: Job, name: str) -> dict[str, Any] | None:
    data = await ctx.blobs.read_result(job.id, name)
    return None if data is None else dict(json.loads(data))


async def _document(ctx: MeetingContext, job: Job) -> TranscriptDocument:
    data = await _read_json(ctx, job, TRANSCRIPT)
    if data is None:
        raise ApiError(500, "result_missing", "the transcript file is missing")
    return TranscriptDocument.from_dict(data)


def _text(body: str, fmt: str, job: Job, stem: str) -> Response:
    headers = {"Content-Disposition": f'inline; filename="{stem}-{job.id}.{fmt}"'}
    return PlainTextResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)


@api
async def get_transcript(request: Request) -> Response:
    """``GET /v1/meetings/{id}/transcript?format=json|srt|vtt|md|txt`` (default json);
    readable as soon as the job's ``transcript_ready``, while the summary is written."""
    ctx, job = await job_or_404(request)
    fmt = request.query_params.get("format", "json")
    if fmt not in RENDER_FORMATS:
        raise ApiError(
            422,
            "invalid_value",
            f"format must be one of {', '.join(RENDER_FORMATS)}",
            param="format",
        )
    require_transcript(job)
    document = await _document(ctx, job)
    return _text(document.render(fmt), fmt, job, "transcript")


@api
async def get_summary(request: Request) -> Response:
    """``GET /v1/meetings/{id}/summary`` as JSON, or ``?format=md`` as Markdown (citations
    as start times). 404 when the meeting was processed without a summary."""
    ctx, job = await job_or_404(request)
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "md"):
        raise ApiError(422, "invalid_value", "format must be json or md", param="format")
    require_succeeded(job)
    data = await _read_json(ctx, job, SUMMARY)
    if data is None:
        raise ApiError(404, "summary_not_found", "this meeting was processed without a summary")
    if fmt == "json":
        return JSONResponse(data)
    markdown = MeetingSummary.from_dict(data).to_markdown(await _document(ctx, job))
    return _text(markdown, "md", job, "summary")


@api
async def get_audio(request: Request) -> Response:
    """``GET /v1/meetings/{id}/audio``: the upload as received; honours ``Range`` when
    the store is local (from S3 the whole file is streamed)."""
    ctx, job = await job_or_404(request)
    media = job.media_type or "application/octet-stream"
    path = ctx.blobs.local_upload(job.id)
    if path is not None:
        if not await asyncio.to_thread(path.is_file):
            raise ApiError(404, "audio_not_found", "the uploaded audio is no longer stored")
        return FileResponse(path, media_type=media)
    if not await ctx.blobs.has_upload(job.id):
        raise ApiError(404, "audio_not_found", "the uploaded audio is no longer stored")
    headers = {"Content-Length": str(job.size_bytes)} if job.size_bytes else {}
    if request.method == "HEAD":
        return Response(media_type=media, headers=headers)
    return StreamingResponse(
        ctx.blobs.store.stream(upload_key(job.id)), media_type=media, headers=headers
    )


def _mapping(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or not body:
        raise ApiError(
            422,
            "invalid_value",
            'send a JSON object of labels to names, e.g. {"SPEAKER_00": "Alice"}',
        )
    for label, name in body.items():
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > NAME_LIMIT:
            raise ApiError(
                422,
                "invalid_value",
                f"the name for {label} must be 1 to {NAME_LIMIT} characters",
                param=label,
            )
    return {label: name.strip() for label, name in body.items()}


@api
async def rename_speakers(request: Request) -> Response:
    """``PATCH /v1/meetings/{id}/speakers`` with ``{"SPEAKER_00": "Alice", ...}``;
    answers with the whole ``speakers`` map after the change."""
    ctx, job = await job_or_404(request)
    raw = await read_body(request, RENAME_BODY_BYTES)
    try:
        body = json.loads(raw)
    except ValueError:  # not JSON, or not UTF-8 (UnicodeDecodeError)
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8 JSON") from None
    mapping = _mapping(body)
    require_succeeded(job)
    lock = _rename_locks.setdefault(job.id, asyncio.Lock())
    async with lock:
        document = await _document(ctx, job)
        try:
            renamed = document.rename_speakers(mapping)
        except KeyError as exc:
            raise ApiError(422, "unknown_speaker", str(exc.args[0])) from None
        data = json.dumps(renamed.to_dict(), ensure_ascii=False, indent=1).encode()
        await ctx.blobs.write_results(job.id, {TRANSCRIPT: data})
    return JSONResponse({"id": job.id, "speakers": renamed.speakers})


def routes() -> list[BaseRoute]:
    one = "/v1/meetings/{id}"
    return [
        Route(f"{one}/transcript", get_transcript, methods=["GET"]),
        Route(f"{one}/summary", get_summary, methods=["GET"]),
        Route(f"{one}/audio", get_audio, methods=["GET", "HEAD"]),
        Route(f"{one}/speakers", rename_speakers, methods=["PATCH"]),
    ]
