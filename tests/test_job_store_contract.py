"""The job store contract, run against both stores: SQLite (the default) and a real
PostgreSQL server started from ``initdb`` for this module."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pipelines.meeting.sqlite_store import SqliteJobStore
from pipelines.meeting.store import Job, JobState, JobStore, TooManyJobs, new_job_id
from tests.pg_server import PostgresServer, running_postgres


class WallClock:
    """Settable Unix time, so ordering and cut-offs do not depend on the real clock."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[JobStore]:
    clock = WallClock()
    s: JobStore
    if request.param == "sqlite":
        s = SqliteJobStore(tmp_path / "jobs.sqlite3", now=clock)
    else:
        from pipelines.meeting.pg_store import PostgresJobStore

        server: PostgresServer = request.getfixturevalue("postgres")
        s = PostgresJobStore(server.fresh_database(f"t{uuid.uuid4().hex[:12]}"), now=clock)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_roundtrip_and_conditional_transitions(store: JobStore) -> None:
    job = store.new(
        new_job_id(), options={"num_speakers": 2, "known_speaker_names": ["Ann"]},
        filename="x.mp3", size_bytes=10, duration_s=3.5, owner="key_a",
    )
    await store.create(job)
    assert await store.get(job.id) == job
    running = await store.update(
        job.id, expect=[JobState.QUEUED], state=JobState.RUNNING, attempts=1
    )
    assert running is not None and running.state is JobState.RUNNING
    assert running.options == {"num_speakers": 2, "known_speaker_names": ["Ann"]}
    assert running.updated_at > job.updated_at and running.created_at == job.created_at
    # A transition from the wrong state, or for another attempt, does nothing.
    assert await store.update(job.id, expect=[JobState.QUEUED], state=JobState.CANCELLED) is None
    assert await store.update(job.id, expect_attempts=2, progress=0.5) is None
    moved = await store.update(job.id, expect_attempts=1, stage="transcribe", progress=0.5)
    assert moved is not None and (moved.stage, moved.progress) == ("transcribe", 0.5)
    with pytest.raises(ValueError, match="cannot update"):
        await store.update(job.id, owner="someone else")
    assert await store.update(new_job_id(), state=JobState.FAILED) is None
    assert await store.delete(job.id) and await store.get(job.id) is None
    assert not await store.delete(job.id)


