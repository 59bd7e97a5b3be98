"""Meeting jobs across processes: ``voice worker`` subprocesses, a real PostgreSQL
(from ``initdb``) with Procrastinate, and the server side of the queue in this process.

The workers are real (Whisper tiny.en and the diarizer on a 4 s clip); faults are
injected with the test-only hook ``VOICE_TEST_ONLY_JOB_HOOK``
(:mod:`pipelines.meeting.test_hooks`), chosen by the job's filename.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.meeting import pg_queue
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.meeting_jobs import TRANSCRIPT
from pipelines.meeting.pg_queue import ProcrastinateJobQueue
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.store import Job, JobState, new_job_id
from tests.conftest import data_path
from tests.pg_server import running_postgres

REPO = Path(__file__).resolve().parents[1]
CLIP = "deepspeech/arctic_a0024.wav"
"""4 s, one speaker: 'It was my reports from the north which chiefly induced people to buy.'"""
HEARTBEAT_S = 1.5
"""Short for quick retries, yet a worker loading models on a 2-core machine at load 10-15 must
still beat within 3 heartbeats: at 0.25 s (and at 1 s with a third worker loading) a live worker
was declared dead now and then (correctly fenced: its job simply ran twice)."""
JOB_TIMEOUT_S = 240.0
"""Ceiling for one job on a loaded 2-core machine (a failure, never a hang)."""
HELD = "waiting (test hook)"
"""The stage a job held by the hook's ``sleep`` shows."""
HOOKS = [
    {"filename": "crash-once", "action": "kill", "stage": "diarize", "attempts": [1]},
    {"filename": "poison", "action": "kill", "stage": "loading models"},
    {"filename": "slow", "action": "sleep", "seconds": 300, "attempts": [1]},
]


class Cluster:
    """``voice worker`` processes sharing one database and data folder."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url, root
        self.data_dir = root / "data"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": str(REPO),
            "VOICE_DATABASE_URL": self.url,
            "VOICE_JOB_BACKEND": "procrastinate",
            "VOICE_DATA_DIR": str(self.data_dir),
            "VOICE_CACHE_DIR": str(self.root / "cache"),
            "VOICE_STT_MODEL": "tiny.en",
            "VOICE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
            "VOICE_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
            "VOICE_LOG_FORMAT": "text",
            "VOICE_TEST_ONLY_JOB_HOOK": json.dumps(HOOKS),
        })
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        log = self.root / f"worker-{len(self.logs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                # Models load with the first job: workers the tests kill early spend no
                # CPU on them (start-up preloading is the default, not needed here).
                [sys.executable, "-m", "web.cli", "worker", "--no-preload"],
                cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        self.logs[proc.pid] = log
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def keep(self, n: int) -> None:
        """Exactly ``n`` live workers: spawn the missing ones, SIGTERM the extra ones."""
        live = self.alive()
        for extra in live[n:]:
            extra.send_signal(signal.SIGTERM)
            extra.wait(60)
        for _ in range(n - len(live)):
            self.spawn()

    def killed(self) -> int:
        return sum(w.returncode == -signal.SIGKILL for w in self.workers if w.poll() is not None)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def all_logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in self.logs.values())

    def stop(self) -> None:
        """SIGKILL what is left (their graceful stop is tested; the database goes next)."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_postgres() as postgres:
        running = Cluster(postgres.fresh_database("jobs"), tmp_path_factory.mktemp("cluster"))
        try:
            yield running
        finally:
            running.stop()


@contextlib.asynccontextmanager
async def server_queue(cluster: Cluster) -> AsyncIterator[ProcrastinateJobQueue]:
    """The server side of the queue (what ``voice serve`` runs with this backend)."""
    store = PostgresJobStore(cluster.url)
    await store.open()
    jobs = ProcrastinateJobQueue(store, JobFiles(cluster.data_dir))
    await jobs.start()
    try:
        yield jobs
    finally:
        await jobs.stop()
        await store.close()


@pytest.fixture
async def queue(cluster: Cluster) -> AsyncIterator[ProcrastinateJobQueue]:
    async with server_queue(cluster) as jobs:
        yield jobs


def new_job(queue: ProcrastinateJobQueue, filename: str) -> Job:
    """A job for the test clip, its upload in place."""
    job_id = new_job_id()
    upload = queue.files.upload(job_id)
    upload.parent.mkdir(parents=True)
    shutil.copyfile(data_path(CLIP), upload)
    return queue.store.new(
        job_id, options={"summarize": False}, filename=filename, media_type="audio/wav",
        duration_s=3.96, size_bytes=upload.stat().st_size,
    )


