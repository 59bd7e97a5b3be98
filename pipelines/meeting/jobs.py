"""The job queue: a narrow :class:`JobQueue` interface and its in-process backend.

A backend takes jobs whose upload is already on disk (see
:class:`~pipelines.meeting.store.JobFiles`), runs them with a :data:`JobRunner`
and records progress and outcome in the :class:`~pipelines.meeting.store.JobStore`.
:class:`LocalJobQueue` runs jobs in asyncio workers in this process, at most
``concurrency`` at a time; a Redis/arq or Celery backend can replace it by
implementing the same five methods.

Jobs never get lost. :meth:`LocalJobQueue.start` re-queues jobs that a crash or
a shutdown left ``running`` (or fails them with ``upload_missing`` when their
upload is gone, or ``too_many_attempts`` after :data:`MAX_ATTEMPTS` starts) and
picks up every ``queued`` one, oldest first. :meth:`LocalJobQueue.stop` cancels
running jobs and leaves them ``running`` for the next start to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.clock import Clock, MonotonicClock
from pipelines.meeting.job_events import JobEvents, ProgressPump
from pipelines.meeting.store import Job, JobFiles, JobState, JobStore

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""A job interrupted this many times is failed instead of resumed again."""

ProgressFn = Callable[[str, float], None]
JobRunner = Callable[[Job, ProgressFn], Coroutine[Any, Any, Mapping[str, bytes]]]
"""Runs one job: reports ``(stage, fraction 0–1)`` to the callback (from any thread)
and returns result files by name. Raising fails the job; it must be safe to cancel."""


class JobError(Exception):
    """A runner's failure with a stable machine-readable ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class JobQueue(Protocol):
    """What the web layer needs from a queue backend. All methods are coroutines
    except :meth:`subscribe`; each is safe to cancel (the store stays consistent)."""

    async def start(self) -> None:
        """Recover interrupted jobs and begin taking queued ones."""
        ...

    async def stop(self) -> None:
        """Stop workers; running jobs stay ``running`` and resume at the next start."""
        ...

    async def submit(self, job: Job) -> Job:
        """Store a new ``queued`` job (its upload already in place) and schedule it."""
        ...

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job and return it as it ended (None: no such job)."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Cancel if needed, then remove the job's files and record. False: no such job."""
        ...

    def subscribe(
        self, job_id: str
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Job | None]]:
        """Snapshots of ``job_id`` as it changes (``None`` once deleted)."""
        ...


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
    ) -> None:
        self.store = store
        self.files = files
        self.events = JobEvents()
        self._runner = runner
        self._concurrency = max(1, concurrency)
        self._interval_s = progress_interval_s
        self._clock = clock or MonotonicClock()
        self._now = now
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._active: dict[str, _Active] = {}
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for job in await self.store.list(states=[JobState.RUNNING], oldest_first=True):
            await self._recover(job)
        removed = await asyncio.to_thread(self.files.sweep_orphans, await self.store.ids())
        if removed:
            log.info("removed files of %d unknown job(s)", len(removed))
        for job in await self.store.list(states=[JobState.QUEUED], oldest_first=True):
            self._pending.put_nowait(job.id)
        self._workers = [
            asyncio.create_task(self._work(), name=f"job-worker-{n}")
            for n in range(self._concurrency)
        ]

    async def _recover(self, job: Job) -> None:
        present = await asyncio.to_thread(self.files.upload(job.id).is_file)
        if not present:
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
        for worker in self._workers:
            worker.cancel()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=timeout_s)
            if late:
                log.warning("%d job worker(s) did not stop within %.0f s", len(late), timeout_s)
        self._workers = []

    async def submit(self, job: Job) -> Job:
        stored = await self.store.create(job)
        self._pending.put_nowait(job.id)
        self.events.publish(job.id, stored)
        return stored

    async def cancel(self, job_id: str) -> Job | None:
        job = await self.store.update(
            job_id,
            expect=[JobState.QUEUED],
            state=JobState.CANCELLED,
            stage=None,
            finished_at=self._now(),
        )
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
        await asyncio.to_thread(self.files.remove, job_id)
        deleted = await self.store.delete(job_id)
        self.events.publish(job_id, None)
        return deleted

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
        job = await self.store.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return  # cancelled or deleted while waiting
        job = await self.store.update(
            job_id,
            expect=[JobState.QUEUED],
            state=JobState.RUNNING,
            stage="starting",
            progress=0.0,
            attempts=job.attempts + 1,
            started_at=self._now(),
        )
        if job is None:
            return
        self.events.publish(job_id, job)
        pump = ProgressPump(asyncio.get_running_loop(), clock=self._clock)
        task = active.task = asyncio.create_task(self._runner(job, pump), name=f"job-{job_id}")
        if active.cancel_requested:
            task.cancel()
        reporter = asyncio.create_task(
            pump.run(lambda s, f: self._progress(job_id, s, f), self._interval_s)
        )
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:  # the queue is stopping: job stays 'running'
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        await self._finish(job_id, task)

    async def _progress(self, job_id: str, stage: str, fraction: float) -> None:
        job = await self.store.update(
            job_id, expect=[JobState.RUNNING], stage=stage, progress=fraction
        )
        if job is not None:
            self.events.publish(job_id, job)

    async def _finish(self, job_id: str, task: asyncio.Task[Mapping[str, bytes]]) -> None:
        final: dict[str, object]
        if task.cancelled():
            final = {"state": JobState.CANCELLED}
        elif (exc := task.exception()) is not None:
            code = exc.code if isinstance(exc, JobError) else type(exc).__name__
            if not isinstance(exc, JobError):
                log.error("job %s failed", job_id, exc_info=exc)
            final = {"state": JobState.FAILED, "error": str(exc) or code, "error_code": code}
        else:
            await asyncio.to_thread(self.files.write_results, job_id, task.result())
            final = {"state": JobState.SUCCEEDED, "stage": "done", "progress": 1.0}
        job = await self.store.update(
            job_id, expect=[JobState.RUNNING], finished_at=self._now(), **final
        )
        if job is not None:
            self.events.publish(job_id, job)


@contextlib.asynccontextmanager
async def running(queue: JobQueue) -> AsyncIterator[JobQueue]:
    """``start`` the queue, and ``stop`` it on the way out."""
    await queue.start()
    try:
        yield queue
    finally:
        await queue.stop()
