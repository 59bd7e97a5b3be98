"""A meeting-job worker on Procrastinate: takes jobs from PostgreSQL and runs them.

:func:`run_worker` registers the meeting task on a Procrastinate app and runs its
worker until SIGTERM/SIGINT. For each entry the task claims the job
(:func:`~pipelines.meeting.job_run.claim`) and runs it with a
:class:`~pipelines.meeting.job_run.JobExecutor`. When its asyncio task is
cancelled:

- by an abort request (a user cancelled the job): the job ends ``cancelled``;
- by the worker shutting down (SIGTERM): the job goes back to ``queued`` with a new
  queue entry, in one transaction, for another worker (its attempt still counts).

Every ``heartbeat_s`` the worker writes its heartbeat and runs
:func:`~pipelines.meeting.pg_reconcile.reconcile`, which retries the jobs of
workers silent for three heartbeats (or fails them with ``too_many_attempts``)
and queues accepted jobs that have no queue entry. With a retention period, it
also deletes expired finished jobs every hour (:mod:`pipelines.meeting.retention`);
and every hour it removes files of jobs without a record, by age
(:meth:`~pipelines.meeting.job_blobs.JobBlobs.sweep_orphans`). Uploads come from
the blob store: with S3 the worker needs no folder shared with the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from procrastinate import App, JobContext
from procrastinate.job_context import AbortReason

from pipelines.clock import MonotonicClock
from pipelines.meeting.job_blobs import ORPHAN_SWEEP_INTERVAL_S, JobBlobs
from pipelines.meeting.job_run import JobExecutor, claim
from pipelines.meeting.jobs import JobRunner
from pipelines.meeting.pg_queue import QUEUE, TASK, defer, ensure_schema, make_app
from pipelines.meeting.pg_reconcile import reconcile_forever
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.retention import sweep_expired, sweep_forever
from pipelines.meeting.store import Job, JobState

log = logging.getLogger(__name__)

STALL_HEARTBEATS = 3
"""A worker silent for this many heartbeat periods is declared dead."""
RETENTION_INTERVAL_S = 3600.0
"""How often a worker deletes expired jobs (``VOICE_JOB_RETENTION_DAYS``)."""


async def run_worker(
    url: str,
    blobs: JobBlobs,
    runner: JobRunner,
    *,
    heartbeat_s: float = 5.0,
    concurrency: int = 1,
    progress_interval_s: float = 0.5,
    retention_s: float | None = None,
) -> None:
    """Run meeting jobs from the database at ``url`` until SIGTERM/SIGINT (or until
    cancelled). A job running at that moment is re-queued, not failed. With
    ``retention_s``, finished jobs older than that are deleted every hour."""
    store = PostgresJobStore(url, pool_size=4 + 2 * concurrency)
    await store.open()
    try:
        app = make_app(store)
        executor = JobExecutor(
            store, blobs, runner, lambda _id, _job: None, MonotonicClock(), time.time,
            progress_interval_s,
        )

        @app.task(name=TASK, queue=QUEUE, pass_context=True)
        async def meeting_job(context: JobContext, job_id: str) -> None:
            job = await claim(store, job_id, time.time())
            if job is None:
                log.info("job %s is no longer queued; skipped", job_id)
                return
            log.info("job %s started (attempt %d)", job_id, job.attempts)
            try:
                await executor.run(job)
            except asyncio.CancelledError:
                await _interrupted(store, app, job, context.abort_reason())
                raise

        async with app.open_async(pool=store.pool):
            await ensure_schema(app, store)
            stall_s = STALL_HEARTBEATS * heartbeat_s
            side = [
                asyncio.create_task(
                    reconcile_forever(app, store, heartbeat_s, stall_s), name="job-reconcile"
                )
            ]
            if retention_s is not None:
                side.append(asyncio.create_task(sweep_forever(
                    lambda: sweep_expired(store, blobs, retention_s, time.time()),
                    MonotonicClock(), RETENTION_INTERVAL_S,
                ), name="job-retention"))
            if blobs.shared:
                await blobs.sweep_scratch()
            side.append(asyncio.create_task(sweep_forever(
                lambda: _sweep_orphans(store, blobs), MonotonicClock(), ORPHAN_SWEEP_INTERVAL_S,
            ), name="job-orphans"))
            try:
                await app.run_worker_async(
                    queues=[QUEUE],
                    concurrency=concurrency,
                    delete_jobs="always",
                    fetch_job_polling_interval=heartbeat_s,
                    abort_job_polling_interval=heartbeat_s,
                    update_heartbeat_interval=heartbeat_s,
                    stalled_worker_timeout=stall_s,
                    shutdown_graceful_timeout=0,
                    install_signal_handlers=True,
                )
            finally:
                for task in side:
                    task.cancel()
                await asyncio.gather(*side, return_exceptions=True)
    finally:
        await store.close()


async def _sweep_orphans(store: PostgresJobStore, blobs: JobBlobs) -> None:
    await blobs.sweep_orphans(await store.ids())


async def _interrupted(
    store: PostgresJobStore, app: App, job: Job, reason: AbortReason | None
) -> None:
    """Record why a running job stopped: ``cancelled`` on a user's request, back to
    ``queued`` (with a new queue entry, in one transaction) on shutdown."""
    if reason is AbortReason.USER_REQUEST:
        await store.update(
            job.id,
            expect=[JobState.RUNNING],
            expect_attempts=job.attempts,
            state=JobState.CANCELLED,
            finished_at=time.time(),
        )
        log.info("job %s cancelled while running", job.id)
        return
    with contextlib.suppress(Exception):  # the reconcile step re-queues it otherwise
        async with store.transaction() as conn:
            requeued = await store.update_in(
                conn,
                job.id,
                expect=[JobState.RUNNING],
                expect_attempts=job.attempts,
                state=JobState.QUEUED,
                stage="resuming",
            )
            if requeued is not None:
                await defer(app, job.id, conn)
        log.info("job %s re-queued: this worker is stopping", job.id)
