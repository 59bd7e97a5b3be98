"""Graceful shutdown of a real server process (``voice serve``) on SIGTERM: the turn
that is running finishes, new sessions, calls and uploads are refused meanwhile,
open sessions are then ended with an ``error`` event (WebSocket close code 1012,
WebRTC peer closed), the process exits, and the meeting job it was running stays
in the store to be resumed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import websockets

from tests.conftest import data_path
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import RtcCaller, eventually
from tests.servers import free_port
from tests.test_limits import refused
from tests.test_realtime_ws import ask, recv_json

STORY = " ".join(f"Sentence number {n} of a long story." for n in range(1, 9))
GRACE_S = 30.0


@pytest.fixture
def process(
    llm: ScriptedLlmServer, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``voice serve`` in its own process, ready; killed if a test leaves it running."""
    port = free_port()
    env = {
        **os.environ,
        "VOICE_HOST": "127.0.0.1",
        "VOICE_PORT": str(port),
        "VOICE_DATA_DIR": str(tmp_path / "data"),
        "VOICE_CACHE_DIR": str(tmp_path / "cache"),
        "VOICE_STT_MODEL": "tiny.en",
        "VOICE_REALTIME_STT_MODEL": "tiny.en",
        "VOICE_LLM_BASE_URL": llm.base_url,
        "VOICE_SHUTDOWN_GRACE_S": str(GRACE_S),
        "VOICE_WEBRTC_HOST_ADDRESSES": '["127.0.0.1"]',
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


async def test_sigterm_lets_the_turn_finish_then_closes_sessions(
    process: tuple[subprocess.Popen[bytes], str], llm: ScriptedLlmServer, tmp_path: Path
) -> None:
    proc, url = process
    ws_url = url.replace("http", "ws") + "/v1/realtime"
    llm.add(Turn.say(STORY, when=user_says("tell me a long story"), chunk_delay_s=0.08))
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        jfk = data_path("openai-whisper/jfk.wav").read_bytes()
        job = await http.post(
            "/v1/meetings", data={"summarize": "false"}, files={"file": ("jfk.wav", jfk)}
        )
        assert job.status_code == 202, job.text
        caller = RtcCaller(url)  # a WebRTC call, idle
        await caller.connect()
        await caller.wait_for("session.created", 15)
        ws = await websockets.connect(ws_url, max_size=None)
        assert (await recv_json(ws))["type"] == "session.created"
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "output_modalities": ["text"]},
                }
            )
        )
        await ask(ws, "Tell me a long story.")
        events = [await recv_json(ws)]
        while events[-1]["type"] != "response.output_text.delta":
            events.append(await recv_json(ws))
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        # While draining: new sessions and uploads are refused, the page still answers.
        newcomer = await websockets.connect(ws_url, max_size=None)
        error, code = await refused(newcomer)
        assert error["code"] == "server_shutting_down" and code == 1012
        upload = await http.post(
            "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", jfk)}
        )
        assert upload.status_code == 503, upload.text
        assert upload.json()["error"]["code"] == "server_shutting_down"
        assert int(upload.headers["retry-after"]) >= 1
        assert (await http.get("/health")).status_code == 200
        late = RtcCaller(url)
        offer = await late.offer()
        await late.close()
        call = await http.post(
            "/v1/realtime/calls", content=offer, headers={"content-type": "application/sdp"}
        )
        assert call.status_code == 503 and call.json()["error"]["code"] == "server_shutting_down"

        # The running turn finishes; then the session is ended with an error and 1012.
        while events[-1]["type"] != "response.done":
            events.append(await recv_json(ws))
        done = events[-1]["response"]
        assert done["status"] == "completed", done
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert text == STORY
        error, code = await refused(ws)
        assert error["code"] == "server_shutting_down" and code == 1012
    # The call got the same last word on its data channel, then its peer was closed.
    ended = await caller.wait_for("error", 15)
    assert ended["error"]["code"] == "server_shutting_down"
    await eventually(lambda: caller.pc.connectionState in ("closed", "failed"), 30)
    await caller.close()
    assert time.monotonic() - sent_at < GRACE_S  # it did not wait out the whole grace

    rc = await asyncio.to_thread(proc.wait, 60)
    assert rc in (0, -signal.SIGTERM), rc
    log = (tmp_path / "server.log").read_text()
    assert "draining" in log and "Traceback" not in log, log
    # The meeting job is still in the store, to be resumed (or already done): never lost.
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as conn:
        state = cast(Any, conn.execute("SELECT state FROM jobs").fetchall())
    assert [s for (s,) in state] in (["queued"], ["running"], ["succeeded"]), state
