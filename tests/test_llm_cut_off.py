"""A reply whose stream ends without a finish reason (what llama.cpp's server sends
when it interrupts a reply): asked again while nothing of it was sent, otherwise a
clear ``cut_off`` failure, logged with the session id and counted in ``/metrics``.

The LLM is the scripted one: a real HTTP server that ends the stream with
``[DONE]`` after a given number of chunks, as llama.cpp does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipelines.services import Services
from tests.api_helpers import api_settings, close_services, load_services, serve
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import raw_connect, recv_json, text_turn
from voice.llm import ChatClient, LlmError, LlmOptions, TextDelta
from web.operations.logs import ContextFilter

USER = [{"role": "user", "content": "hello"}]


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


# --- the chat client ------------------------------------------------------------------


async def test_client_asks_again_when_cut_before_any_output() -> None:
    script = [Turn.say("lost", end_after=1), Turn.say("Recovered answer.")]
    async with ScriptedLlmServer(script) as llm, ChatClient(LlmOptions(llm.base_url)) as client:
        events = [e async for e in client.stream(USER)]
    assert text_of(events) == "Recovered answer."
    assert [r.chunks_sent for r in llm.chat_requests] == [2, 6]  # role chunk + [DONE], then all


async def test_client_raises_cut_off_after_output_and_gives_up_after_retries() -> None:
    async with (
        ScriptedLlmServer([Turn.say("one two three four", end_after=3)]) as llm,
        ChatClient(LlmOptions(llm.base_url)) as client,
    ):
        received: list[Any] = []
        with pytest.raises(LlmError) as info:
            async for event in client.stream(USER):
                received.append(event)
    assert text_of(received) == "one two"
    assert (info.value.kind, info.value.partial) == ("cut_off", True)
    assert "without a finish reason" in info.value.message
    assert len(llm.chat_requests) == 1  # output was streamed: never replayed here

    cut = Turn.say("never", end_after=1)
    async with (
        ScriptedLlmServer([cut] * 3, default=Turn.say("unused")) as llm,
        ChatClient(LlmOptions(llm.base_url, max_retries=2)) as client,
    ):
        with pytest.raises(LlmError) as info:
            _ = [e async for e in client.stream(USER)]
    assert (info.value.kind, info.value.partial) == ("cut_off", False)
    assert len(llm.chat_requests) == 3  # the first try and two retries


# --- through the real app --------------------------------------------------------------


@pytest.fixture(scope="module")
def app_server(
    llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    base = tmp_path_factory.mktemp("cutoff")
    settings = api_settings(base, llm_base_url=llm.base_url, realtime_speakers=False)
    services: Services = load_services(settings)
    try:
        with serve(settings, services) as server:
            yield server
    finally:
        close_services(services)


class _Records(logging.Handler):
    """Keeps the records of one logger, with the ids the server's log filter adds."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.addFilter(ContextFilter(log_content=False))
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def response_log() -> Iterator[_Records]:
    logger = logging.getLogger("pipelines.realtime.response")
    handler = _Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def failed_count(metrics: str, cause: str) -> float:
    prefix = f'voice_realtime_failed_responses_total{{cause="{cause}"}}'
    return next((float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith(prefix)), 0.0)


async def metrics_text(server: ServerThread) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.get(f"{server.http_url}/metrics")).text


async def test_cut_before_anything_was_spoken_is_asked_again(
    app_server: ServerThread, llm: ScriptedLlmServer, response_log: _Records
) -> None:
    # "Hello" arrives, but no sentence is complete: nothing was synthesised or sent.
    llm.add(Turn.say("Hello there, this is lost.", end_after=2, when=user_says("cutquiet")),
            Turn.say("The weather is fine today.", when=user_says("cutquiet")))
    before = len(llm.chat_requests)
    ws = await raw_connect(app_server)
    try:
        assert (await recv_json(ws))["type"] == "session.created"
        events = await text_turn(ws, "cutquiet: how is the weather?")
    finally:
        await ws.close()
    done = events[-1]["response"]
    assert done["status"] == "completed", done
    spoken = [e["transcript"] for e in events
              if e["type"] == "response.output_audio_transcript.done"]
    assert spoken == ["The weather is fine today."]
    assert len(llm.chat_requests) - before == 2
    assert any("asking again" in r.getMessage() for r in response_log.records)


async def test_cut_after_text_was_sent_fails_clearly_logged_and_counted(
    app_server: ServerThread, llm: ScriptedLlmServer, response_log: _Records
) -> None:
    llm.add(Turn.say("Part of an answer that never ends", end_after=4,
                     when=user_says("cutloud")))
    failed_before = failed_count(await metrics_text(app_server), "cut_off")
    requests_before = len(llm.chat_requests)
    ws = await raw_connect(app_server)
    try:
        created = await recv_json(ws)
        session_id = created["session"]["id"]
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"]}}))
        events = await text_turn(ws, "cutloud: tell me something")
    finally:
        await ws.close()
    sent = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert sent == "Part of an"  # the text deltas reached the client: not replayed
    done = events[-1]["response"]
    assert done["status"] == "failed", done
    error = done["status_details"]["error"]
    assert (error["type"], error["code"]) == ("llm_error", "cut_off")
    assert "without a finish reason" in error["message"]
    assert len(llm.chat_requests) - requests_before == 1
    failures = [r for r in response_log.records if "failed" in r.getMessage()]
    assert failures and "cut_off" in failures[-1].getMessage()
    assert failures[-1].session_id == session_id  # type: ignore[attr-defined]
    assert failed_count(await metrics_text(app_server), "cut_off") == failed_before + 1
