"""Live meetings into the job store: a recorded realtime session becomes a meeting job.

A session with ``session.meeting.record`` on keeps its input audio; when it
closes, :func:`meeting_sink` writes the recording as the job's upload (16 kHz
WAV), the known speakers' voice samples beside it, and the live transcript as
``live.json``, then queues the job: the meeting pipeline produces the same
transcript document and summary as for an uploaded recording.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.applications import Starlette

from pipelines.meeting.known_speakers import write_references
from pipelines.meeting.store import new_job_id
from pipelines.realtime.live_meeting import RATE, LiveMeeting, MeetingSink
from voice.audio.wav import write_wav
from web.meetings.context import MeetingContext

log = logging.getLogger(__name__)

MIN_RECORDING_S = 1.0
"""Shorter recordings are not stored."""


def meeting_sink(app: Starlette, owner: str | None = None) -> MeetingSink | None:
    """The sink storing live meetings of ``app`` as jobs of ``owner`` (the session's
    key, :mod:`web.access.auth`), or None without a job queue."""
    if getattr(app.state, "meetings", None) is None:
        return None

    async def store(meeting: LiveMeeting) -> None:
        ctx: MeetingContext | None = getattr(app.state, "meetings", None)
        if ctx is None or meeting.duration_s < MIN_RECORDING_S:
            return
        job_id = new_job_id()
        try:
            await asyncio.to_thread(_write_files, ctx, job_id, meeting)
            options = {
                "summarize": True,
                "known_speaker_names": list(meeting.known_speakers),
            }
            job = ctx.store.new(
                job_id,
                options=options,
                filename=(meeting.title or "Live meeting")[:200],
                media_type="audio/wav",
                duration_s=meeting.duration_s,
                size_bytes=len(meeting.audio) * 2 + 44,
                owner=owner,
            )
            await ctx.queue.submit(job)
        except BaseException:
            await asyncio.to_thread(ctx.files.remove, job_id)
            raise
        log.info("live meeting stored as job %s (%.1f s)", job_id, meeting.duration_s)

    return store


def _write_files(ctx: MeetingContext, job_id: str, meeting: LiveMeeting) -> None:
    folder = ctx.files.upload_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(ctx.files.upload(job_id), meeting.audio, RATE)
    write_references(folder, list(meeting.known_speakers.values()))
    live = {"title": meeting.title, "segments": [s.to_dict() for s in meeting.segments]}
    (folder / "live.json").write_text(json.dumps(live, ensure_ascii=False))
