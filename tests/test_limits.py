"""Every limit tripped against the real server, and answered with the protocol's
error (HTTP 413/429 JSON, or a Realtime ``error`` event and a close code), never
a hang or a crash: per-key rate, concurrent sessions, session length, upload size,
audio length, WebSocket message size, tool-call steps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import websockets

from pipelines.services import Services
from tests.api_helpers import MIB, api_settings, request, serve
from tests.conftest import data_path
from tests.fakes.llm_script import Turn, after_tool_result, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import RtcCaller
from tests.servers import ServerThread
from tests.test_realtime_ws import text_turn
from voice.llm.tools import Tool, ToolRegistry

KEY, OTHER = "sk-limits-0123456789", "sk-other-0123456789"
JFK = "openai-whisper/jfk.wav"  # 11 s


@pytest.fixture(scope="module")
def limited(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One session at a time, 3 s long; 1 MiB uploads, 6 s of audio."""
    settings = api_settings(
        tmp_path_factory.mktemp("limited"),
        api_keys=[KEY, OTHER],
        max_realtime_sessions=1,
        max_session_s=3.0,
        max_upload_mb=1,
        max_audio_minutes=0.1,
        webrtc_host_addresses=["127.0.0.1"],
    )
    with serve(settings, services) as running:
        yield running


@pytest.fixture
def rate_limited(services: Services, tmp_path: Path) -> Iterator[ServerThread]:
    """Three requests at once per key, then one a minute: slow enough that no token
    comes back while the test runs, however loaded the machine."""
    settings = api_settings(
        tmp_path, api_keys=[KEY, OTHER], rate_limit_per_minute=1, rate_limit_burst=3
    )
    with serve(settings, services) as running:
        yield running


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def connect(server: ServerThread, key: str = KEY) -> Any:
    return await websockets.connect(
        f"{server.ws_url}/v1/realtime", additional_headers=auth(key), max_size=None
    )


async def next_event(ws: Any, timeout_s: float = 30) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(await asyncio.wait_for(ws.recv(), timeout_s)))


async def refused(ws: Any) -> tuple[dict[str, Any], int]:
    """The ``error`` of a refused or ended session, and the close code that followed."""
    while (event := await next_event(ws))["type"] != "error":
        pass
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return event["error"], closed.value.rcvd.code


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = cast(dict[str, Any], response.json()["error"])
    assert error["code"] == code and error["message"] and error["type"]
    return error


async def test_sessions_are_limited_in_number_and_length(limited: ServerThread) -> None:
    server = limited
    first = await connect(server)
    assert (await next_event(first))["type"] == "session.created"
    second = await connect(server, OTHER)
    error, code = await refused(second)
    assert error["code"] == "session_limit_reached" and code == 1013
    caller = RtcCaller(server.http_url)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            sdp = {
                "content": await caller.offer(),
                "headers": {"content-type": "application/sdp", **auth(OTHER)},
            }
            full = await http.post(f"{server.http_url}/v1/realtime/calls", **sdp)
            assert_json_error(full, 429, "session_limit_reached")
            assert int(full.headers["retry-after"]) >= 1
            # The first session ends after max_session_s with an error event and 1008.
            error, code = await refused(first)
            assert error["code"] == "session_expired" and code == 1008
            # Its slot is free again: a WebRTC call is admitted and ends the same way.
            placed = await http.post(f"{server.http_url}/v1/realtime/calls", **sdp)
            assert placed.status_code == 201, placed.text
        await caller.accept(placed.text)
        await caller.wait_for("session.created", 15)
        ended = await caller.wait_for("error", 15)
        assert ended["error"]["code"] == "session_expired"
    finally:
        await caller.close()


async def test_each_key_has_its_own_request_rate(rate_limited: ServerThread) -> None:
    server = rate_limited
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        statuses = [(await http.get("/v1/meetings", headers=auth())).status_code for _ in range(4)]
        assert statuses[:3] == [200, 200, 200]
        limited_response = await http.get("/v1/meetings", headers=auth())
        error = assert_json_error(limited_response, 429, "rate_limit_exceeded")
        assert int(limited_response.headers["retry-after"]) >= 1 and error["message"]
        assert (await http.get("/v1/meetings", headers=auth(OTHER))).status_code == 200
        assert (await http.get("/health")).status_code == 200  # open paths are not counted
    ws = await connect(server)
    error, code = await refused(ws)
    assert error["code"] == "rate_limit_exceeded" and code == 1013


