"""Live meetings into the job store: a recorded realtime session becomes a meeting job.

When a session turns ``session.meeting.record`` on, :class:`LiveMeetingSink`
opens a spool in what will be the job's upload folder (``uploads/<job_id>/
original``, a 16 kHz WAV written as the audio arrives) with a spool marker
naming the owner and title. When the session closes, the spool is finished in
place (no copy), the known speakers' voice samples and the live transcript
(``live.json``) are written beside it, the job is queued and the marker removed.
A crash before that leaves the marker: the next start recovers the recording
(:mod:`pipelines.meeting.spool_recovery`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.applications import Starlette

from pipelines.meeting.job_files import write_atomic
from pipelines.meeting.known_speakers import write_references
from pipelines.meeting.spool import RecordingSpool
from pipelines.meeting.store import new_job_id
from pipelines.realtime.live_meeting import LiveMeeting, MeetingSink
from web.meetings.context import MeetingContext

log = logging.getLogger(__name__)

MIN_RECORDING_S = 1.0
"""Shorter recordings are not stored."""


class LiveMeetingSink:
    """Stores the live meetings of one session's ``owner`` (an API key's id, or None)
    in the job context of ``app``."""

    def __init__(self, app: Starlette, owner: str | None) -> None:
        self._app = app
        self._owner = owner

    def _context(self) -> MeetingContext:
        ctx: MeetingContext | None = getattr(self._app.state, "meetings", None)
        if ctx is None:
            raise RuntimeError("the job queue is not running")
        return ctx

    async def open(self, title: str | None) -> RecordingSpool:
        """A spool in a new job's upload folder, marked for recovery after a crash."""
        ctx = self._context()
        job_id = new_job_id()
        marker = {"owner": self._owner, "title": title, "started_at": time.time()}

        def create() -> RecordingSpool:
            write_atomic(ctx.files.spool_marker(job_id), json.dumps(marker).encode())
            return RecordingSpool.create(ctx.files.upload(job_id))

        return await asyncio.to_thread(create)

    async def store(self, meeting: LiveMeeting) -> None:
        """Finish the spool and queue it as a meeting job (or delete one too short)."""
        ctx = self._context()
        job_id = meeting.spool.path.parent.name
        if meeting.duration_s < MIN_RECORDING_S:
            await meeting.spool.discard()
            await asyncio.to_thread(ctx.files.remove, job_id)
            return
        await meeting.spool.finish()
        await asyncio.to_thread(_write_extras, ctx, job_id, meeting)
        job = ctx.store.new(
            job_id,
            options={"summarize": True, "known_speaker_names": list(meeting.known_speakers)},
            filename=(meeting.title or "Live meeting")[:200],
            media_type="audio/wav",
            duration_s=meeting.duration_s,
            size_bytes=meeting.spool.samples * 2 + 44,
            owner=self._owner,
        )
        await ctx.queue.submit(job, limit_owner=False)  # a recorded meeting is never refused
        await asyncio.to_thread(ctx.files.spool_marker(job_id).unlink, missing_ok=True)
        log.info("live meeting stored as job %s (%.1f s)", job_id, meeting.duration_s)


def meeting_sink(app: Starlette, owner: str | None = None) -> MeetingSink | None:
    """The sink storing live meetings of ``app`` as jobs of ``owner`` (the session's
    key, :mod:`web.access.auth`), or None without a job queue."""
    if getattr(app.state, "meetings", None) is None:
        return None
    return LiveMeetingSink(app, owner)


def _write_extras(ctx: MeetingContext, job_id: str, meeting: LiveMeeting) -> None:
    folder = ctx.files.upload_dir(job_id)
    write_references(folder, list(meeting.known_speakers.values()))
    live = {"title": meeting.title, "segments": [s.to_dict() for s in meeting.segments]}
    (folder / "live.json").write_text(json.dumps(live, ensure_ascii=False))
