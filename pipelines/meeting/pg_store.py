"""The job store in PostgreSQL (``VOICE_DATABASE_URL``): shared by servers and workers.

Table ``voice_jobs`` (created on :meth:`PostgresJobStore.open`, under an advisory
lock so replicas starting together do not race). Each method is one transaction on
a connection from a ``psycopg_pool`` pool; a cancelled call is rolled back. Every
change (create, update, delete) also sends ``NOTIFY`` on :data:`JOB_CHANNEL` with
the job's id as payload, in the same transaction, so any replica listening
(:mod:`pipelines.meeting.pg_events`) learns about it once it is committed.

The per-owner cap of :meth:`PostgresJobStore.create` takes a transaction-scoped
advisory lock on the owner first: under PostgreSQL's default isolation a bare
``INSERT … WHERE (SELECT COUNT(*)) < n`` could let two concurrent submits through.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pipelines.meeting.store import (
    COLUMNS,
    UNFINISHED,
    Job,
    JobState,
    TooManyJobs,
    check_changes,
    job_from_row,
)

JOB_CHANNEL = "voice_job_changes"
"""The ``NOTIFY`` channel; the payload is the changed job's id."""
_SCHEMA_LOCK = 0x766F696365  # any constant shared by every replica
_SCHEMA = """
CREATE TABLE IF NOT EXISTS voice_jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, options JSONB NOT NULL,
    stage TEXT, progress DOUBLE PRECISION NOT NULL, error TEXT, error_code TEXT,
    filename TEXT, media_type TEXT, duration_s DOUBLE PRECISION, size_bytes BIGINT,
    attempts INTEGER NOT NULL, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS voice_jobs_by_state ON voice_jobs (state, created_at);
CREATE INDEX IF NOT EXISTS voice_jobs_by_owner ON voice_jobs (owner, created_at);
"""
_NOTIFY = sql.SQL("SELECT pg_notify({}, %s)").format(sql.Literal(JOB_CHANNEL))


def _job(row: dict[str, Any]) -> Job:
    return job_from_row(dict(row), row["options"])


class PostgresJobStore:
    """:class:`~pipelines.meeting.store.JobStore` on PostgreSQL at ``url`` (a libpq
    connection string or URL); ``pool_size``: most connections held; ``now`` gives
    wall-clock Unix seconds (injectable for tests)."""

    def __init__(
        self, url: str, *, pool_size: int = 4, now: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self._now = now
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, kwargs={"row_factory": dict_row}
        )

    async def open(self, timeout_s: float = 30.0) -> None:
        """Connect (waiting up to ``timeout_s`` for the server) and create the table."""
        await self.pool.open(wait=True, timeout=timeout_s)
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(_SCHEMA)

    async def close(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection inside one transaction: committed when the block ends,
        rolled back when it raises (or is cancelled)."""
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: Any, params: Any = ()) -> list[dict[str, Any]]:
        """The rows of one query (as dicts), run in its own transaction."""
        async with self.transaction() as conn:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall())

    def new(self, job_id: str, **fields: Any) -> Job:
        now = self._now()
        return Job(id=job_id, state=JobState.QUEUED, created_at=now, updated_at=now, **fields)

    async def create(self, job: Job, *, max_unfinished: int | None = None) -> Job:
        async with self.transaction() as conn:
            return await self.create_in(conn, job, max_unfinished=max_unfinished)

    async def create_in(
        self, conn: AsyncConnection[Any], job: Job, *, max_unfinished: int | None = None
    ) -> Job:
        """:meth:`create` inside the caller's transaction on ``conn`` (so that the job
        and its queue entry are committed together)."""
        values = job.to_dict()
        values["options"] = Jsonb(values["options"])
        names = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        marks = sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS))
        params: tuple[Any, ...] = tuple(values[name] for name in COLUMNS)
        if max_unfinished is None:
            query = sql.SQL("INSERT INTO voice_jobs ({}) VALUES ({}) RETURNING id")
        else:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"owner:{job.owner}",)
            )
            query = sql.SQL(
                "INSERT INTO voice_jobs ({}) SELECT {} WHERE (SELECT COUNT(*) FROM voice_jobs"
                " WHERE owner IS NOT DISTINCT FROM %s AND state = ANY(%s)) < %s RETURNING id"
            )
            params += (job.owner, [str(s) for s in UNFINISHED], max_unfinished)
        cur = await conn.execute(query.format(names, marks), params)
        if await cur.fetchone() is None:
            raise TooManyJobs(max_unfinished or 0)
        await conn.execute(_NOTIFY, (job.id,))
        return job

    async def get(self, job_id: str) -> Job | None:
        rows = await self.fetch("SELECT * FROM voice_jobs WHERE id = %s", (job_id,))
        return _job(rows[0]) if rows else None

    async def list(
        self,
        *,
        states: Collection[JobState] = (),
        oldest_first: bool = False,
        limit: int = 1000,
        owner: str | None = None,
    ) -> list[Job]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        if states:
            clauses.append(sql.SQL("state = ANY(%s)"))
            params.append([str(s) for s in states])
        if owner is not None:
            clauses.append(sql.SQL("owner = %s"))
            params.append(owner)
        where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        order = sql.SQL("ASC" if oldest_first else "DESC")
        query = sql.SQL("SELECT * FROM voice_jobs {} ORDER BY created_at {}, id {} LIMIT %s")
        rows = await self.fetch(query.format(where, order, order), (*params, limit))
        return [_job(row) for row in rows]

    async def update(
        self,
        job_id: str,
        *,
        expect: Collection[JobState] = (),
        expect_attempts: int | None = None,
        **changes: Any,
    ) -> Job | None:
        async with self.transaction() as conn:
            return await self.update_in(
                conn, job_id, expect=expect, expect_attempts=expect_attempts, **changes
            )

    async def update_in(
        self,
        conn: AsyncConnection[Any],
        job_id: str,
        *,
        expect: Collection[JobState] = (),
        expect_attempts: int | None = None,
        **changes: Any,
    ) -> Job | None:
        """:meth:`update` inside the caller's transaction on ``conn``."""
        changes = check_changes(changes)
        changes["updated_at"] = self._now()
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(name)) for name in changes
        )
        conditions = [sql.SQL("id = %s")]
        params: list[Any] = [*changes.values(), job_id]
        if expect:
            conditions.append(sql.SQL("state = ANY(%s)"))
            params.append([str(s) for s in expect])
        if expect_attempts is not None:
            conditions.append(sql.SQL("attempts = %s"))
            params.append(expect_attempts)
        query = sql.SQL("UPDATE voice_jobs SET {} WHERE {} RETURNING *").format(
            assignments, sql.SQL(" AND ").join(conditions)
        )
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute(_NOTIFY, (job_id,))
        return _job(row)

    async def delete(self, job_id: str) -> bool:
        async with self.transaction() as conn:
            cur = await conn.execute("DELETE FROM voice_jobs WHERE id = %s RETURNING id", (job_id,))
            if await cur.fetchone() is None:
                return False
            await conn.execute(_NOTIFY, (job_id,))
        return True

    async def finished_before(self, cutoff: float, limit: int = 1000) -> tuple[Job, ...]:
        rows = await self.fetch(
            "SELECT * FROM voice_jobs WHERE state = ANY(%s)"
            " AND COALESCE(finished_at, updated_at) < %s ORDER BY finished_at LIMIT %s",
            ([str(s) for s in JobState if s.final], cutoff, limit),
        )
        return tuple(_job(row) for row in rows)

    async def ids(self) -> set[str]:
        return {row["id"] for row in await self.fetch("SELECT id FROM voice_jobs")}
