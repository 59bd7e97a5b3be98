"""Running one job, shared by every queue backend: claim it, run it, record the outcome.

:func:`claim` moves a job ``queued → running`` (one more attempt) by a
conditional update, so of two workers that fetched the same job only one runs it.
:class:`JobExecutor` runs a claimed job's runner in its own task, writes its
progress at most once per interval and, when the runner ends, writes the result
files (whole, through :class:`~pipelines.meeting.job_blobs.JobBlobs`) before
marking the job ``succeeded`` (or ``failed`` / ``cancelled``). Every write after
the claim is fenced by the attempt number: a worker whose job was taken away from
it (it was declared dead and the job retried) can no longer change the row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipelines.clock import Clock
from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_events import ProgressPump
from pipelines.meeting.jobs import JobError, JobRunner
from pipelines.meeting.store import Job, JobState, JobStore

log = logging.getLogger(__name__)

Publish = Callable[[str, Job | None], None]
"""Told every snapshot written (on the event loop; quick, never raises)."""


async def cancel_queued(store: JobStore, job_id: str, now: float) -> Job | None:
    """The job, now ``cancelled``; None when it is not ``queued`` (a worker has it, or
    it ended or is gone). ``now``: Unix seconds, its finish time."""
    return await store.update(
        job_id,
        expect=[JobState.QUEUED],
        state=JobState.CANCELLED,
        stage=None,
        finished_at=now,
    )


async def claim(store: JobStore, job_id: str, now: float) -> Job | None:
    """The job, now ``running`` with one more attempt; None when it is not ``queued``
    (cancelled, deleted, or claimed by someone else first). ``now``: Unix seconds."""
    job = await store.get(job_id)
    if job is None or job.state is not JobState.QUEUED:
        return None
    return await store.update(
        job_id,
        expect=[JobState.QUEUED],
        expect_attempts=job.attempts,
        state=JobState.RUNNING,
        stage="starting",
        progress=0.0,
        attempts=job.attempts + 1,
        started_at=now,
    )


@dataclass
class JobExecutor:
    """Runs claimed jobs with ``runner``; ``now`` is wall-clock Unix seconds, ``clock``
    paces progress writes (at most one per ``interval_s`` seconds)."""

    store: JobStore
    blobs: JobBlobs
    runner: JobRunner
    publish: Publish
    clock: Clock
    now: Callable[[], float]
    interval_s: float = 0.5

    async def run(
        self, job: Job, on_task: Callable[[asyncio.Task[Mapping[str, bytes]]], None] | None = None
    ) -> None:
        """Run the claimed ``job`` to its end and record the outcome. ``on_task`` is
        handed the runner's task as soon as it exists (cancelling that task cancels
        the job: it ends ``cancelled``). Cancelling :meth:`run` itself interrupts the
        job without recording anything: it stays ``running`` for its owner to re-queue."""
        self.publish(job.id, job)
        pump = ProgressPump(asyncio.get_running_loop(), clock=self.clock)
        task = asyncio.create_task(self.runner(job, pump), name=f"job-{job.id}")
        if on_task is not None:
            on_task(task)
        reporter = asyncio.create_task(
            pump.run(lambda s, f: self._progress(job, s, f), self.interval_s)
        )
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        await self._finish(job, task)

    async def _progress(self, job: Job, stage: str, fraction: float) -> None:
        stored = await self.store.update(
            job.id,
            expect=[JobState.RUNNING],
            expect_attempts=job.attempts,
            stage=stage,
            progress=fraction,
        )
        if stored is not None:
            self.publish(job.id, stored)

    async def _finish(self, job: Job, task: asyncio.Task[Mapping[str, bytes]]) -> None:
        final: dict[str, object]
        if task.cancelled():
            final = {"state": JobState.CANCELLED}
        elif isinstance(exc := task.exception(), JobError):
            final = {"state": JobState.FAILED, "error": str(exc), "error_code": exc.code}
        elif exc is not None:  # details go to the log, not to API clients
            log.error("job %s failed", job.id, exc_info=exc)
            final = {
                "state": JobState.FAILED,
                "error": f"processing failed ({type(exc).__name__}); see the server log",
                "error_code": "internal_error",
            }
        else:
            current = await self.store.get(job.id)
            if current is None or current.attempts != job.attempts:
                log.warning("job %s was taken over by a retry; results dropped", job.id)
                return
            try:
                await self.blobs.write_results(job.id, task.result())
                final = {"state": JobState.SUCCEEDED, "stage": "done", "progress": 1.0}
            except OSError as exc:
                log.error("job %s: cannot write its results: %s", job.id, exc)
                final = {
                    "state": JobState.FAILED,
                    "error": f"cannot store the results: {exc}",
                    "error_code": "results_write_failed",
                }
        stored = await self.store.update(
            job.id,
            expect=[JobState.RUNNING],
            expect_attempts=job.attempts,
            finished_at=self.now(),
            **final,
        )
        if stored is not None:
            self.publish(job.id, stored)
            log.info("job %s %s (attempt %d)", job.id, stored.state, job.attempts)
