"""Job records: the :class:`Job` model and the :class:`JobStore` protocol.

A job moves ``queued → running → succeeded | failed | cancelled``; transitions are
conditional (:meth:`JobStore.update` with ``expect``, an ``UPDATE … WHERE state
IN (…) RETURNING`` in SQL) so two actors racing for the same job (a worker
starting it, a user cancelling it) cannot both win. Two implementations:
:class:`~pipelines.meeting.sqlite_store.SqliteJobStore` (one file beside the job
files, the default) and :class:`~pipelines.meeting.pg_store.PostgresJobStore`
(``VOICE_DATABASE_URL``: shared by several servers and workers, announcing every
change with ``NOTIFY``). :func:`open_job_store` picks one from the settings.

The files of a job live elsewhere (:mod:`pipelines.meeting.job_files`).
Every store method is a coroutine, safe to cancel: the statement still completes
(one transaction) or is rolled back, never half-applied. Times are Unix seconds.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from voice.settings import Settings


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


COLUMNS = tuple(Job.__dataclass_fields__)
UPDATABLE = frozenset(COLUMNS) - {"id", "created_at", "updated_at", "kind", "options", "owner"}
"""The fields :meth:`JobStore.update` may change."""
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



def check_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` for :meth:`JobStore.update` with states as strings; ``ValueError``
    names a field that cannot be changed."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)}")
    return {k: (str(v) if isinstance(v, JobState) else v) for k, v in changes.items()}


def job_from_row(values: dict[str, Any], options: Mapping[str, Any]) -> Job:
    """A :class:`Job` from a row's columns (``options`` already decoded)."""
    values["state"] = JobState(values["state"])
    values["options"] = options
    return Job(**values)


class JobStore(Protocol):
    """The jobs table. Call :meth:`open` before use and :meth:`close` after."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def new(self, job_id: str, **fields: Any) -> Job:
        """A queued :class:`Job` stamped with the current time (not yet stored)."""
        ...

    async def create(self, job: Job, *, max_unfinished: int | None = None) -> Job:
        """Insert ``job`` (its times kept as given). With ``max_unfinished``, only while
        its owner (one API key; all anonymous jobs count together) has fewer unfinished
        jobs, checked in the same statement so concurrent submits cannot overshoot;
        otherwise :class:`TooManyJobs` is raised."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

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
        ...

    async def update(
        self,
        job_id: str,
        *,
        expect: Collection[JobState] = (),
        expect_attempts: int | None = None,
        **changes: Any,
    ) -> Job | None:
        """Change fields of a job in one transaction; ``updated_at`` is set to now.

        With ``expect``, only a job currently in one of those states is changed; with
        ``expect_attempts``, only while its ``attempts`` is that number (so a worker
        that lost its job to a retry cannot write over the new attempt). Returns the
        job as stored afterwards, or None when it does not exist or did not match.
        ``ValueError`` for a field that cannot be changed."""
        ...

    async def delete(self, job_id: str) -> bool: ...

    async def finished_before(self, cutoff: float, limit: int = 1000) -> tuple[Job, ...]:
        """Finished jobs whose ``finished_at`` (Unix s) is before ``cutoff``, oldest first."""
        ...

    async def ids(self) -> set[str]: ...


def open_job_store(settings: Settings) -> JobStore:
    """The store the settings ask for (not opened yet): PostgreSQL when
    ``database_url`` is set (psycopg is imported only then), else SQLite in
    ``data_dir``."""
    if settings.database_url:
        from pipelines.meeting.pg_store import PostgresJobStore

        return PostgresJobStore(settings.database_url)
    from pipelines.meeting.sqlite_store import SqliteJobStore

    return SqliteJobStore(settings.data_dir / "jobs.sqlite3")
