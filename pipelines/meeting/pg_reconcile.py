"""Keeping the job rows and the Procrastinate queue in agreement, whatever crashed.

:func:`reconcile` (run by every worker each heartbeat, one at a time across the
cluster under an advisory lock):

1. **Dead workers' jobs.** An entry ``doing`` on a worker silent for ``stall_s``
   seconds (killed, machine lost) is retried: its job goes back to ``queued``
   (``stage = resuming``), or fails with ``too_many_attempts`` once it was started
   :data:`~pipelines.meeting.jobs.MAX_ATTEMPTS` times (a job that kills every
   worker it meets does not loop). The bound is ``stall_s`` plus one heartbeat,
   whatever the job's length.
2. **Running without a worker.** A ``running`` row with no live entry for
   ``stall_s`` is treated the same way.
3. **Accepted but not queued.** A ``queued`` row without a waiting or running
   entry gets one (a job accepted by another path than
   :meth:`~pipelines.meeting.pg_queue.ProcrastinateJobQueue.submit`, or an entry
   lost): nothing accepted is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Status

from pipelines.meeting.jobs import MAX_ATTEMPTS
from pipelines.meeting.pg_queue import TASK, defer
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.store import JobState

log = logging.getLogger(__name__)

_RECONCILE_LOCK = 0x7265636F
_LIVE = "p.task_name = %s AND p.args->>'job_id' = j.id AND p.status IN ('todo', 'doing')"


async def reconcile(app: App, store: PostgresJobStore, stall_s: float) -> None:
    """One pass of the three repairs above; does nothing while another process runs one."""
    async with store.transaction() as lock:
        cur = await lock.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (_RECONCILE_LOCK,))
        row = await cur.fetchone()
        if not row or not row["got"]:
            return
        for entry in await app.job_manager.get_stalled_jobs(
            task_name=TASK, seconds_since_heartbeat=stall_s
        ):
            job_id = str(entry.task_kwargs["job_id"])
            if await _retry_or_fail(store, job_id, "its worker stopped responding"):
                await app.job_manager.retry_job(entry)
            else:
                await app.job_manager.finish_job(entry, Status.FAILED, delete_job=True)
        orphans = await store.fetch(
            f"SELECT j.id FROM voice_jobs j WHERE j.state = %s AND j.updated_at < %s"
            f" AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p WHERE {_LIVE})",
            (str(JobState.RUNNING), time.time() - stall_s, TASK),
        )
        for orphan in orphans:
            if await _retry_or_fail(store, orphan["id"], "no worker holds it"):
                await _queue(app, orphan["id"])
        unqueued = await store.fetch(
            f"SELECT j.id FROM voice_jobs j WHERE j.state = %s"
            f" AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p WHERE {_LIVE})",
            (str(JobState.QUEUED), TASK),
        )
        for job in unqueued:
            log.warning("job %s was accepted but not queued; queueing it", job["id"])
            await _queue(app, job["id"])


async def _retry_or_fail(store: PostgresJobStore, job_id: str, why: str) -> bool:
    """Move a ``running`` job back to ``queued``, or fail it after the attempt limit.
    True when it was re-queued."""
    job = await store.get(job_id)
    if job is None or job.state is not JobState.RUNNING:
        return False
    if job.attempts >= MAX_ATTEMPTS:
        log.warning("job %s failed: %s, %d attempts", job_id, why, job.attempts)
        await store.update(
            job_id,
            expect=[JobState.RUNNING],
            expect_attempts=job.attempts,
            state=JobState.FAILED,
            error=f"interrupted {job.attempts} times; giving up",
            error_code="too_many_attempts",
            finished_at=time.time(),
        )
        return False
    log.warning("job %s re-queued: %s (attempt %d)", job_id, why, job.attempts)
    moved = await store.update(
        job_id,
        expect=[JobState.RUNNING],
        expect_attempts=job.attempts,
        state=JobState.QUEUED,
        stage="resuming",
    )
    return moved is not None


async def _queue(app: App, job_id: str) -> None:
    with contextlib.suppress(AlreadyEnqueued):  # someone queued it meanwhile: fine
        await defer(app, job_id)


async def reconcile_forever(
    app: App, store: PostgresJobStore, interval_s: float, stall_s: float
) -> None:
    """:func:`reconcile` every ``interval_s`` seconds; a failed pass is logged and the
    next one tried. Safe to cancel."""
    while True:
        try:
            await reconcile(app, store, stall_s)
        except Exception:
            log.exception("job reconcile pass failed")
        await asyncio.sleep(interval_s)
