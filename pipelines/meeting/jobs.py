"""The job queue interface: what a backend must offer and what a runner is.

A backend takes jobs whose upload is already on disk (see
:class:`~pipelines.meeting.job_files.JobFiles`), runs them with a :data:`JobRunner`
and records progress and outcome in the :class:`~pipelines.meeting.store.JobStore`.
The embedded backend is :class:`~pipelines.meeting.local_queue.LocalJobQueue`
(asyncio workers in this process); :class:`~pipelines.meeting.pg_queue.ProcrastinateJobQueue`
queues jobs in PostgreSQL for ``voice worker`` processes (:mod:`pipelines.meeting.pg_worker`).
Both run a job with :class:`~pipelines.meeting.job_run.JobExecutor`.

Every backend keeps the promise that jobs never get lost: ``start`` resumes jobs
a crash or shutdown interrupted (or fails them with a reason) and picks up the
queued ones; ``stop`` leaves running jobs to be resumed by the next ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Protocol

from pipelines.meeting.store import Job

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

    async def submit(self, job: Job, *, limit_owner: bool = True) -> Job:
        """Store a new ``queued`` job (its upload already in place, made durable
        first) and schedule it; ``limit_owner``: refuse it with
        :class:`~pipelines.meeting.store.TooManyJobs` when its owner has too many
        unfinished jobs."""
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


@contextlib.asynccontextmanager
async def running(queue: JobQueue) -> AsyncIterator[JobQueue]:
    """``start`` the queue, and ``stop`` it on the way out."""
    await queue.start()
    try:
        yield queue
    finally:
        await queue.stop()
