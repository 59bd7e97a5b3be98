"""The job store in SQLite: the default, one file in ``data_dir``.

One row per job in ``<data_dir>/jobs.sqlite3`` (WAL journal: readers never wait for
the writer; ``synchronous=FULL``: a committed transaction survives a power loss,
not only a process crash, so a job accepted with 202 is never lost). Every method
runs its SQL in a worker thread under one lock; cancelling a call lets the
statement complete in its thread and drops the result.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from pipelines.meeting.store import (
    COLUMNS,
    UNFINISHED,
    Job,
    JobState,
    TooManyJobs,
    check_changes,
    job_from_row,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, kind TEXT NOT NULL, options TEXT NOT NULL,
    stage TEXT, progress REAL NOT NULL, error TEXT, error_code TEXT, filename TEXT,
    media_type TEXT, duration_s REAL, size_bytes INTEGER, attempts INTEGER NOT NULL,
    started_at REAL, finished_at REAL, owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at);
"""
_MIGRATIONS = {"owner": "ALTER TABLE jobs ADD COLUMN owner TEXT"}
"""Columns added since the first schema: a database without one gets it on open."""
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at)"


def _row_to_job(row: sqlite3.Row) -> Job:
    values = dict(row)
    return job_from_row(values, json.loads(values["options"]))


class SqliteJobStore:
    """:class:`~pipelines.meeting.store.JobStore` on one SQLite file; ``now`` gives
    wall-clock time in Unix seconds (injectable for tests)."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # WAL fsynced at each commit
        conn.executescript(_SCHEMA)
        present = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
        for column, sql in _MIGRATIONS.items():
            if column not in present:
                conn.execute(sql)
        conn.execute(_OWNER_INDEX)
        self._conn = conn

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("JobStore is not open")
            return self._conn.execute(sql, params).fetchall()

    async def create(self, job: Job, *, max_unfinished: int | None = None) -> Job:
        values = job.to_dict()
        values["options"] = json.dumps(values["options"])
        names = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        params = tuple(values[name] for name in COLUMNS)
        if max_unfinished is None:
            sql = f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING id"
        else:
            sql = (
                f"INSERT INTO jobs ({names}) SELECT {marks} WHERE (SELECT COUNT(*) FROM jobs"
                " WHERE owner IS ? AND state IN (?, ?)) < ? RETURNING id"
            )
            params += (job.owner, *map(str, UNFINISHED), max_unfinished)
        if not await asyncio.to_thread(self._run, sql, params):
            raise TooManyJobs(max_unfinished or 0)
        return job

    def new(self, job_id: str, **fields: Any) -> Job:
        now = self._now()
        return Job(id=job_id, state=JobState.QUEUED, created_at=now, updated_at=now, **fields)

    async def get(self, job_id: str) -> Job | None:
        rows = await asyncio.to_thread(self._run, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    async def list(
        self,
        *,
        states: Collection[JobState] = (),
        oldest_first: bool = False,
        limit: int = 1000,
        owner: str | None = None,
    ) -> list[Job]:
        clauses, params = [], [str(s) for s in states]
        if states:
            clauses.append(f"state IN ({', '.join('?' for _ in states)})")
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        order = "ASC" if oldest_first else "DESC"
        rows = await asyncio.to_thread(
            self._run,
            f"SELECT * FROM jobs {where} ORDER BY created_at {order}, id {order} LIMIT ?",
            (*params, limit),
        )
        return [_row_to_job(row) for row in rows]

    async def update(
        self,
        job_id: str,
        *,
        expect: Collection[JobState] = (),
        expect_attempts: int | None = None,
        **changes: Any,
    ) -> Job | None:
        changes = check_changes(changes)
        changes["updated_at"] = self._now()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        where = "id = ?"
        params: list[Any] = [*changes.values(), job_id]
        if expect:
            where += f" AND state IN ({', '.join('?' for _ in expect)})"
            params.extend(str(s) for s in expect)
        if expect_attempts is not None:
            where += " AND attempts = ?"
            params.append(expect_attempts)
        rows = await asyncio.to_thread(
            self._run, f"UPDATE jobs SET {assignments} WHERE {where} RETURNING *", tuple(params)
        )
        return _row_to_job(rows[0]) if rows else None

    async def delete(self, job_id: str) -> bool:
        rows = await asyncio.to_thread(
            self._run, "DELETE FROM jobs WHERE id = ? RETURNING id", (job_id,)
        )
        return bool(rows)

    async def finished_before(self, cutoff: float, limit: int = 1000) -> tuple[Job, ...]:
        finals = [str(s) for s in JobState if s.final]
        rows = await asyncio.to_thread(
            self._run,
            f"SELECT * FROM jobs WHERE state IN ({', '.join('?' for _ in finals)})"
            " AND COALESCE(finished_at, updated_at) < ? ORDER BY finished_at LIMIT ?",
            (*finals, cutoff, limit),
        )
        return tuple(_row_to_job(row) for row in rows)

    async def ids(self) -> set[str]:
        rows = await asyncio.to_thread(self._run, "SELECT id FROM jobs")
        return {row["id"] for row in rows}
