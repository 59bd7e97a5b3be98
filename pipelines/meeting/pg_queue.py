"""Meeting jobs queued with Procrastinate on PostgreSQL (``VOICE_JOB_BACKEND=procrastinate``).

The server side of the queue: :class:`ProcrastinateJobQueue` implements
:class:`~pipelines.meeting.jobs.JobQueue` without running anything itself;
``voice worker`` processes (:mod:`pipelines.meeting.pg_worker`) run the jobs.

- **submit**: the job row and its Procrastinate entry are inserted in one
  transaction, so a job is never accepted without being queued. Entries carry
  ``lock`` and ``queueing_lock`` = the job id: one entry waiting and one running
  per job at most.
- **cancel**: a queued job is cancelled by a conditional update (its entry is
  cancelled too); a running one by asking Procrastinate to abort it, which
  cancels the job's asyncio task in the worker (the runner's cancellation
  contract); the call then waits for the worker to record ``cancelled``.
- **progress**: every row change is announced with ``NOTIFY``
  (:mod:`pipelines.meeting.pg_events`); :meth:`subscribe` follows it here.

The store must be a :class:`~pipelines.meeting.pg_store.PostgresJobStore`; the
Procrastinate app shares its connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from procrastinate import App, PsycopgConnector
from psycopg import AsyncConnection

from pipelines.meeting.blob_store import BlobStore
from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_events import JobEvents
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.job_run import cancel_queued
from pipelines.meeting.pg_events import follow_job_changes
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.store import Job, JobState

log = logging.getLogger(__name__)

TASK = "voice.meeting_job"
"""The Procrastinate task name of a meeting job (its one argument: ``job_id``)."""
QUEUE = "meetings"
_SCHEMA_LOCK = 0x70726F63  # advisory lock: one replica applies Procrastinate's schema
CANCEL_WAIT_S = 30.0
"""How long :meth:`ProcrastinateJobQueue.cancel` waits for a worker to stop a running job (s)."""


def make_app(store: PostgresJobStore) -> App:
    """A Procrastinate app on the store's database (open it with the store's pool)."""
    return App(connector=PsycopgConnector(conninfo=store.url))


async def ensure_schema(app: App, store: PostgresJobStore) -> None:
    """Create Procrastinate's tables once (the first replica or worker to start does)."""
    async with store.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        if not await app.job_manager.check_connection_async():
            await app.schema_manager.apply_schema_async()
            log.info("created Procrastinate's tables")


async def defer(app: App, job_id: str, conn: AsyncConnection[Any] | None = None) -> int:
    """Queue ``job_id`` (inside the transaction on ``conn`` when given); returns the entry id.
    Raises ``procrastinate.exceptions.AlreadyEnqueued`` when one already waits."""
    deferrer = app.configure_task(
        TASK, queue=QUEUE, lock=job_id, queueing_lock=job_id, connection=conn
    )
    return await deferrer.defer_async(job_id=job_id)


async def queue_entries(
    store: PostgresJobStore, job_id: str, statuses: tuple[str, ...] = ("todo", "doing")
) -> list[int]:
    """Ids of ``job_id``'s Procrastinate entries in ``statuses``."""
    rows = await store.fetch(
        "SELECT id FROM procrastinate_jobs WHERE task_name = %s AND args->>'job_id' = %s"
        " AND status::text = ANY(%s)",
        (TASK, job_id, list(statuses)),
    )
    return [row["id"] for row in rows]


class ProcrastinateJobQueue:
    """:class:`~pipelines.meeting.jobs.JobQueue` for servers when workers run the jobs.
    ``now`` is wall-clock Unix seconds."""

    def __init__(
        self,
        store: PostgresJobStore,
        files: JobFiles,
        *,
        max_unfinished_per_owner: int | None = None,
        now: Callable[[], float] = time.time,
        blobs: BlobStore | None = None,
    ) -> None:
        """``files``: this replica's folder, where uploads are received; ``blobs``:
        where accepted uploads and results live, shared with the workers (default:
        that same folder, which the workers must then share)."""
        self.store = store
        self.files = files
        self.blobs = JobBlobs.of(files, blobs)
        self.events = JobEvents()
        self.app = make_app(store)
        self._max_unfinished = max_unfinished_per_owner
        self._now = now
        self._listener: asyncio.Task[None] | None = None
        self._opened: contextlib.AsyncExitStack | None = None

    async def start(self) -> None:
        """Open the app on the store's pool, create the queue's tables if needed and
        follow job changes. Needs the store open. With shared storage, this replica's
        own leftovers (staged uploads a crash cut short) are removed; the store's
        orphans are swept by age in the workers."""
        if self.blobs.shared:
            await self.blobs.sweep_at_start(())
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self.app.open_async(pool=self.store.pool))
        self._opened = stack
        await ensure_schema(self.app, self.store)
        ready = asyncio.Event()
        self._listener = asyncio.create_task(
            follow_job_changes(self.store, self.events, ready), name="job-changes"
        )
        await asyncio.wait_for(ready.wait(), 30.0)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._opened is not None:
            await self._opened.aclose()
            self._opened = None

    async def submit(self, job: Job, *, limit_owner: bool = True) -> Job:
        """Make the upload durable, then store the job and queue it in one transaction.
        Raises :class:`~pipelines.meeting.store.TooManyJobs` (nothing stored)."""
        await self.blobs.publish_upload(job.id)
        limit = self._max_unfinished if limit_owner else None
        async with self.store.transaction() as conn:
            stored = await self.store.create_in(conn, job, max_unfinished=limit)
            await defer(self.app, job.id, conn)
        self.events.publish(job.id, stored)
        return stored

    async def cancel(self, job_id: str) -> Job | None:
        job = await cancel_queued(self.store, job_id, self._now())
        if job is not None:
            for entry in await queue_entries(self.store, job_id, ("todo",)):
                await self.app.job_manager.cancel_job_by_id_async(entry, delete_job=True)
            self.events.publish(job_id, job)
            return job
        async with self.events.subscribe(job_id) as updates:
            current = await self.store.get(job_id)
            if current is None or current.state.final:
                return current
            running_entries = await queue_entries(self.store, job_id, ("doing",))
            if not running_entries:  # no worker holds it (it died): nobody else to tell
                await self.store.update(
                    job_id,
                    expect=[JobState.RUNNING],
                    state=JobState.CANCELLED,
                    finished_at=self._now(),
                )
            for entry in running_entries:
                await self.app.job_manager.cancel_job_by_id_async(entry, abort=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT_S):
                    while (current := await updates.get()) is not None:
                        if current.state.final:
                            break
        return await self.store.get(job_id)

    async def delete(self, job_id: str) -> bool:
        job = await self.cancel(job_id)
        if job is None:
            return False
        await self.blobs.remove(job_id)
        deleted = await self.store.delete(job_id)
        self.events.publish(job_id, None)
        return deleted

    def subscribe(
        self, job_id: str
    ) -> contextlib.AbstractAsyncContextManager[asyncio.Queue[Job | None]]:
        return self.events.subscribe(job_id)
