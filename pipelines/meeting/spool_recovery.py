"""Live recordings a crash interrupted become meeting jobs when the server starts.

A live session spools its audio into ``uploads/<job_id>/original`` beside a
:data:`~pipelines.meeting.job_files.SPOOL_MARKER` that names the owner and title;
the marker goes once the job row is stored. A marker found at start-up means
the server died while recording or while storing the meeting: the WAV header is
repaired from the file's length (:func:`~pipelines.meeting.spool.repair_wav`)
and the recording is queued as a meeting job like any other (the live speaker
labels and enrolled voices of the session are not recovered; the pipeline
transcribes and diarizes the audio again). Recordings shorter than
``min_duration_s`` and unreadable spools are deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from pipelines.meeting.job_files import SPOOL_MARKER, JobFiles
from pipelines.meeting.jobs import JobQueue
from pipelines.meeting.spool import RATE, repair_wav
from pipelines.meeting.store import JobStore, is_job_id

log = logging.getLogger(__name__)

RECOVERED_TITLE = "Live meeting (recovered after a restart)"


async def recover_spools(
    store: JobStore, queue: JobQueue, files: JobFiles, *, min_duration_s: float = 1.0
) -> list[str]:
    """Queue every interrupted live recording as a meeting job; returns their ids.
    Call once at start-up, after the queue started and before sessions are served."""
    recovered = []
    for job_id in await asyncio.to_thread(_spooled_ids, files):
        if await store.get(job_id) is not None:  # stored just before the crash
            await asyncio.to_thread(files.spool_marker(job_id).unlink, missing_ok=True)
            continue
        try:
            marker = await asyncio.to_thread(_read_marker, files, job_id)
            samples = await asyncio.to_thread(repair_wav, files.upload(job_id))
        except (OSError, ValueError) as exc:
            log.warning("dropping unreadable live recording %s: %s", job_id, exc)
            await asyncio.to_thread(files.remove, job_id)
            continue
        if samples < min_duration_s * RATE:
            await asyncio.to_thread(files.remove, job_id)
            continue
        title = marker.get("title")
        job = store.new(
            job_id,
            options={"summarize": True, "known_speaker_names": []},
            filename=(title if isinstance(title, str) and title else RECOVERED_TITLE)[:200],
            media_type="audio/wav",
            duration_s=samples / RATE,
            size_bytes=44 + 2 * samples,
            owner=marker.get("owner"),
        )
        await queue.submit(job, limit_owner=False)
        await asyncio.to_thread(files.spool_marker(job_id).unlink, missing_ok=True)
        log.warning("recovered live recording %s (%.1f s) as a meeting job", job_id, samples / RATE)
        recovered.append(job_id)
    return recovered


def _spooled_ids(files: JobFiles) -> list[str]:
    uploads = files.data_dir / "uploads"
    if not uploads.is_dir():
        return []
    return sorted(
        d.name for d in uploads.iterdir() if is_job_id(d.name) and (d / SPOOL_MARKER).is_file()
    )


def _read_marker(files: JobFiles, job_id: str) -> dict[str, Any]:
    data = json.loads(files.spool_marker(job_id).read_text())
    if not isinstance(data, dict):
        raise ValueError("the spool marker is not a JSON object")
    return data
