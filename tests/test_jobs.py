"""The job store and the in-process job queue, with scripted runners (no models).

Runners here are coroutines whose pace the test controls with events, so every
interleaving (cancel while queued, delete while running, stop mid-job, crash
recovery) is reached on purpose rather than by timing luck.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.jobs import MAX_ATTEMPTS, JobError, ProgressFn
from pipelines.meeting.local_queue import LocalJobQueue
from pipelines.meeting.sqlite_store import SqliteJobStore
from pipelines.meeting.store import Job, JobState, JobStore, new_job_id


class Script:
    """A runner that reports progress, then waits for ``release`` (per job id)."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.running = 0
        self.peak = 0
        self.cancelled: list[str] = []
        self.fail: dict[str, Exception] = {}
        self.thread_progress = False

    def gate(self, job_id: str) -> None:
        self.started.setdefault(job_id, asyncio.Event())
        self.release.setdefault(job_id, asyncio.Event())

    async def __call__(self, job: Job, progress: ProgressFn) -> Mapping[str, bytes]:
        self.gate(job.id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.thread_progress:
                await asyncio.to_thread(progress, "transcribe", 0.4)
            else:
                progress("transcribe", 0.4)
            self.started[job.id].set()
            await self.release[job.id].wait()
            if job.id in self.fail:
                raise self.fail[job.id]
            progress("summarize", 0.9)
            return {"transcript.json": b'{"ok": true}', "summary.json": b"{}"}
        except asyncio.CancelledError:
            self.cancelled.append(job.id)
            raise
        finally:
            self.running -= 1


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await s.open()
    yield s
    await s.close()


async def add_job(store: JobStore, files: JobFiles, script: Script, *, upload: bool = True) -> Job:
    job = store.new(new_job_id(), options={"summarize": False}, filename="a.wav")
    if upload:
        files.upload(job.id).parent.mkdir(parents=True)
        files.upload(job.id).write_bytes(b"RIFF")
    script.gate(job.id)
    return job


async def wait_state(store: JobStore, job_id: str, state: JobState, timeout_s: float = 5) -> Job:
    async def poll() -> Job:
        while True:
            job = await store.get(job_id)
            if job is not None and job.state is state:
                return job
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout_s)


async def test_store_roundtrip_conditional_update_and_wal(store: JobStore, tmp_path: Path) -> None:
    job = store.new(new_job_id(), options={"num_speakers": 2}, filename="x.mp3", size_bytes=10)
    await store.create(job)
    assert await store.get(job.id) == job
    running = await store.update(job.id, expect=[JobState.QUEUED], state=JobState.RUNNING)
    assert running is not None and running.state is JobState.RUNNING
    assert running.options == {"num_speakers": 2}
    # A transition from the wrong state does nothing.
    assert await store.update(job.id, expect=[JobState.QUEUED], state=JobState.CANCELLED) is None
    assert (await store.list(states=[JobState.RUNNING]))[0].id == job.id
    assert await store.list(states=[JobState.QUEUED]) == []
    with pytest.raises(ValueError):
        await store.update(job.id, id="other")
    assert await store.delete(job.id) and await store.get(job.id) is None
    mode = sqlite3.connect(tmp_path / "jobs.sqlite3").execute("PRAGMA journal_mode").fetchone()
    assert mode[0] == "wal"


async def test_job_runs_writes_results_and_publishes_progress(
    store: JobStore, tmp_path: Path
) -> None:
    files, script = JobFiles(tmp_path), Script()
    script.thread_progress = True  # progress reported from a worker thread
    queue = LocalJobQueue(store, files, script, progress_interval_s=0.01)
    await queue.start()
    try:
        job = await add_job(store, files, script)
        async with queue.subscribe(job.id) as events:
            await queue.submit(job)
            seen: list[Job] = []
            while not seen or not seen[-1].state.final:
                snapshot = await asyncio.wait_for(events.get(), 5)
                assert snapshot is not None
                seen.append(snapshot)
                if snapshot.stage == "transcribe":
                    assert snapshot.progress == 0.4
                    script.release[job.id].set()
        assert [s.state for s in seen[:2]] == [JobState.QUEUED, JobState.RUNNING]
        assert seen[-1].state is JobState.SUCCEEDED and seen[-1].progress == 1.0
        assert any(s.stage == "transcribe" for s in seen)
        assert files.result(job.id, "transcript.json").read_bytes() == b'{"ok": true}'
        assert not list(files.results_dir(job.id).glob(".*"))  # no temporary files left
        done = await store.get(job.id)
        assert done is not None and done.attempts == 1 and done.finished_at is not None
    finally:
        await queue.stop()


