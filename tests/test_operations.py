"""Operations end to end: /metrics after a real spoken turn with a barge-in, JSON logs
with ids and without the words spoken, /ready following the LLM endpoint, and the
OpenAPI document covering every HTTP route."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount, Route

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import LONG_REPLY, client, pcm24k, stream_audio
from voice.settings import load_settings
from web.app import create_app
from web.operations.logs import make_handler
from web.operations.openapi import openapi_document

QUESTION = "deepspeech/LDC93S1.wav"  # "She had your dark suit in greasy wash water all year."
INTERRUPTION = "lhotse/2412-153948-0000.wav"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerThread) -> Samples:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class TurnRecord:
    before: Samples
    after: Samples
    log_lines: list[str]
    events: list[Any]
    request_id: str


async def barge_in_turn(server: ServerThread) -> list[Any]:
    """Ask a question, interrupt the long answer, then break off a second session
    with invalid JSON; events of the first session until its cancelled response."""
    events: list[Any] = []
    async with client(server).realtime.connect(model="voice-agent") as conn:
        await conn.recv()
        sender = asyncio.create_task(stream_audio(conn, pcm24k(QUESTION)))
        interrupter: asyncio.Task[None] | None = None
        async with asyncio.timeout(180):  # a failure, never a hang
            async for event in conn:
                events.append(event)
                if event.type == "response.output_audio.delta" and interrupter is None:
                    await sender
                    await asyncio.sleep(1.0)
                    interrupter = asyncio.create_task(stream_audio(conn, pcm24k(INTERRUPTION)))
                if event.type == "response.done":
                    break
        assert interrupter is not None
        interrupter.cancel()
        await asyncio.gather(interrupter, return_exceptions=True)
        await conn.send({"type": "no.such.event"})
    return events


@pytest.fixture(scope="module")
def voice_turn(server: ServerThread, llm: ScriptedLlmServer) -> Iterator[TurnRecord]:
    """One real spoken turn with a barge-in, with JSON logs captured from the server."""
    llm.add(Turn.say(LONG_REPLY, when=user_says("greasy")))
    stream = io.StringIO()
    handler = make_handler(load_settings(log_format="json"), stream)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.access")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        before = scrape(server)
        events = asyncio.run(barge_in_turn(server))
        request_id = "test-req-42"
        httpx.get(f"{server.http_url}/v1/meetings/m_nope", headers={"X-Request-Id": request_id})
        for _ in range(50):  # the session closes asynchronously after the client left
            after = scrape(server)
            if value(after, "voice_realtime_sessions_active", transport="ws") == value(
                before, "voice_realtime_sessions_active", transport="ws"
            ):
                break
            time.sleep(0.1)
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
    yield TurnRecord(before, after, stream.getvalue().splitlines(), events, request_id)


def test_metrics_count_a_real_turn_its_latencies_and_the_barge_in(voice_turn: TurnRecord) -> None:
    before, after = voice_turn.before, voice_turn.after

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    done = voice_turn.events[-1]
    assert done.response.status == "cancelled", "the scripted long answer must be interrupted"
    assert grew("voice_realtime_sessions_total", transport="ws") == 1
    assert value(after, "voice_realtime_sessions_active", transport="ws") == value(
        before, "voice_realtime_sessions_active", transport="ws"
    )
    assert grew("voice_realtime_user_turns_total", transport="ws") >= 1
    assert grew("voice_realtime_responses_total", status="cancelled") == 1
    assert grew("voice_realtime_voice_to_voice_seconds_count") == 1
    v2v = grew("voice_realtime_voice_to_voice_seconds_sum")
    # Metrics read the latency waterfall though this client did not ask for the event.
    assert not [e for e in voice_turn.events if e.type == "voice.latency"]
    assert 0 < v2v < 10
    for stage in ("stt_final", "llm_first_token", "tts_first_audio", "first_audio_sent"):
        assert grew("voice_realtime_turn_latency_seconds_count", stage=stage) == 1, stage
    assert grew("voice_realtime_barge_in_stop_seconds_count") == 1
    assert grew("voice_realtime_barge_in_cancel_seconds_count") == 1
    assert 0 < grew("voice_realtime_barge_in_cancel_seconds_sum") < 10
    assert grew("voice_realtime_errors_total", code="unknown_event_type") == 1
    assert grew("voice_stt_real_time_factor_count", use="realtime") >= 1
    assert grew("voice_stt_audio_seconds_total", use="realtime") > 1.0
    assert grew("voice_http_errors_total", status="404", code="meeting_not_found") == 1
    assert value(after, "process_resident_memory_bytes") > 100e6
    assert value(after, "process_open_fds") > 0
    assert value(after, "voice_asyncio_tasks") > 0


def test_logs_are_json_lines_with_ids_and_no_words(voice_turn: TurnRecord) -> None:
    records = [json.loads(line) for line in voice_turn.log_lines]  # every line parses
    assert records
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    sessions = [r for r in records if r["logger"] == "web.realtime.websocket"]
    assert any("opened" in r["message"] for r in sessions)
    assert all(r.get("session_id", "").startswith("sess") for r in sessions), sessions
    access = [r for r in records if r["logger"] == "uvicorn.access" and "m_nope" in r["message"]]
    assert access and access[0]["request_id"] == voice_turn.request_id
    # The words of the question and of the answer appear nowhere in the logs.
    text = "\n".join(voice_turn.log_lines).lower()
    for words in ("greasy wash water", reference_text(QUESTION).lower()[:20], "long answer about"):
        assert words not in text


def test_ready_follows_the_llm_endpoint(tmp_path: Path) -> None:
    llm = ScriptedLlmServer(default=Turn.say("Hi."))
    llm.start()
    settings = load_settings(
        llm_base_url=llm.base_url,
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        ready_cache_s=0.2,
        ready_llm_timeout_s=1.0,
    )
    try:
        with ServerThread(create_app(settings)) as running:
            ok = httpx.get(f"{running.http_url}/ready", timeout=10)
            assert ok.status_code == 200, ok.text
            assert ok.json()["checks"] == {"models": "ok", "jobs": "ok", "llm": "ok"}
            llm.stop()
            time.sleep(0.3)  # past the cached probe
            down = httpx.get(f"{running.http_url}/ready", timeout=10)
            assert down.status_code == 503
            body = down.json()
            assert body["status"] == "not_ready" and body["checks"]["llm"] == "unreachable"
            assert any(llm.base_url in reason for reason in body["reasons"])
            assert httpx.get(f"{running.http_url}/health", timeout=10).status_code == 200
    finally:
        llm.stop()


def test_the_openapi_document_names_every_http_route(server: ServerThread) -> None:
    served = httpx.get(f"{server.http_url}/openapi.json", timeout=10).json()
    assert served == openapi_document()
    documented = {
        (path, method.upper())
        for path, item in served["paths"].items()
        for method in item
        if method != "parameters"
    }
    app = create_app(load_settings())
    routes = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route) and not isinstance(route, Mount)
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert routes - documented == set()
    assert documented - routes == set()
