"""Work that must not be lost or grow without bound, without a server: a live
recording spooled to disk as it arrives and recovered after a crash, the job
store's durable commits, the orphan sweep sparing spools, the per-key cap on
unfinished jobs and the retention sweep (driven by an injected clock).

The server-level checks (SIGKILL mid-recording and right after a 202, the 429
over HTTP) are in ``tests/test_durability_server.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from pipelines.meeting.job_files import SPOOL_MARKER, JobFiles
from pipelines.meeting.local_queue import LocalJobQueue
from pipelines.meeting.spool import HEADER_BYTES, RATE, RecordingSpool, repair_wav
from pipelines.meeting.spool_recovery import recover_spools
from pipelines.meeting.sqlite_store import SqliteJobStore
from pipelines.meeting.store import JobState, JobStore, TooManyJobs, new_job_id
from tests.conftest import load_clip
from tests.test_jobs import Script, add_job, wait_state
from voice.audio.decode import decode_audio
from voice.audio.wav import read_wav

JFK = "openai-whisper/jfk.wav"
DAY_S = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await s.open()
    yield s
    await s.close()


def jfk_pcm() -> np.ndarray:
    return (load_clip(JFK) * 32767).astype(np.int16)


async def spool_clip(path: Path, pcm: np.ndarray, chunk: int = 640) -> RecordingSpool:
    """Append ``pcm`` in 40 ms chunks, checking the file holds every chunk at once."""
    spool = await asyncio.to_thread(RecordingSpool.create, path)
    for offset in range(0, len(pcm), chunk):
        await spool.append(pcm[offset : offset + chunk])
        assert (await asyncio.to_thread(path.stat)).st_size == HEADER_BYTES + 2 * spool.samples
    return spool


# --- the spool ----------------------------------------------------------------------------------


async def test_spool_holds_the_audio_as_it_arrives_and_survives_a_crash(tmp_path: Path) -> None:
    pcm = jfk_pcm()
    path = tmp_path / "uploads" / "x" / "original"
    spool = await spool_clip(path, pcm)
    # Mid-recording the file already decodes (the header says "size unknown").
    decoded = await asyncio.to_thread(decode_audio, path)
    assert abs(len(decoded) - len(pcm)) <= RATE // 100
    # A crash: the spool is never finished. The repair gives an exact WAV.
    abandon(spool)
    assert await asyncio.to_thread(repair_wav, path) == len(pcm)
    samples, rate = read_wav(path)
    assert rate == RATE and np.array_equal(samples, pcm)
    await spool.discard()
    assert not path.exists()


async def test_a_finished_spool_is_an_exact_wav_and_late_writes_are_dropped(tmp_path: Path) -> None:
    pcm = jfk_pcm()[: 3 * RATE]
    path = tmp_path / "original"
    spool = await spool_clip(path, pcm)
    assert await spool.finish() == path
    await spool.append(pcm[:640])  # a write racing the close does not corrupt the file
    samples, rate = read_wav(path)
    assert rate == RATE and np.array_equal(samples, pcm)
    assert path.stat().st_size == HEADER_BYTES + 2 * len(pcm)


def test_repair_refuses_a_file_that_is_not_a_spool(tmp_path: Path) -> None:
    path = tmp_path / "original"
    path.write_bytes(b"ID3" + bytes(100))
    with pytest.raises(ValueError):
        repair_wav(path)


# --- recovery of spools at start-up --------------------------------------------------------------


async def spooled_job(files: JobFiles, seconds: float, owner: str | None = "key_a") -> str:
    """A live recording as a killed server leaves it: marker + unfinished spool."""
    job_id = new_job_id()
    files.upload_dir(job_id).mkdir(parents=True)
    files.spool_marker(job_id).write_text(json.dumps({"owner": owner, "title": "standup"}))
    spool = await spool_clip(files.upload(job_id), jfk_pcm()[: int(seconds * RATE)], chunk=4000)
    abandon(spool)
    return job_id


def abandon(spool: RecordingSpool) -> None:
    """What a killed process does to its spool: the file is closed, never finished."""
    assert spool._file is not None
    spool._file.close()
    spool._file = None


async def test_start_recovers_interrupted_recordings_as_jobs(
    store: JobStore, tmp_path: Path
) -> None:
    files, script = JobFiles(tmp_path), Script()
    long_id = await spooled_job(files, 5.0)
    short_id = await spooled_job(files, 0.5)
    stored_id = await spooled_job(files, 2.0)  # the crash came after its row was written
    await store.create(store.new(stored_id, filename="already stored"))
    orphan = files.upload_dir(new_job_id())  # an upload cut short: no row, no marker
    orphan.mkdir(parents=True)
    for job_id in (stored_id, long_id):
        script.gate(job_id)
        script.release[job_id].set()
    queue = LocalJobQueue(store, files, script)
    await queue.start()
    try:
        assert not orphan.exists()  # the orphan sweep ran, and spared the spools
        assert files.upload(long_id).exists() and files.upload(short_id).exists()
        assert await recover_spools(store, queue, files) == [long_id]
        job = await store.get(long_id)
        assert job is not None and job.owner == "key_a" and job.filename == "standup"
        assert job.duration_s == pytest.approx(5.0, abs=0.01)
        samples, _ = read_wav(files.upload(long_id))
        assert np.array_equal(samples, jfk_pcm()[: 5 * RATE])
        assert not files.spool_marker(long_id).exists()
        assert not files.upload_dir(short_id).exists()  # too short to be a meeting
        assert not files.spool_marker(stored_id).exists()
        stored = await store.get(stored_id)
        assert stored is not None and stored.filename == "already stored"
        await wait_state(store, long_id, JobState.SUCCEEDED)
    finally:
        await queue.stop()


# --- durable commits ----------------------------------------------------------------------------


async def test_the_store_commits_with_full_sync(store: JobStore) -> None:
    """A committed job survives a power loss only with FULL (2): NORMAL (1) in WAL
    mode may lose the last transactions, and the orphan sweep then deletes uploads."""
    rows = await asyncio.to_thread(store._run, "PRAGMA synchronous")
    assert rows[0][0] == 2


# --- the per-key cap on unfinished jobs ---------------------------------------------------------


# The store's own cap (atomic under concurrent submits) is in tests/test_job_store_contract.py.


async def test_queue_refuses_beyond_the_cap_until_one_finishes(
    store: JobStore, tmp_path: Path
) -> None:
    files, script = JobFiles(tmp_path), Script()
    queue = LocalJobQueue(store, files, script, max_unfinished_per_owner=2)
    await queue.start()
    try:
        first, second, third = [await add_job(store, files, script) for _ in range(3)]
        await queue.submit(first)
        await queue.submit(second)
        with pytest.raises(TooManyJobs):
            await queue.submit(third)
        assert await store.get(third.id) is None
        await script.started[first.id].wait()
        script.release[first.id].set()
        await wait_state(store, first.id, JobState.SUCCEEDED)
        await queue.submit(third)
        assert await store.get(third.id) is not None
        live = await add_job(store, files, script)
        await queue.submit(live, limit_owner=False)  # a recorded meeting is never refused
        assert len(await store.list(states=[JobState.QUEUED, JobState.RUNNING])) == 3
    finally:
        for event in script.release.values():
            event.set()
        await queue.stop()


# --- retention ----------------------------------------------------------------------------------


class WallClock:
    """Injected Unix time that the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class StepClock:
    """A pacing clock whose sleeps of ``interval_s`` (the retention sweep's) return only
    when the test calls :meth:`step`; other sleeps (progress reports) are real."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.sleeping = asyncio.Event()
        self._wake = asyncio.Event()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        if seconds != self.interval_s:
            await asyncio.sleep(seconds)
            return
        self.sleeping.set()
        await self._wake.wait()
        self._wake.clear()

    async def step(self) -> None:
        """Wake the sleeper and wait until it sleeps again (one more sweep done)."""
        self.sleeping.clear()
        self._wake.set()
        await asyncio.wait_for(self.sleeping.wait(), 5)


async def finished_job(
    store: JobStore, files: JobFiles, at: float, state: JobState = JobState.SUCCEEDED
) -> str:
    job_id = new_job_id()
    files.upload_dir(job_id).mkdir(parents=True)
    files.upload(job_id).write_bytes(b"RIFF")
    files.write_results(job_id, {"transcript.json": b"{}"})
    await store.create(store.new(job_id))
    await store.update(job_id, state=state, finished_at=at)
    return job_id


async def test_retention_deletes_old_finished_jobs_with_their_files(
    store: JobStore, tmp_path: Path
) -> None:
    now, clock = WallClock(), StepClock(interval_s=3600)
    files, script = JobFiles(tmp_path), Script()
    old = await finished_job(store, files, now() - 31 * DAY_S)
    old_failed = await finished_job(store, files, now() - 40 * DAY_S, JobState.FAILED)
    recent = await finished_job(store, files, now() - 29 * DAY_S)
    running = await finished_job(store, files, 0.0, JobState.RUNNING)  # interrupted long ago
    queue = LocalJobQueue(
        store,
        files,
        script,
        now=now,
        clock=clock,
        retention_s=30 * DAY_S,
        retention_interval_s=3600,
    )
    script.gate(running)
    await queue.start()  # resumes the running job, and sweeps once
    try:
        await asyncio.wait_for(clock.sleeping.wait(), 5)
        for gone in (old, old_failed):
            assert await store.get(gone) is None
            assert not files.upload_dir(gone).exists() and not files.results_dir(gone).exists()
        assert await store.get(recent) is not None and files.upload(recent).exists()
        await script.started[running].wait()
        now.t += 2 * DAY_S  # the recent job is now 31 days old; the running one never expires
        await clock.step()
        assert await store.get(recent) is None and not files.results_dir(recent).exists()
        job = await store.get(running)
        assert job is not None and job.state is JobState.RUNNING
        assert files.upload(running).exists()
    finally:
        script.release[running].set()
        await queue.stop()


async def test_retention_zero_keeps_everything(store: JobStore, tmp_path: Path) -> None:
    files, now = JobFiles(tmp_path), WallClock()
    ancient = await finished_job(store, files, 0.0)
    queue = LocalJobQueue(store, files, Script(), now=now, retention_s=None)
    await queue.start()
    try:
        assert await queue.sweep_expired() == []
        assert await store.get(ancient) is not None and files.upload(ancient).exists()
    finally:
        await queue.stop()


def test_orphan_sweep_spares_a_spooling_recording(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    spooling, orphan = new_job_id(), new_job_id()
    for job_id in (spooling, orphan):
        files.upload_dir(job_id).mkdir(parents=True)
        files.upload(job_id).write_bytes(b"RIFF")
    (files.upload_dir(spooling) / SPOOL_MARKER).write_text("{}")
    assert files.sweep_orphans(set()) == [orphan]
    assert files.upload(spooling).exists()