async def test_racing_transitions_have_one_winner(store: JobStore) -> None:
    job = await store.create(store.new(new_job_id()))
    results = await asyncio.gather(
        *(
            store.update(job.id, expect=[JobState.QUEUED], state=state)
            for state in [JobState.RUNNING, JobState.CANCELLED] * 4
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await store.get(job.id)) == winners[0]


async def test_list_filters_orders_and_limits(store: JobStore) -> None:
    jobs = [await store.create(store.new(new_job_id(), owner=o)) for o in ("a", "b", "a", None)]
    await store.update(jobs[2].id, state=JobState.RUNNING)
    newest = await store.list()
    assert [j.id for j in newest] == [j.id for j in reversed(jobs)]
    assert [j.id for j in await store.list(oldest_first=True, limit=2)] == [jobs[0].id, jobs[1].id]
    assert [j.id for j in await store.list(owner="a")] == [jobs[2].id, jobs[0].id]
    assert [j.id for j in await store.list(states=[JobState.RUNNING])] == [jobs[2].id]
    assert await store.ids() == {j.id for j in jobs}


async def test_cap_counts_unfinished_jobs_per_owner_atomically(store: JobStore) -> None:
    def job(owner: str | None) -> Job:
        return store.new(new_job_id(), owner=owner)

    results = await asyncio.gather(
        *(store.create(job("a"), max_unfinished=3) for _ in range(6)), return_exceptions=True
    )
    assert sum(isinstance(r, Job) for r in results) == 3
    assert all(isinstance(r, TooManyJobs) for r in results if not isinstance(r, Job))
    await store.create(job("b"), max_unfinished=3)  # another key is not affected
    for _ in range(3):
        await store.create(job(None), max_unfinished=3)  # anonymous jobs count together
    with pytest.raises(TooManyJobs):
        await store.create(job(None), max_unfinished=3)
    first = (await store.list(owner="a"))[0]
    await store.update(first.id, state=JobState.FAILED)
    await store.create(job("a"), max_unfinished=3)  # a finished job frees a place


async def test_finished_before_returns_old_final_jobs_oldest_first(store: JobStore) -> None:
    done = [await store.create(store.new(new_job_id())) for _ in range(3)]
    for n, job in enumerate(done):
        await store.update(job.id, state=JobState.SUCCEEDED, finished_at=100.0 + n)
    await store.create(store.new(new_job_id()))  # queued: never returned
    old = await store.finished_before(101.5)
    assert [j.id for j in old] == [done[0].id, done[1].id]


async def test_postgres_announces_every_change(postgres: PostgresServer) -> None:
    """Any replica can follow a job: create, update and delete each NOTIFY its id."""
    import psycopg

    from pipelines.meeting.pg_store import JOB_CHANNEL, PostgresJobStore

    url = postgres.fresh_database("notify")
    store = PostgresJobStore(url)
    await store.open()
    listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await listener.execute(f"LISTEN {JOB_CHANNEL}")
        job = await store.create(store.new(new_job_id()))
        await store.update(job.id, expect=[JobState.QUEUED], state=JobState.RUNNING)
        assert await store.update(job.id, expect=[JobState.QUEUED], progress=1.0) is None
        await store.delete(job.id)
        seen = []
        async for note in listener.notifies(timeout=5.0, stop_after=3):
            seen.append((note.channel, note.payload))
        assert seen == [(JOB_CHANNEL, job.id)] * 3  # the refused update sent nothing
    finally:
        await listener.close()
        await store.close()


def test_without_cluster_settings_no_cluster_package_is_imported(tmp_path: Path) -> None:
    """No ``VOICE_DATABASE_URL``: the server's job lifespan runs on SQLite with the
    in-process queue, and psycopg and Procrastinate are never imported."""
    import subprocess
    import sys

    script = """
import asyncio, sys
from starlette.applications import Starlette
import web.app, web.cli
from web.meetings.routes import job_worker
from voice.settings import load_settings

async def main():
    app = Starlette()
    app.state.settings = load_settings(data_dir=sys.argv[1])
    app.state.services = None  # no job runs here; models are never touched
    async with job_worker(app):
        print(type(app.state.meetings.store).__name__, type(app.state.meetings.queue).__name__)

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool", "procrastinate"))
print("cluster modules:", loaded)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICE_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    ).stdout
    assert "SqliteJobStore LocalJobQueue" in out, out
    assert "cluster modules: []" in out, out


async def test_retention_sweep_deletes_old_finished_jobs_and_their_files(
    store: JobStore, tmp_path: Path
) -> None:
    """What every worker runs hourly with Procrastinate (and the server with the local queue)."""
    from pipelines.meeting.job_files import JobFiles
    from pipelines.meeting.retention import sweep_expired

    files = JobFiles(tmp_path / "data")
    old, recent, running = [await store.create(store.new(new_job_id())) for _ in range(3)]
    await store.update(old.id, state=JobState.SUCCEEDED, finished_at=1000.0)
    await store.update(recent.id, state=JobState.FAILED, finished_at=1900.0)
    await store.update(running.id, state=JobState.RUNNING)
    for job in (old, recent, running):
        files.write_results(job.id, {"transcript.json": b"{}"})
    told: list[tuple[str, object]] = []
    removed = await sweep_expired(store, files, 500.0, 2000.0, lambda i, j: told.append((i, j)))
    assert removed == [old.id] and told == [(old.id, None)]
    assert await store.ids() == {recent.id, running.id}
    assert not files.results_dir(old.id).exists() and files.results_dir(recent.id).exists()