async def wait_job(
    queue: ProcrastinateJobQueue,
    job_id: str,
    done: Callable[[Job], bool] = lambda job: job.state.final,
    tick: Callable[[], None] = lambda: None,
) -> Job:
    """The job once ``done`` says so (``tick`` runs at each poll); fails after
    :data:`JOB_TIMEOUT_S`."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = await queue.store.get(job_id)
        assert job is not None
        if done(job):
            return job
        tick()
        await asyncio.sleep(0.1)
    pytest.fail(f"job {job_id} did not get there in time: {await queue.store.get(job_id)}")


def transcript_text(queue: ProcrastinateJobQueue, job_id: str) -> str:
    doc = json.loads(queue.files.result(job_id, TRANSCRIPT).read_text())
    return " ".join(segment["text"] for segment in doc["segments"]).lower()


@dataclass
class Faults:
    """What happened to the jobs of :func:`faults`, once all of them ended."""

    refused: BaseException | None
    lost_row: Job | None
    jobs: dict[str, Job]
    transcripts: dict[str, str]
    killed: int
    progress_seen: list[Job]
    logs: str


@pytest.fixture(scope="module")
def faults(cluster: Cluster) -> Faults:
    """Three faulty jobs at once on two workers, replaced as they die: ``crash-once``
    kills the worker that runs its first attempt mid-job (in diarization), ``poison``
    kills every worker it meets, and ``stray`` is a job row stored without a queue
    entry. Before that, one submit whose queue insert fails."""
    return asyncio.run(_run_faults(cluster))


async def _run_faults(cluster: Cluster) -> Faults:
    async def queue_down(*args: object, **kwargs: object) -> int:
        raise ConnectionError("the queue insert failed")

    async with server_queue(cluster) as queue:
        lost, refused = new_job(queue, "lost.wav"), None
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(pg_queue, "defer", queue_down)
            try:
                await queue.submit(lost)
            except ConnectionError as exc:
                refused = exc
        lost_row = await queue.store.get(lost.id)

        killed_before = cluster.killed()
        cluster.keep(2)
        stray = await queue.store.create(new_job(queue, "stray.wav"))
        crash, poison = new_job(queue, "crash-once.wav"), new_job(queue, "poison.wav")
        seen: list[Job] = []
        async with queue.subscribe(crash.id) as updates:
            for job in (crash, poison):
                await queue.submit(job)

            def tick() -> None:
                cluster.keep(2)
                seen.extend(updates.get_nowait() for _ in range(updates.qsize()))

            ended = {job.id: await wait_job(queue, job.id, tick=tick) for job in (crash, poison, stray)}
        transcripts = {
            job_id: transcript_text(queue, job_id)
            for job_id, job in ended.items() if job.state is JobState.SUCCEEDED
        }
    return Faults(
        refused, lost_row, {job.filename or "": job for job in ended.values()}, transcripts,
        cluster.killed() - killed_before, seen, cluster.all_logs(),
    )


def test_a_failed_queue_insert_accepts_nothing(faults: Faults) -> None:
    assert isinstance(faults.refused, ConnectionError)
    assert faults.lost_row is None  # row and queue entry are one transaction


def test_a_job_accepted_without_queue_entry_is_queued_by_reconcile(faults: Faults) -> None:
    stray = faults.jobs["stray.wav"]
    assert stray.state is JobState.SUCCEEDED and stray.attempts == 1, stray
    assert "north" in faults.transcripts[stray.id]
    assert f"job {stray.id} was accepted but not queued" in faults.logs


def test_a_killed_workers_job_is_finished_by_another(faults: Faults) -> None:
    crash = faults.jobs["crash-once.wav"]
    assert crash.state is JobState.SUCCEEDED and crash.attempts == 2, crash
    assert "north" in faults.transcripts[crash.id]
    assert faults.logs.count(f"job {crash.id} succeeded") == 1  # results written once
    assert f"job {crash.id} re-queued: its worker stopped responding" in faults.logs
    # Progress written by the workers reached this process through NOTIFY.
    assert any(
        s.state is JobState.RUNNING and s.stage == "transcribe" for s in faults.progress_seen
    ), faults.progress_seen


def test_a_job_that_kills_every_worker_fails_after_the_attempt_limit(faults: Faults) -> None:
    poison = faults.jobs["poison.wav"]
    assert poison.state is JobState.FAILED and poison.error_code == "too_many_attempts", poison
    assert poison.attempts == 3
    assert faults.killed == 1 + 3  # crash-once's first attempt, poison's three


async def test_cancel_frees_its_worker_and_sigterm_hands_a_job_to_another(
    cluster: Cluster, queue: ProcrastinateJobQueue
) -> None:
    cluster.keep(2)
    first, second = [await queue.submit(new_job(queue, f"slow-{n}.wav")) for n in (1, 2)]
    for job in (first, second):  # one on each worker, both held by the hook
        await wait_job(queue, job.id, lambda j: j.stage == HELD)
    holder = {
        job.id: next(w for w in cluster.alive() if f"job {job.id} started" in cluster.log(w))
        for job in (first, second)
    }
    started = time.monotonic()
    ended = await queue.cancel(first.id)
    took_s = time.monotonic() - started
    assert ended is not None and ended.state is JobState.CANCELLED, ended
    assert took_s < 5.0, f"cancelling a running job took {took_s:.1f} s"
    following = await queue.submit(new_job(queue, "next.wav"))  # the other worker is busy
    assert (await wait_job(queue, following.id)).state is JobState.SUCCEEDED
    free = holder[first.id]
    assert f"job {first.id} cancelled while running" in cluster.log(free)
    assert f"job {following.id} succeeded" in cluster.log(free)

    stopping = holder[second.id]
    stopping.send_signal(signal.SIGTERM)
    assert stopping.wait(60) == 0
    assert f"job {second.id} re-queued: this worker is stopping" in cluster.log(stopping)
    done = await wait_job(queue, second.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    assert f"job {second.id} succeeded" in cluster.log(free)
