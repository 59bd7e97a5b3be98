"""Durable job records in SQLite.

One row per job in ``<data_dir>/jobs.sqlite3`` (WAL journal: readers never wait for
the writer; ``synchronous=FULL``: a committed transaction survives a power loss,
not only a process crash, so a job accepted with 202 is never lost). A job moves
``queued → running → succeeded | failed | cancelled``; transitions are conditional
(:meth:`JobStore.update` with ``expect``) so two actors racing for the same job
(a worker starting it, a user cancelling it) cannot both win.

The files of a job live beside the database (:mod:`pipelines.meeting.job_files`).

Every :class:`JobStore` method is a coroutine that runs its SQL in a worker thread
under one lock. Each is safe to cancel: the statement still completes (one
transaction) in its thread and its result is dropped. Times are Unix seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for the states a job never leaves."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Job:
    """One job. ``progress`` is 0–1; ``options`` are the job kind's own settings (JSON);
    ``attempts`` counts how often it was started (a resume after a restart adds one)."""

    id: str
    state: JobState
    created_at: float
    updated_at: float
    kind: str = "meeting"
    options: Mapping[str, Any] = field(default_factory=dict)
    stage: str | None = None
    progress: float = 0.0
    error: str | None = None
    error_code: str | None = None
    filename: str | None = None
    media_type: str | None = None
    duration_s: float | None = None
    size_bytes: int | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    """Who created the job (an API key's id, never the key); None without authentication."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = str(self.state)
        out["options"] = dict(self.options)
        return out


_COLUMNS = tuple(Job.__dataclass_fields__)
_UPDATABLE = frozenset(_COLUMNS) - {"id", "created_at", "updated_at", "kind", "options", "owner"}
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
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


class TooManyJobs(Exception):
    """The owner already has ``limit`` unfinished (queued or running) jobs."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this key already has {limit} unfinished meeting jobs; wait for one to finish"
        )
        self.limit = limit


def new_job_id() -> str:
    """A fresh random id: 32 lowercase hex digits (safe as a directory name)."""
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def _row_to_job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["state"] = JobState(values["state"])
    values["options"] = json.loads(values["options"])
    return Job(**values)


class JobStore:
    """The jobs table. Call :meth:`open` before use and :meth:`close` after;
    ``now`` gives wall-clock time in Unix seconds (injectable for tests)."""

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
        """Insert ``job`` (its ``created_at``/``updated_at`` are kept as given).

        With ``max_unfinished``, the insert happens only while the job's owner (one
        API key; all anonymous jobs count together) has fewer unfinished jobs, checked
        in the same statement so concurrent submits cannot overshoot; otherwise
        :class:`TooManyJobs` is raised."""
        values = job.to_dict()
        values["options"] = json.dumps(values["options"])
        names = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        params = tuple(values[name] for name in _COLUMNS)
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
        """A queued :class:`Job` stamped with the current time (not yet stored)."""
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
        """Jobs, newest first (or oldest first), optionally only those in ``states``
        and only those of ``owner`` (None: everyone's)."""
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
        self, job_id: str, *, expect: Collection[JobState] = (), **changes: Any
    ) -> Job | None:
        """Change fields of a job in one transaction; ``updated_at`` is set to now.

        With ``expect``, only a job currently in one of those states is changed.
        Returns the job as stored afterwards, or None when it does not exist or
        was not in an expected state.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        changes = {k: (str(v) if isinstance(v, JobState) else v) for k, v in changes.items()}
        changes["updated_at"] = self._now()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        where = "id = ?"
        params: list[Any] = [*changes.values(), job_id]
        if expect:
            where += f" AND state IN ({', '.join('?' for _ in expect)})"
            params.extend(str(s) for s in expect)
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
        """Finished jobs (succeeded, failed, cancelled) whose ``finished_at`` (Unix s)
        is before ``cutoff``, oldest first."""
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