async def test_concurrency_bound_and_cancel_queued_and_running(
    store: JobStore, tmp_path: Path
) -> None:
    files, script = JobFiles(tmp_path), Script()
    queue = LocalJobQueue(store, files, script, concurrency=1)
    await queue.start()
    try:
        first, second, third = [await add_job(store, files, script) for _ in range(3)]
        for job in (first, second, third):
            await queue.submit(job)
        await script.started[first.id].wait()
        assert (await store.get(second.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        cancelled = await queue.cancel(second.id)
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        stopped = await queue.cancel(first.id)
        assert stopped is not None and stopped.state is JobState.CANCELLED
        assert script.cancelled == [first.id]
        await script.started[third.id].wait()
        script.release[third.id].set()
        await wait_state(store, third.id, JobState.SUCCEEDED)
        assert second.id not in script.started or not script.started[second.id].is_set()
        assert script.peak == 1
        assert await queue.cancel("0" * 32) is None
    finally:
        await queue.stop()


async def test_failures_and_delete_while_running(store: JobStore, tmp_path: Path) -> None:
    files, script = JobFiles(tmp_path), Script()
    queue = LocalJobQueue(store, files, script, concurrency=2)
    await queue.start()
    try:
        bad, doomed = await add_job(store, files, script), await add_job(store, files, script)
        script.fail[bad.id] = JobError("audio_corrupt", "the audio data could not be decoded")
        await queue.submit(bad)
        await queue.submit(doomed)
        await script.started[doomed.id].wait()
        script.release[bad.id].set()
        failed = await wait_state(store, bad.id, JobState.FAILED)
        assert failed.error_code == "audio_corrupt" and "decoded" in (failed.error or "")
        async with queue.subscribe(doomed.id) as events:
            assert await queue.delete(doomed.id)
            while await asyncio.wait_for(events.get(), 5) is not None:
                pass
        assert await store.get(doomed.id) is None
        assert not files.upload_dir(doomed.id).exists()
        assert doomed.id in script.cancelled
        assert not await queue.delete(doomed.id)
    finally:
        await queue.stop()


async def test_stop_mid_job_then_restart_resumes_it(store: JobStore, tmp_path: Path) -> None:
    files, script = JobFiles(tmp_path), Script()
    queue = LocalJobQueue(store, files, script)
    await queue.start()
    job = await add_job(store, files, script)
    await queue.submit(job)
    await script.started[job.id].wait()
    await queue.stop()
    assert (await store.get(job.id)).state is JobState.RUNNING  # type: ignore[union-attr]
    assert script.cancelled == [job.id]

    script.started[job.id].clear()
    again = LocalJobQueue(store, files, script)
    await again.start()
    try:
        await script.started[job.id].wait()
        script.release[job.id].set()
        done = await wait_state(store, job.id, JobState.SUCCEEDED)
        assert done.attempts == 2
    finally:
        await again.stop()


async def test_recovery_after_a_crash(store: JobStore, tmp_path: Path) -> None:
    """Rows left ``running`` by a dead process: resumed, or failed with a reason."""
    files, script = JobFiles(tmp_path), Script()
    resumable = await add_job(store, files, script)
    gone = await add_job(store, files, script, upload=False)
    worn = await add_job(store, files, script)
    waiting = await add_job(store, files, script)
    for job, attempts in ((resumable, 1), (gone, 1), (worn, MAX_ATTEMPTS)):
        await store.create(job)
        await store.update(job.id, state=JobState.RUNNING, attempts=attempts)
    await store.create(waiting)
    orphan = JobFiles(tmp_path).upload_dir(new_job_id())
    orphan.mkdir(parents=True)  # an upload cut short by the crash, never stored
    queue = LocalJobQueue(store, files, script, concurrency=2)
    await queue.start()
    try:
        for job in (resumable, waiting):
            await script.started[job.id].wait()
            script.release[job.id].set()
            await wait_state(store, job.id, JobState.SUCCEEDED)
        failed = await store.get(gone.id)
        assert failed is not None and failed.state is JobState.FAILED
        assert failed.error_code == "upload_missing"
        worn_out = await store.get(worn.id)
        assert worn_out is not None and worn_out.error_code == "too_many_attempts"
        assert not orphan.exists()
    finally:
        await queue.stop()


def test_progress_pump_drops_reports_after_loop_closed() -> None:
    from pipelines.meeting.job_events import ProgressPump

    loop = asyncio.new_event_loop()
    pump = ProgressPump(loop)
    loop.close()
    errors: list[BaseException] = []

    def report() -> None:
        try:
            pump("x", 0.5)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=report)
    thread.start()
    thread.join()
    assert errors == []
