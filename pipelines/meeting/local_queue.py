"""The embedded job queue backend: asyncio workers in this process.

:class:`LocalJobQueue` runs at most ``concurrency`` jobs at a time from one pending
queue. :meth:`~LocalJobQueue.start` re-queues jobs that a crash or a shutdown left
``running`` (or fails them with ``upload_missing`` when their upload is gone, or
``too_many_attempts`` after :data:`~pipelines.meeting.jobs.MAX_ATTEMPTS` starts),
removes files of unknown jobs (with shared storage: on a timer, by age; see
:mod:`pipelines.meeting.job_blobs`) and picks up every ``queued`` one, oldest first.
:meth:`~LocalJobQueue.stop` cancels running jobs and leaves them ``running`` for
the next start to resume. Each job's task is owned by the worker that started
it, which cancels and awaits it; a finished job's results are written
atomically before it is marked ``succeeded``.

:meth:`~LocalJobQueue.submit` fsyncs the upload before the row is committed and
refuses (:class:`~pipelines.meeting.store.TooManyJobs`) an owner's job beyond
``max_unfinished_per_owner``. With ``retention_s``, a sweep at start and then
every ``retention_interval_s`` deletes finished jobs (row and files) that
finished longer ago than that; queued and running jobs are never swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pipelines.clock import Clock, MonotonicClock
from pipelines.meeting.blob_store import BlobStore
from pipelines.meeting.job_blobs import ORPHAN_SWEEP_INTERVAL_S, JobBlobs
from pipelines.meeting.job_events import JobEvents
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.job_run import JobExecutor, cancel_queued, claim
from pipelines.meeting.jobs import MAX_ATTEMPTS, JobRunner
from pipelines.meeting.retention import sweep_expired, sweep_forever
from pipelines.meeting.store import Job, JobState, JobStore

log = logging.getLogger(__name__)


@dataclass
class _Active:
    """A job a worker has taken: its task once started, and when handling is over."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[Mapping[str, bytes]] | None = None
    cancel_requested: bool = False


