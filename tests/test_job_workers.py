"""Meeting jobs across processes, with real servers: PostgreSQL (from ``initdb``) with
Procrastinate, SeaweedFS as S3 (``weed mini``), Redis, two ``voice worker`` subprocesses
that share no folder with anyone (each its own ``VOICE_DATA_DIR``; uploads and results
live in S3), and two ``voice serve`` replicas (A, B) in this process.

Every server and worker starts once for the module and serves all its scenarios: the
faults (a SIGKILLed worker's job, a job that kills every worker, a lost queue entry, a
failed queue insert), cancelling through B with the next job (a meeting uploaded to A)
taken by the freed worker and read back from B, deleting it through B, and a SIGTERM
hand-over. The workers run Whisper tiny.en and the diarizer on a 3 s clip; faults are
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
from typing import Any

import boto3
import httpx
import pytest

from pipelines.meeting import pg_queue
from pipelines.meeting.blob_s3 import S3BlobStore
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.meeting_jobs import TRANSCRIPT
from pipelines.meeting.pg_queue import ProcrastinateJobQueue
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.store import Job, JobState, new_job_id
from pipelines.services import Services
from tests.api_helpers import api_settings, serve
from tests.conftest import data_path
from tests.pg_server import running_postgres
from tests.redis_server import RedisServer
from tests.s3_server import S3Server
from tests.servers import ServerThread

REPO = Path(__file__).resolve().parents[1]
CLIP = "deepspeech/LDC93S1.wav"
"""2.9 s, one speaker: 'She had your dark suit in greasy wash water all year.'"""
WORD = "greasy"
BUCKET = "voice-jobs"
HEARTBEAT_S = 1.5
"""Short for quick retries, yet a worker loading models on a 2-core machine at load 10-15 must
still beat within 3 heartbeats: at 0.25 s (and at 1 s with a third worker loading) a live worker
was declared dead now and then (correctly fenced: its job simply ran twice)."""
JOB_TIMEOUT_S = 240.0
"""Ceiling for one job on a loaded 2-core machine (a failure, never a hang)."""
SPARE = 3
"""Live workers during the fault scenarios: one more than the jobs that can hold one, so a
killed worker's job is retried by a worker already started (a start takes ~10 s at load 10)."""
HELD = "waiting (test hook)"
"""The stage a job held by the hook's ``sleep`` shows."""
HOOKS = [  # kills come as the job starts: a killed worker spends no CPU on loading models
    {"filename": "crash-once", "action": "kill", "stage": "loading models", "attempts": [1]},
    {"filename": "poison", "action": "kill", "stage": "loading models"},
    {"filename": "slow", "action": "sleep", "seconds": 300, "attempts": [1]},
]


@dataclass
class Backends:
    """The shared servers: one database, one bucket, one Redis."""

    url: str
    s3: S3Server
    redis: RedisServer

    @property
    def blob_url(self) -> str:
        return f"s3://{BUCKET}/meetings"

    def blobs(self) -> S3BlobStore:
        return S3BlobStore.from_url(self.blob_url, endpoint_url=self.s3.endpoint_url)

    def keys(self, job_id: str) -> list[str]:
        """Every object of ``job_id`` in the bucket."""
        client = boto3.client("s3", endpoint_url=self.s3.endpoint_url)
        found = []
        for folder in ("uploads", "results"):
            answer = client.list_objects_v2(Bucket=BUCKET, Prefix=f"meetings/{folder}/{job_id}/")
            found += [item["Key"] for item in answer.get("Contents", [])]
        return found


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    with (
        running_postgres() as postgres,
        S3Server(BUCKET) as s3,
        RedisServer() as redis,
        pytest.MonkeyPatch.context() as env,
    ):
        for name, value in s3.env().items():
            env.setenv(name, value)
        s3.wait_for_bucket()
        yield Backends(postgres.fresh_database("jobs"), s3, redis)


