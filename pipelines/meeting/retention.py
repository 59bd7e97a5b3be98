"""Deleting finished jobs after the retention period, for every queue backend.

:func:`sweep_expired` removes finished jobs (files first, then the row) that
finished more than ``retention_s`` seconds ago; queued and running jobs are never
touched. :func:`sweep_forever` repeats it. The in-process queue runs it in the
server; with Procrastinate each ``voice worker`` runs it (any number may: a job
deleted twice is simply not found the second time).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pipelines.clock import Clock
from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.store import Job, JobStore

log = logging.getLogger(__name__)


async def sweep_expired(
    store: JobStore,
    files: JobFiles | JobBlobs,
    retention_s: float,
    now: float,
    publish: Callable[[str, Job | None], None] = lambda _id, _job: None,
) -> list[str]:
    """Delete finished jobs (row and files) that finished before ``now - retention_s``
    (Unix s); returns their ids and tells ``publish`` of each (``None``). ``files``:
    where their files are (a :class:`JobFiles` is the local folder). Safe to
    cancel (files go first, then the row, so an interrupted job is swept again or its
    files as orphans)."""
    blobs = JobBlobs.of(files)
    removed = []
    for job in await store.finished_before(now - retention_s):
        await blobs.remove(job.id)
        if await store.delete(job.id):
            removed.append(job.id)
            publish(job.id, None)
    if removed:
        log.info("retention: deleted %d finished job(s) and their files", len(removed))
    return removed


async def sweep_forever(
    sweep: Callable[[], Awaitable[object]], clock: Clock, interval_s: float
) -> None:
    """Await ``sweep()`` now and every ``interval_s`` seconds; a failed sweep is logged
    and the next one tried. Safe to cancel."""
    while True:
        try:
            await sweep()
        except Exception:  # a store failure must not end the sweeps
            log.exception("sweep failed (retried in %.0f s)", interval_s)
        await clock.sleep(interval_s)