def test_uploads_are_limited_in_size_and_length(limited: ServerThread) -> None:
    server = limited
    jfk = data_path(JFK).read_bytes()
    big = b"\0" * (MIB + 1000)
    for path in ("/v1/audio/transcriptions", "/v1/meetings"):
        for content, status, code in ((big, 413, "file_too_large"), (jfk, 413, "audio_too_long")):
            response = request(
                "POST",
                f"{server.http_url}{path}",
                headers=auth(OTHER),
                data={"model": "whisper-1", "summarize": "false"},
                files={"file": ("a.wav", content, "audio/wav")},
            )
            error = assert_json_error(response, status, code)
            assert error["param"] == "file"
    offer = request(
        "POST",
        f"{server.http_url}/v1/realtime/calls",
        headers={"content-type": "application/sdp", **auth(OTHER)},
        content=b"v=0\r\n" + b"a" * (300 * 1024),
    )
    assert_json_error(offer, 413, "request_too_large")
    listed = request("GET", f"{server.http_url}/v1/meetings", headers=auth(OTHER))
    assert listed.json()["data"] == []


async def test_oversized_websocket_messages_are_answered_not_fatal(server: ServerThread) -> None:
    """The shared server: events over ``realtime_max_event_bytes`` (256 KiB) get an
    ``error`` event and the session goes on; frames over the WebSocket limit (1 MiB)
    close that connection with 1009 and nothing else."""
    big_event = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (300 * 1024)})
    async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None) as ws:
        assert (await next_event(ws))["type"] == "session.created"
        await ws.send(big_event)
        while (event := await next_event(ws))["type"] != "error":
            pass
        assert event["error"]["code"] == "message_too_large"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
    async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None) as ws:
        assert (await next_event(ws))["type"] == "session.created"
        await ws.send("x" * (2 * MIB))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await next_event(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None) as ws:
        assert (await next_event(ws))["type"] == "session.created"


async def test_tool_calls_stop_at_the_step_budget(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """A model that keeps calling a tool is cut off after ``tool_max_steps`` (4) LLM
    requests; the response ends ``incomplete`` (reason ``max_output_tokens``, the closest
    the protocol knows) with the error code ``max_tool_steps``. The server tool's calls
    never reach the client."""
    step = Turn.call("calculate", {"expression": "4242 + 0"}, when=after_tool_result("4242"))
    llm.add(Turn.call("calculate", {"expression": "4242 + 0"}, when=user_says("keep adding")))
    llm.add(step, step, step)  # a fifth request would get the default text reply
    before = len(llm.chat_requests)
    async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None) as ws:
        assert (await next_event(ws))["type"] == "session.created"
        events = await text_turn(ws, "Please keep adding forever.")
    done = events[-1]["response"]
    assert done["status"] == "incomplete", done
    assert done["status_details"]["reason"] == "max_output_tokens"
    assert done["status_details"]["error"]["code"] == "max_tool_steps"
    assert len(llm.chat_requests) - before == 4
    last = llm.chat_requests[-1].messages
    assert [m["content"] for m in last if m["role"] == "tool"] == ["4242"] * 3
    items = [e["item"] for e in events if "item" in e] + done["output"]
    assert not [i for i in items if i["type"] != "message"], items


async def slow_lookup() -> str:
    """Look something up, very slowly."""
    await asyncio.sleep(30)
    return "found it"


async def test_a_tool_call_is_cut_at_its_time_budget(
    services: Services, llm: ScriptedLlmServer, tmp_path: Path
) -> None:
    """A server tool that overruns ``tool_timeout_s`` gives the model an error result and
    the response goes on to a spoken answer; nothing hangs."""
    settings = api_settings(tmp_path, llm_base_url=llm.base_url, tool_timeout_s=0.5)
    tools = ToolRegistry([Tool.from_function(slow_lookup)])
    with serve(settings, replace(services, settings=settings, tools=tools)) as server:
        llm.add(Turn.call("slow_lookup", when=user_says("look it up slowly")))
        llm.add(Turn.say("That took too long.", when=after_tool_result("timed out")))
        async with websockets.connect(f"{server.ws_url}/v1/realtime", max_size=None) as ws:
            assert (await next_event(ws))["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "voice_extensions": ["server_tools"]}}))
            started = asyncio.get_running_loop().time()
            events = await text_turn(ws, "Please look it up slowly.")
            elapsed = asyncio.get_running_loop().time() - started
    assert events[-1]["response"]["status"] == "completed"
    outputs = [e["output"] for e in events if e["type"] == "voice.tool_call"]
    assert len(outputs) == 1 and "timed out after 0.5 s" in outputs[0], outputs
    spoken = [e for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert spoken and spoken[-1]["transcript"] == "That took too long."
    assert elapsed < 20  # not the tool's 30 s