class Cluster:
    """``voice worker`` processes sharing the database and the bucket, each with a data
    folder of its own."""

    def __init__(self, backends: Backends, root: Path) -> None:
        self.backends, self.root = backends, root
        self.url = backends.url
        self.workers: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def env(self, n: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": str(REPO),
            "VOICE_DATABASE_URL": self.url,
            "VOICE_JOB_BACKEND": "procrastinate",
            "VOICE_BLOB_URL": self.backends.blob_url,
            "VOICE_S3_ENDPOINT_URL": self.backends.s3.endpoint_url,
            "VOICE_DATA_DIR": str(self.root / f"worker-{n}"),
            "VOICE_CACHE_DIR": str(self.root / "cache"),
            "VOICE_STT_MODEL": "tiny.en",
            "VOICE_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # refused: extractive summaries
            "VOICE_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
            "VOICE_LOG_FORMAT": "text",
            "VOICE_TEST_ONLY_JOB_HOOK": json.dumps(HOOKS),
        })
        return env

    def spawn(self) -> subprocess.Popen[bytes]:
        n = len(self.logs)
        log = self.root / f"worker-{n}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                # Models load with the first job: workers the tests kill early spend no
                # CPU on them (start-up preloading is the default, not needed here).
                [sys.executable, "-m", "web.cli", "worker", "--no-preload"],
                cwd=REPO, env=self.env(n), stdout=out, stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        self.logs[proc.pid] = log
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [w for w in self.workers if w.poll() is None]

    def keep(self, n: int) -> None:
        """At least ``n`` live workers: spawn the missing ones."""
        for _ in range(n - len(self.alive())):
            self.spawn()

    def trim(self, n: int) -> None:
        """At most ``n`` live workers: SIGTERM the extra ones (idle spares go first)."""
        live = sorted(self.alive(), key=lambda w: "succeeded" in self.log(w), reverse=True)
        for extra in live[n:]:
            extra.send_signal(signal.SIGTERM)
            extra.wait(60)

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
def cluster(backends: Backends, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(backends, tmp_path_factory.mktemp("cluster"))
    running.keep(SPARE)  # they start while the rest is set up
    try:
        yield running
    finally:
        running.stop()


@contextlib.asynccontextmanager
async def server_queue(cluster: Cluster) -> AsyncIterator[ProcrastinateJobQueue]:
    """The server side of the queue (what ``voice serve`` runs with this backend)."""
    store = PostgresJobStore(cluster.url)
    await store.open()
    files = JobFiles(cluster.root / "server")
    jobs = ProcrastinateJobQueue(store, files, blobs=cluster.backends.blobs())
    await jobs.start()
    try:
        yield jobs
    finally:
        await jobs.stop()
        await store.close()


def new_job(queue: ProcrastinateJobQueue, filename: str) -> Job:
    """A job for the test clip, its upload staged (``submit`` publishes it to S3)."""
    job_id = new_job_id()
    upload = queue.files.upload(job_id)
    upload.parent.mkdir(parents=True)
    shutil.copyfile(data_path(CLIP), upload)
    return queue.store.new(
        job_id, options={"summarize": False}, filename=filename, media_type="audio/wav",
        duration_s=2.92, size_bytes=upload.stat().st_size,
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


async def transcript_text(queue: ProcrastinateJobQueue, job_id: str) -> str:
    data = await queue.blobs.read_result(job_id, TRANSCRIPT)
    assert data is not None, f"job {job_id} has no transcript in S3"
    return " ".join(segment["text"] for segment in json.loads(data)["segments"]).lower()


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
    """Three faulty jobs at once on :data:`SPARE` workers, replaced as they die:
    ``crash-once`` kills the worker that runs its first attempt (after claiming it),
    ``poison`` kills every worker it meets, and ``stray`` is a job row stored without
    a queue entry. Before that, one submit whose queue insert fails."""
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
        cluster.keep(SPARE)
        stray = new_job(queue, "stray.wav")
        await queue.blobs.publish_upload(stray.id)
        stray = await queue.store.create(stray)
        crash, poison = new_job(queue, "crash-once.wav"), new_job(queue, "poison.wav")
        seen: list[Job] = []
        async with queue.subscribe(crash.id) as updates:
            for job in (crash, poison):
                await queue.submit(job)

            def tick() -> None:
                cluster.keep(SPARE)
                seen.extend(updates.get_nowait() for _ in range(updates.qsize()))

            ended = {job.id: await wait_job(queue, job.id, tick=tick) for job in (crash, poison, stray)}
        transcripts = {
            job_id: await transcript_text(queue, job_id)
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
    assert WORD in faults.transcripts[stray.id]
    assert f"job {stray.id} was accepted but not queued" in faults.logs


def test_a_killed_workers_job_is_finished_by_another(faults: Faults) -> None:
    crash = faults.jobs["crash-once.wav"]
    assert crash.state is JobState.SUCCEEDED and crash.attempts == 2, crash
    assert WORD in faults.transcripts[crash.id]
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


@pytest.fixture(scope="module")
def replicas(
    backends: Backends, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two ``voice serve`` replicas on the shared servers, each with a data folder of
    its own (they load no batch models: the workers run the jobs)."""

    def settings(name: str) -> Any:
        return api_settings(
            tmp_path_factory.mktemp(name),
            database_url=backends.url,
            job_backend="procrastinate",
            redis_url=backends.redis.url,
            blob_url=backends.blob_url,
            s3_endpoint_url=backends.s3.endpoint_url,
        )

    with serve(settings("a"), services) as a, serve(settings("b"), services) as b:
        yield a, b


@dataclass
class Handoff:
    """What :func:`handoff` saw, in order."""

    cancelled: dict[str, Any]
    cancel_took_s: float
    holders: dict[str, subprocess.Popen[bytes]]
    slow: tuple[str, str]
    meeting: dict[str, Any]
    objects_before_delete: list[str]
    events_from_b: list[dict[str, Any]]
    state_from_b: dict[str, Any]
    transcript_from_b: str
    summary_from_b: dict[str, Any]
    audio_from_b: bytes
    deleted: dict[str, Any]
    after_delete: int
    objects_after_delete: list[str]
    sigterm_exit: int | None
    handed_over: Job


async def sse_events(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """The ``job`` events of a meeting's stream until it ends (a final state)."""
    events = []
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


@pytest.fixture(scope="module")
def handoff(cluster: Cluster, replicas: tuple[ServerThread, ServerThread]) -> Handoff:
    """Two held jobs, one on each worker; the first is cancelled through B; a meeting
    uploaded to A is then taken by the freed worker (the other is busy) and read back
    and deleted through B; finally the busy worker gets SIGTERM and hands its job over."""
    return asyncio.run(_run_handoff(cluster, *replicas))


async def _run_handoff(cluster: Cluster, a: ServerThread, b: ServerThread) -> Handoff:
    cluster.trim(2)
    cluster.keep(2)
    async with server_queue(cluster) as queue, httpx.AsyncClient(timeout=60) as http:
        slow = [await queue.submit(new_job(queue, f"slow-{n}.wav")) for n in (1, 2)]
        for job in slow:  # one on each worker, both held by the hook
            await wait_job(queue, job.id, lambda j: j.stage == HELD)
        holders = {
            job.id: next(w for w in cluster.alive() if f"job {job.id} started" in cluster.log(w))
            for job in slow
        }
        started = time.monotonic()
        cancelled = await http.post(f"{b.http_url}/v1/meetings/{slow[0].id}/cancel")
        took_s = time.monotonic() - started

        with data_path(CLIP).open("rb") as clip:
            answer = await http.post(
                f"{a.http_url}/v1/meetings",
                files={"file": ("standup.wav", clip, "audio/wav")},
                data={"summarize": "true", "num_speakers": "1"},
            )
        assert answer.status_code == 202, answer.text
        meeting = answer.json()
        one = f"{b.http_url}/v1/meetings/{meeting['id']}"
        events = await sse_events(http, f"{one}/events")
        if events[-1]["state"] == "running":  # the stream ended by time: follow on
            events += await sse_events(http, f"{one}/events")
        state = (await http.get(one)).json()
        transcript = (await http.get(f"{one}/transcript", params={"format": "txt"})).text
        summary = (await http.get(f"{one}/summary")).json()
        audio = (await http.get(f"{one}/audio")).content
        objects = cluster.backends.keys(meeting["id"])
        deleted = (await http.delete(one)).json()
        after = (await http.get(one)).status_code

        stopping = holders[slow[1].id]
        stopping.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(stopping.wait, 60)
        handed_over = await wait_job(queue, slow[1].id)
    return Handoff(
        cancelled.json(), took_s, holders, (slow[0].id, slow[1].id), meeting, objects, events,
        state, transcript.lower(), summary, audio, deleted, after,
        cluster.backends.keys(meeting["id"]), exit_code, handed_over,
    )


def test_cancel_through_b_stops_the_running_job_within_seconds(handoff: Handoff) -> None:
    assert handoff.cancelled["state"] == "cancelled", handoff.cancelled
    assert handoff.cancel_took_s < 5.0, f"cancelling a running job took {handoff.cancel_took_s:.1f} s"


def test_the_freed_worker_takes_the_next_job(cluster: Cluster, handoff: Handoff) -> None:
    free = handoff.holders[handoff.slow[0]]
    assert f"job {handoff.slow[0]} cancelled while running" in cluster.log(free)
    assert f"job {handoff.meeting['id']} succeeded" in cluster.log(free)


def test_a_meeting_uploaded_to_a_is_transcribed_and_readable_from_b(handoff: Handoff) -> None:
    assert handoff.meeting["state"] == "queued"
    states = [event["state"] for event in handoff.events_from_b]
    assert states[-1] == "succeeded" and states[0] in ("queued", "running"), states
    assert any(e["state"] == "running" and e["stage"] for e in handoff.events_from_b), states
    assert handoff.state_from_b["state"] == "succeeded" and handoff.state_from_b["attempts"] == 1
    assert WORD in handoff.transcript_from_b, handoff.transcript_from_b
    methods = set(handoff.summary_from_b["method"].values())
    assert methods == {"extractive"}, handoff.summary_from_b  # the LLM is unreachable
    assert handoff.audio_from_b == data_path(CLIP).read_bytes()


def test_deleting_through_b_removes_its_objects(handoff: Handoff) -> None:
    meeting = handoff.meeting["id"]
    assert f"meetings/uploads/{meeting}/original" in handoff.objects_before_delete
    assert f"meetings/results/{meeting}/transcript.json" in handoff.objects_before_delete
    assert f"meetings/results/{meeting}/summary.json" in handoff.objects_before_delete
    assert handoff.deleted == {"id": meeting, "object": "meeting.deleted", "deleted": True}
    assert handoff.after_delete == 404
    assert handoff.objects_after_delete == []


def test_sigterm_hands_a_running_job_to_another_worker(
    cluster: Cluster, handoff: Handoff
) -> None:
    slow = handoff.slow[1]
    stopping, free = handoff.holders[slow], handoff.holders[handoff.slow[0]]
    assert handoff.sigterm_exit == 0
    assert f"job {slow} re-queued: this worker is stopping" in cluster.log(stopping)
    done = handoff.handed_over
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, done
    assert f"job {slow} succeeded" in cluster.log(free)


def test_uploads_leave_no_staged_copy_and_workers_no_scratch_copy(
    cluster: Cluster, handoff: Handoff
) -> None:
    staged = [p for p in (cluster.root / "server").rglob("*") if p.is_file()]
    assert staged == []  # published to S3, then removed here
    for n, worker in enumerate(cluster.workers):
        if worker.poll() is None or worker.returncode == 0:  # not killed mid-job
            scratch = cluster.root / f"worker-{n}" / "scratch"
            assert not scratch.exists() or list(scratch.iterdir()) == [], n
