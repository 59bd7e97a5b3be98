"""A real ``voice serve`` process killed with SIGKILL loses no work: the live meeting
it was recording (spooled to disk as it arrived) and the upload it had just
accepted with 202 both come back as jobs on the next start and run; and the
per-key cap on unfinished jobs answers 429 ``too_many_jobs`` until one finishes.

Models are real (Whisper tiny.en, the diarizer); the summary LLM is the scripted
OpenAI-compatible server from ``tests/fakes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from pipelines.meeting.job_files import SPOOL_MARKER
from pipelines.meeting.spool import HEADER_BYTES, RATE
from tests.conftest import data_path, load_clip, reference_text
from tests.fakes.llm_script import Turn
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.live_client import RATE as CLIENT_RATE
from tests.live_client import pcm24k, send_pcm, transcribe_only
from tests.servers import free_port
from tests.test_meeting_api import SUMMARY
from tests.test_transcriptions_api import wer

JFK = "openai-whisper/jfk.wav"
TITLE = "spooled standup"
CAP = 2


@pytest.fixture(scope="module")
def summary_llm() -> Iterator[ScriptedLlmServer]:
    with ScriptedLlmServer(default=Turn.say(json.dumps(SUMMARY))) as server:
        yield server


@contextlib.contextmanager
def server_process(base: Path, llm_url: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``voice serve`` on data under ``base``, ready; killed if still running at the end."""
    port = free_port()
    env = {
        **os.environ,
        "VOICE_HOST": "127.0.0.1",
        "VOICE_PORT": str(port),
        "VOICE_DATA_DIR": str(base / "data"),
        "VOICE_CACHE_DIR": str(base / "cache"),
        "VOICE_STT_MODEL": "tiny.en",
        "VOICE_REALTIME_STT_MODEL": "tiny.en",
        "VOICE_LLM_BASE_URL": llm_url,
        "VOICE_MAX_QUEUED_JOBS_PER_KEY": str(CAP),
    }
    log_path = base / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not become ready"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                time.sleep(0.25)
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def spool_samples(data: Path) -> int:
    """Samples in the one live recording being spooled (0 before it exists)."""
    spools = [p.parent / "original" for p in (data / "uploads").glob(f"*/{SPOOL_MARKER}")]
    assert len(spools) <= 1, spools
    if not spools or not spools[0].exists():
        return 0
    return (spools[0].stat().st_size - HEADER_BYTES) // 2


async def drain(ws: Any) -> None:
    """Read (and drop) the session's events, so the connection answers pings."""
    async for _ in ws:
        pass


async def record_live(
    ws_url: str, data: Path, seconds: float
) -> tuple[Any, asyncio.Task[None], int]:
    """Open a recording session, stream JFK (with a pause after it) at 4× real time and
    wait until the spool holds it all (but the resampler's last ~30 ms). Returns the
    open connection, the task reading its events and the sample count."""
    ws = await websockets.connect(f"{ws_url}/v1/realtime?model=x", max_size=None)
    await ws.send(json.dumps(transcribe_only(meeting={"record": True, "title": TITLE})))
    while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "session.updated":
        pass
    reader = asyncio.create_task(drain(ws))
    pcm = pcm24k(load_clip(JFK), pad_s=seconds - len(load_clip(JFK)) / RATE)
    await send_pcm(ws, pcm, pace=4.0)
    sent = len(pcm) * RATE // CLIENT_RATE
    deadline = time.monotonic() + 60
    # the same margin as the assertion on it: a loaded server may still be writing
    while (held := await asyncio.to_thread(spool_samples, data)) < sent - RATE // 20:
        assert time.monotonic() < deadline, f"the spool holds {held} of {sent} samples"
        await asyncio.sleep(0.1)
    return ws, reader, held


async def record_upload_and_kill(
    proc: subprocess.Popen[bytes], url: str, data: Path
) -> tuple[int, httpx.Response]:
    """Record 13 s live, then upload JFK (202), then SIGKILL the server while the
    session is still open (no shutdown, no session close)."""
    ws, reader, held = await record_live(url.replace("http://", "ws://"), data, seconds=13.0)
    try:
        accepted = await asyncio.to_thread(upload_jfk, url)
        assert accepted.status_code == 202, accepted.text
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await ws.close()
    return held, accepted


def upload_jfk(url: str) -> httpx.Response:
    path = data_path(JFK)
    with path.open("rb") as audio:
        return httpx.post(
            f"{url}/v1/meetings",
            files={"file": (path.name, audio)},
            data={"summarize": "false"},
            timeout=60,
        )


def wait_finished(url: str, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = httpx.get(f"{url}/v1/meetings/{job_id}", timeout=30).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.5)


def test_sigkill_loses_neither_the_live_recording_nor_an_accepted_upload(
    summary_llm: ScriptedLlmServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with server_process(tmp_path, summary_llm.base_url) as (proc, url):
        held, accepted = asyncio.run(record_upload_and_kill(proc, url, data))
    # The recording was on disk while the session was open, sample for sample.
    assert held == pytest.approx(13.0 * RATE, abs=RATE // 20)
    upload_id = accepted.json()["id"]

    with server_process(tmp_path, summary_llm.base_url) as (_, url):
        jobs = {
            j["filename"]: j for j in httpx.get(f"{url}/v1/meetings", timeout=30).json()["data"]
        }
        assert set(jobs) == {TITLE, "jfk.wav"}, jobs
        live = jobs[TITLE]
        assert live["duration"] == pytest.approx(held / RATE, abs=0.01)
        assert jobs["jfk.wav"]["id"] == upload_id
        # Two unfinished anonymous jobs: the cap refuses a third, leaving nothing behind.
        refused = upload_jfk(url)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "too_many_jobs" and error["message"]
        assert sorted(p.name for p in (data / "uploads").iterdir()) == sorted(
            [live["id"], upload_id]
        )
        # Both jobs run to the end: the spooled audio is the meeting that was spoken.
        for job_id in (upload_id, live["id"]):
            assert wait_finished(url, job_id)["state"] == "succeeded"
        doc = httpx.get(f"{url}/v1/meetings/{live['id']}/transcript", timeout=30).json()
        text = " ".join(s["text"] for s in doc["segments"])
        assert wer(reference_text(JFK), text) <= 0.25, text
        again = upload_jfk(url)  # finished jobs free the key's places
        assert again.status_code == 202, again.text