class LocalJobQueue:
    """In-process backend: ``concurrency`` asyncio workers share one pending queue.

    ``progress_interval_s`` bounds how often progress is written and published.
    """

    def __init__(
        self,
        store: JobStore,
        files: JobFiles,
        runner: JobRunner,
        *,
        concurrency: int = 1,
        progress_interval_s: float = 0.5,
        clock: Clock | None = None,
        now: Callable[[], float] = time.time,
        max_unfinished_per_owner: int | None = None,
        retention_s: float | None = None,
        retention_interval_s: float = 3600.0,
        blobs: BlobStore | None = None,
    ) -> None:
        """``now`` is wall-clock Unix seconds (job times, retention); ``clock`` paces
        progress reports and the retention sweep. ``None`` limits: unlimited, kept forever.
        ``files`` is this process's folder (uploads are received there); ``blobs``
        keeps accepted uploads and results (default: that same folder)."""
        self.store = store
        self.files = files
        self.blobs = JobBlobs.of(files, blobs)
        self.events = JobEvents()
        self._concurrency = max(1, concurrency)
        self._clock = clock or MonotonicClock()
        self._now = now
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._active: dict[str, _Active] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._max_unfinished = max_unfinished_per_owner
        self._retention_s = retention_s
        self._retention_interval_s = retention_interval_s
        self._sweeper: asyncio.Task[None] | None = None
        self._orphans: asyncio.Task[None] | None = None
        self._executor = JobExecutor(
            store, self.blobs, runner, self.events.publish, self._clock, now, progress_interval_s
        )

    async def start(self) -> None:
        for job in await self.store.list(states=[JobState.RUNNING], oldest_first=True):
            await self._recover(job)
        removed = await self.blobs.sweep_at_start(await self.store.ids())
        if removed:
            log.info("removed files of %d unknown job(s)", len(removed))
        for job in await self.store.list(states=[JobState.QUEUED], oldest_first=True):
            self._pending.put_nowait(job.id)
        self._workers = [
            asyncio.create_task(self._work(), name=f"job-worker-{n}")
            for n in range(self._concurrency)
        ]
        if self._retention_s is not None:
            self._sweeper = asyncio.create_task(
                sweep_forever(self.sweep_expired, self._clock, self._retention_interval_s),
                name="job-retention",
            )
        if self.blobs.shared:
            self._orphans = asyncio.create_task(
                sweep_forever(self._sweep_orphans, self._clock, ORPHAN_SWEEP_INTERVAL_S),
                name="job-orphans",
            )

    async def _sweep_orphans(self) -> None:
        await self.blobs.sweep_orphans(await self.store.ids())

    async def _recover(self, job: Job) -> None:
        if not await self.blobs.has_upload(job.id):
            code, why = "upload_missing", "the uploaded file is gone (found after a restart)"
        elif job.attempts >= MAX_ATTEMPTS:
            code, why = "too_many_attempts", f"interrupted {job.attempts} times; giving up"
        else:
            log.info("resuming job %s (interrupted in stage %s)", job.id, job.stage)
            await self.store.update(
                job.id, expect=[JobState.RUNNING], state=JobState.QUEUED, stage="resuming"
            )
            return
        log.warning("job %s failed on recovery: %s", job.id, why)
        await self.store.update(
            job.id,
            expect=[JobState.RUNNING],
            state=JobState.FAILED,
            error=why,
            error_code=code,
            finished_at=self._now(),
        )

    async def stop(self, timeout_s: float = 10.0) -> None:
        for side in (self._sweeper, self._orphans):
            if side is not None:
                side.cancel()
                await asyncio.gather(side, return_exceptions=True)
        self._sweeper = self._orphans = None
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=timeout_s)
            if late:
                log.warning("%d job worker(s) did not stop within %.0f s", len(late), timeout_s)
        self._workers = []

    async def submit(self, job: Job, *, limit_owner: bool = True) -> Job:
        """Make the upload durable, store the job and schedule it. Raises
        :class:`~pipelines.meeting.store.TooManyJobs` when ``limit_owner`` and the
        owner is at ``max_unfinished_per_owner``."""
        await self.blobs.publish_upload(job.id)
        limit = self._max_unfinished if limit_owner else None
        stored = await self.store.create(job, max_unfinished=limit)
        self._pending.put_nowait(job.id)
        self.events.publish(job.id, stored)
        return stored

    async def cancel(self, job_id: str) -> Job | None:
        job = await cancel_queued(self.store, job_id, self._now())
        if job is not None:
            self.events.publish(job_id, job)
            return job
        active = self._active.get(job_id)
        if active is not None:
            active.cancel_requested = True
            if active.task is not None:
                active.task.cancel()
            await active.done.wait()
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> bool:
        job = await self.cancel(job_id)
        if job is None:
            return False
        await self.blobs.remove(job_id)
        deleted = await self.store.delete(job_id)
        self.events.publish(job_id, None)
        return deleted

    async def sweep_expired(self) -> list[str]:
        """Delete finished jobs (row and files) older than ``retention_s``; returns
        their ids (see :func:`~pipelines.meeting.retention.sweep_expired`)."""
        if self._retention_s is None:
            return []
        return await sweep_expired(
            self.store, self.blobs, self._retention_s, self._now(), self.events.publish
        )

    def subscribe(
        self, job_id: str
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Job | None]]:
        return self.events.subscribe(job_id)

    async def _work(self) -> None:
        while True:
            job_id = await self._pending.get()
            active = self._active[job_id] = _Active()
            try:
                await self._run(job_id, active)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store failure must not kill the worker
                log.exception("job %s: unexpected error while handling it", job_id)
            finally:
                self._active.pop(job_id, None)
                active.done.set()

    async def _run(self, job_id: str, active: _Active) -> None:
        job = await claim(self.store, job_id, self._now())
        if job is None:
            return  # cancelled or deleted while waiting

        def started(task: asyncio.Task[Mapping[str, bytes]]) -> None:
            active.task = task
            if active.cancel_requested:
                task.cancel()

        await self._executor.run(job, started)
