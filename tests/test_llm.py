"""The LLM stage: tool schemas and calls, built-in tools, the streaming chat client
against a scripted OpenAI-compatible server, and the embedded llama.cpp server."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageFunctionToolCall

from pipelines.llm_endpoint import llm_description
from tests.fakes import ScriptedLlmServer, ScriptedToolCall, Turn, after_tool_result
from voice.llm import (
    BUILTIN_TOOLS,
    ChatClient,
    Completion,
    EmbeddedLlamaServer,
    EmbeddedServerError,
    LlmError,
    LlmEvent,
    LlmOptions,
    StreamAssembler,
    TextDelta,
    Tool,
    ToolCallArgumentsDelta,
    ToolCallRequest,
    ToolRegistry,
    calculate,
    current_datetime,
    format_datetime,
    registry_from_names,
    resolve_gguf,
)
from voice.llm.embedded import LLAMA_SERVER, resolve_server
from voice.llm.forced_call import CALL_OVERHEAD_TOKENS, MAX_STRING_CHARS, adapt, read_call
from voice.settings import SettingsError, load_settings

USER = [{"role": "user", "content": "What is the weather like in Paris today?"}]


# --- tool schemas ---------------------------------------------------------------


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def forecast(
    city: str,
    days: int = 1,
    unit: Unit = Unit.CELSIUS,
    detail: Literal["brief", "full"] = "brief",
    hours: list[int] | None = None,
    wind: float = 0.5,
    alerts: bool = False,
) -> dict[str, Any]:
    """Get the weather forecast for a city.

    The forecast comes from a made-up service.

    Args:
        city: City name,
            for example "Paris".
        days (int): Number of days ahead.
        unit: Temperature unit.
        hours: Hours of the day to include.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days, "unit": unit.name, "detail": detail, "hours": hours,
            "wind": wind, "alerts": alerts}


def test_schema_from_signature_and_docstring() -> None:
    tool = Tool.from_function(forecast)
    assert tool.name == "forecast"
    assert tool.description == "Get the weather forecast for a city."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'City name, for example "Paris".'},
            "days": {"type": "integer", "description": "Number of days ahead.", "default": 1},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"],
                     "description": "Temperature unit.", "default": "celsius"},
            "detail": {"type": "string", "enum": ["brief", "full"], "default": "brief"},
            "hours": {"type": ["array", "null"], "items": {"type": "integer"},
                      "description": "Hours of the day to include.", "default": None},
            "wind": {"type": "number", "default": 0.5},
            "alerts": {"type": "boolean", "default": False},
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_schema_async_optional_without_default_and_rename() -> None:
    async def lookup(code: int | None, mode: Literal[1, 2]) -> str:
        return str(code)

    tool = Tool.from_function(lookup, name="find_code")
    assert (tool.name, tool.description) == ("find_code", "")
    assert tool.parameters["properties"] == {
        "code": {"type": ["integer", "null"]},
        "mode": {"type": "integer", "enum": [1, 2]},
    }
    assert tool.parameters["required"] == ["code", "mode"]


def test_schema_rejects_unsupported_signatures() -> None:
    def untyped(x):
        return x

    def mapping(x: dict[str, int]) -> None: ...

    def varargs(*xs: int) -> None: ...

    for func in (untyped, mapping, varargs):
        with pytest.raises(TypeError):
            Tool.from_function(func)
    with pytest.raises(ValueError, match="must match"):
        Tool.from_function(forecast, name="bad name!")


def test_registry_formats() -> None:
    registry = ToolRegistry([Tool.from_function(forecast)])
    tool = registry.get("forecast")
    assert tool is not None
    assert registry.openai_tools() == [{"type": "function", "function": {
        "name": "forecast", "description": tool.description, "parameters": tool.parameters}}]
    assert registry.realtime_tools() == [{"type": "function", "name": "forecast",
                                          "description": tool.description,
                                          "parameters": tool.parameters}]
    with pytest.raises(ValueError, match="already registered"):
        registry.add(tool)


async def test_registry_call_paths() -> None:
    async def explode() -> str:
        raise RuntimeError("the weather service is down")

    registry = ToolRegistry([Tool.from_function(forecast), Tool.from_function(explode)])
    ok = await registry.call("forecast", '{"city": "Paris", "unit": "fahrenheit", "wind": 2}',
                             timeout_s=2)
    assert not ok.is_error
    assert json.loads(ok.output) == {"city": "Paris", "days": 1, "unit": "FAHRENHEIT",
                                     "detail": "brief", "hours": None, "wind": 2.0,
                                     "alerts": False}
    cases = {
        ("nowcast", "{}"): "unknown tool 'nowcast'; available tools: forecast, explode",
        ("forecast", '{"city": "Par'): "not valid JSON",
        ("forecast", '["Paris"]'): "must be a JSON object",
        ("forecast", '{"city": "Paris", "days": "3"}'): "'days' must be integer, got str",
        ("forecast", '{"city": "Paris", "alerts": 1}'): "'alerts' must be boolean",
        ("forecast", '{"city": "Paris", "hours": [1, "2"]}'): "'hours'[1] must be integer",
        ("forecast", '{"city": "Paris", "unit": "kelvin"}'): "must be one of",
        ("forecast", '{"days": 2}'): "missing required argument 'city'",
        ("forecast", '{"city": "Paris", "country": "FR"}'): "unknown argument(s) country",
        ("explode", ""): "explode failed: RuntimeError: the weather service is down",
    }
    for (name, arguments), expected in cases.items():
        result = await registry.call(name, arguments, timeout_s=2)
        assert result.is_error, (name, arguments)
        assert expected in result.output, result.output


async def test_registry_timeouts_are_honoured() -> None:
    finished: set[str] = set()

    async def slow_async() -> str:
        await asyncio.sleep(30)
        finished.add("slow_async")
        return "late"

    def slow_sync() -> str:
        time.sleep(0.6)
        finished.add("slow_sync")
        return "late"

    registry = ToolRegistry([Tool.from_function(slow_async), Tool.from_function(slow_sync)])
    for name in ("slow_async", "slow_sync"):
        result = await registry.call(name, "{}", timeout_s=0.1)
        assert name not in finished  # answered without waiting for the tool
        assert result.is_error and result.output == f"error: {name} timed out after 0.1 s"


# --- built-in tools ---------------------------------------------------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("2+2", "4"), ("(12.5 * 4) / 3", "16.6666666667"), ("2**10", "1024"), ("2^10", "1024"),
    ("-3 + +5", "2"), ("7 // 2", "3"), ("7 % 3", "1"), ("10 / 4", "2.5"), ("0.1 + 0.2", "0.3"),
    ("sqrt(16)", "4"), ("round(pi, 2)", "3.14"), ("max(1, 5, 3) - min(4, 2)", "3"),
    ("abs(-2.5) * e", "6.79570457115"), ("12 × 3 ÷ 4", "9"), ("2**-2", "0.25"),
    ("123456789 * 987654321", "121932631112635269"),
])
def test_calculator_results(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(("attack", "message"), [
    ("__import__('os').system('true')", "only numbers"),
    ("().__class__.__bases__", "only numbers"),
    ("(1).real", "only numbers"),
    ("9**9**9", "too large"),
    ("10**400", "too large"),
    ("2**1000 * 2**1000 * 2**1000", "too large"),
    ("'a' * 10**9", "unsupported syntax"),
    ("1" + "+1" * 150, "too long"),
    ("x + 1", "only numbers"),
    ("open('/etc/passwd')", "only numbers"),
    ("sqrt(x=4)", "only numbers"),
    ("lambda: 1", "unsupported syntax"),
    ("True + 1", "unsupported syntax"),
    ("1 / 0", "division by zero"),
    ("sqrt(-1)", "negative number"),
    ("round(1, 10**6)", "round()"),
    ("(-8) ** 0.5", "not a real number"),
    ("1e308 * 10", "too large"),
    ("2 +", "cannot parse"),
])
def test_calculator_refuses(attack: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match=re.escape(message)):
        calculate(attack)
    assert time.monotonic() - started < 0.1


def test_datetime_formats_zones() -> None:
    moment = datetime(2026, 11, 23, 15, 5, tzinfo=UTC)
    assert format_datetime(moment, "Europe/Paris") == (
        "Monday 23 November 2026, 16:05 (Europe/Paris, UTC+01:00)")
    assert format_datetime(moment, "America/New_York") == (
        "Monday 23 November 2026, 10:05 (America/New_York, UTC-05:00)")
    assert format_datetime(moment, "Asia/Kolkata") == (
        "Monday 23 November 2026, 20:35 (Asia/Kolkata, UTC+05:30)")
    assert format_datetime(datetime(2026, 7, 4, 23, 59, tzinfo=UTC), "UTC") == (
        "Saturday 4 July 2026, 23:59 (UTC, UTC+00:00)")
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", ""):
        with pytest.raises(ValueError, match="unknown time zone"):
            format_datetime(moment, bad)
    now = current_datetime("Europe/Paris")
    assert re.fullmatch(r"\w+day \d{1,2} \w+ \d{4}, \d\d:\d\d \(Europe/Paris, UTC\+0[12]:00\)",
                        now), now


async def test_builtin_registry() -> None:
    registry = registry_from_names(["datetime", "calculator"])
    assert registry.names() == ["current_datetime", "calculate"]
    assert set(BUILTIN_TOOLS) == {"datetime", "calculator"}
    assert (await registry.call("calculate", '{"expression": "6*7"}', timeout_s=2)).output == "42"
    refused = await registry.call("calculate", '{"expression": "__import__(\'os\')"}',
                                  timeout_s=2)
    assert refused.is_error and "only numbers" in refused.output
    bad_zone = await registry.call("current_datetime", '{"timezone": "Nowhere"}', timeout_s=2)
    assert bad_zone.is_error and "unknown time zone 'Nowhere'" in bad_zone.output
    with pytest.raises(ValueError, match="unknown tool.*'weather'.*available: datetime, calc"):
        registry_from_names(["datetime", "weather"])


# --- chat client against the scripted server --------------------------------------


def options(server: ScriptedLlmServer, **overrides: Any) -> LlmOptions:
    return LlmOptions(**{"base_url": server.base_url, "model": "test-model",
                         "retry_backoff_s": 0.05, "timeout_s": 5.0, **overrides})


async def collect(client: ChatClient, messages: list[dict[str, Any]] = USER,
                  **kwargs: Any) -> list[LlmEvent]:
    return [event async for event in client.stream(messages, **kwargs)]


def text_of(events: list[LlmEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streamed_text_is_assembled() -> None:
    reply = "Paris is mild today, about twelve degrees, with light rain this evening."
    async with (
        ScriptedLlmServer([Turn.say(reply)]) as server,
        ChatClient(options(server, temperature=0.2, max_tokens=40)) as client,
    ):
        events = await collect(client)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 12 and text_of(events) == reply
    assert events[-1] == Completion("stop", input_tokens=8, output_tokens=12)
    (request,) = server.chat_requests
    assert request.body == {"model": "test-model", "messages": USER, "stream": True,
                            "stream_options": {"include_usage": True},
                            "temperature": 0.2, "max_tokens": 40}


async def test_tool_calls_are_assembled_from_fragments() -> None:
    registry = registry_from_names(["datetime", "calculator"])
    arguments = {"expression": "(17.5 * 3) + sqrt(81)", "note": "ünïcode"}
    script = [
        Turn.call("calculate", arguments),
        Turn(tool_calls=(ScriptedToolCall("current_datetime", {"timezone": "Asia/Tokyo"}, "c1"),
                         ScriptedToolCall("calculate", {"expression": "2+2"}, "c2")),
             text="Let me check."),
    ]
    async with (
        ScriptedLlmServer(script, args_chunk_chars=4) as server,
        ChatClient(options(server)) as client,
    ):
        one = await collect(client, tools=registry.openai_tools())
        two = await collect(client, tools=registry.openai_tools(), tool_choice="required")
    (call,) = [e for e in one if isinstance(e, ToolCallRequest)]
    assert call.name == "calculate" and call.arguments == json.dumps(arguments)
    fragments = [e for e in one if isinstance(e, ToolCallArgumentsDelta)]
    assert len(fragments) > 5 and "".join(f.delta for f in fragments) == call.arguments
    assert {(f.call_id, f.name) for f in fragments} == {(call.call_id, "calculate")}
    assert one[-1] == Completion("tool_calls", 8, len(fragments))
    assert [e for e in two if isinstance(e, ToolCallRequest)] == [
        ToolCallRequest("c1", "current_datetime", '{"timezone": "Asia/Tokyo"}'),
        ToolCallRequest("c2", "calculate", '{"expression": "2+2"}'),
    ]
    assert text_of(two) == "Let me check."
    assert server.chat_requests[0].tools == registry.openai_tools()
    assert server.chat_requests[1].body["tool_choice"] == "required"


async def test_tool_result_round_trip_is_sent_back() -> None:
    script = [Turn.call("calculate", {"expression": "6*7"}, when=lambda m: m["role"] == "user"),
              Turn.say("Six times seven is 42.", when=after_tool_result("42"))]
    registry = registry_from_names(["calculator"])
    async with ScriptedLlmServer(script) as server, ChatClient(options(server)) as client:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "What is six times seven?"}]
        (call,) = [e for e in await collect(client, messages, tools=registry.openai_tools())
                   if isinstance(e, ToolCallRequest)]
        result = await registry.call(call.name, call.arguments, timeout_s=2)
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [{"id": call.call_id,
             "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
            {"role": "tool", "tool_call_id": call.call_id, "content": result.output},
        ]
        assert text_of(await collect(client, messages)) == "Six times seven is 42."
        # A tool message that answers no call is rejected like OpenAI does, without retry.
        with pytest.raises(LlmError) as info:
            await collect(client, [*USER, {"role": "tool", "tool_call_id": "x", "content": "1"}])
    assert info.value.kind == "bad_request" and "preceding message" in info.value.message
    assert server.chat_requests[1].messages[-1] == {"role": "tool", "tool_call_id": call.call_id,
                                                    "content": "42"}
    assert len(server.chat_requests) == 3


async def test_retries_transient_errors_then_succeeds() -> None:
    async with (
        ScriptedLlmServer([Turn.say("Back again.")] * 2) as server,
        ChatClient(options(server)) as client,
    ):
        server.fail_next(500)
        assert text_of(await collect(client)) == "Back again."
        assert [r.status for r in server.chat_requests] == [500, 200]
        server.fail_next(429, retry_after_s=0.4)
        started = time.monotonic()
        assert text_of(await collect(client)) == "Back again."
        assert time.monotonic() - started >= 0.4  # Retry-After honoured
        server.fail_next(503, count=5)
        with pytest.raises(LlmError) as info:
            await collect(client)
    assert info.value.kind == "unavailable" and "HTTP 503" in info.value.message
    assert [r.status for r in server.chat_requests] == [500, 200, 429, 200, 503, 503, 503]


async def test_no_retry_after_first_token_then_disconnect() -> None:
    turn = Turn.say("one two three four five six", disconnect_after=3)
    async with (
        ScriptedLlmServer([turn, Turn.say("never sent")]) as server,
        ChatClient(options(server)) as client,
    ):
        received: list[LlmEvent] = []
        with pytest.raises(LlmError) as info:
            async for event in client.stream(USER):
                received.append(event)
    assert text_of(received) == "one two"  # role chunk + two words before the cut
    assert info.value.kind == "unavailable"
    assert len(server.chat_requests) == 1 and server.remaining_turns == 1
    # Cut before any token (only the role chunk went out): retried.
    script = [Turn.say("lost", disconnect_after=1), Turn.say("Recovered.")]
    async with ScriptedLlmServer(script) as server, ChatClient(options(server)) as client:
        assert text_of(await collect(client)) == "Recovered."
    assert [r.chunks_sent for r in server.chat_requests] == [1, 5]


async def test_first_token_timeout_and_read_timeout_retry() -> None:
    async with (
        ScriptedLlmServer([Turn.say("too late", first_chunk_delay_s=5)] * 2) as server,
        ChatClient(options(server, first_token_timeout_s=0.4)) as client,
    ):
        started = time.monotonic()
        with pytest.raises(LlmError) as info:
            await collect(client)
        elapsed = time.monotonic() - started
    # timed out: not before the deadline, and without waiting for the 5 s chunk
    assert info.value.kind == "timeout" and 0.35 < elapsed < 5
    assert len(server.chat_requests) == 1 and server.chat_requests[0].disconnected
    # A per-read timeout before the first token is retried within the overall deadline.
    script = [Turn.say("stalled", first_chunk_delay_s=5), Turn.say("Quick answer.")]
    async with (
        ScriptedLlmServer(script) as server,
        ChatClient(options(server, timeout_s=0.3, first_token_timeout_s=4)) as client,
    ):
        assert text_of(await collect(client)) == "Quick answer."
    assert len(server.chat_requests) == 2


async def test_cancelling_the_consumer_closes_the_stream() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    async with (
        ScriptedLlmServer([Turn.say(words, chunk_delay_s=0.02)] * 2) as server,
        ChatClient(options(server)) as client,
    ):
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in client.stream(USER):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Leaving early through aclosing() closes it too.
        async with contextlib.aclosing(client.stream(USER)) as events:
            async for _ in events:
                break
        for request in server.chat_requests:
            assert await asyncio.to_thread(request.finished.wait, 3)
            assert request.disconnected and request.chunks_sent < 50


async def test_fallbacks_when_server_rejects_options() -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "summary", "schema": {
        "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}
    script = [Turn.say("plain"), Turn.say("again"), Turn.say('{"title": "Budget"}')] * 2
    async with (
        ScriptedLlmServer(script, reject_stream_options=True,
                                 reject_response_format=True) as server,
        ChatClient(options(server)) as client,
    ):
        first = await collect(client)
        second = await collect(client)
        summary = await client.complete(USER, response_format=schema)
    assert (text_of(first), text_of(second), summary) == ("plain", "again", '{"title": "Budget"}')
    assert first[-1] == Completion("stop", 0, 0)  # no usage without stream_options
    bodies = [r.body for r in server.chat_requests]
    assert ["stream_options" in b for b in bodies] == [True, False, False, False, False]
    assert [r.status for r in server.chat_requests] == [400, 200, 200, 400, 200]
    assert bodies[3]["response_format"] == schema and "response_format" not in bodies[4]
    assert bodies[4]["stream"] is False


async def test_complete_and_unreachable_server() -> None:
    async with (
        ScriptedLlmServer([Turn.say('{"title": "Budget"}')]) as server,
        ChatClient(options(server)) as client,
    ):
        schema = {"type": "json_object"}
        assert await client.complete(USER, response_format=schema) == '{"title": "Budget"}'
    assert server.chat_requests[0].body["response_format"] == schema
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = LlmOptions(base_url=f"http://127.0.0.1:{closed_port}/v1", retry_backoff_s=0.01)
    async with ChatClient(unreachable) as client:
        for call in (collect(client), client.complete(USER)):
            with pytest.raises(LlmError) as info:
                await call
            assert info.value.kind == "unavailable" and str(closed_port) in info.value.message


def test_scripted_server_from_sync_code() -> None:
    script = [Turn.call("calculate", {"expression": "1+1"})]
    with ScriptedLlmServer(script, default=Turn.say("again"), model="m1") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert [model.id for model in client.models.list().data] == ["m1"]
        reply = client.chat.completions.create(model="m1", messages=[USER[0]])  # type: ignore[list-item]
        (call,) = reply.choices[0].message.tool_calls or []
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "calculate", {"expression": "1+1"})
        assert reply.choices[0].finish_reason == "tool_calls"
        for _ in range(2):
            again = client.chat.completions.create(model="m1", messages=[USER[0]])  # type: ignore[list-item]
            assert again.choices[0].message.content == "again"
        client.close()
    assert [r.path for r in server.requests] == ["/v1/models"] + ["/v1/chat/completions"] * 3


def test_assembler_rejects_a_stream_cut_without_finish_reason() -> None:
    assembler = StreamAssembler()
    chunk = ChatCompletionChunk.model_validate({
        "id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]})
    assert assembler.feed(chunk) == [TextDelta("Hel")]
    with pytest.raises(LlmError, match="without a finish reason"):
        assembler.finish()


def test_options_from_settings() -> None:
    settings = load_settings(llm_model="qwen", llm_timeout_s=12, llm_max_retries=1)
    opts = LlmOptions.from_settings(settings, base_url="http://127.0.0.1:9/v1")
    assert (opts.base_url, opts.model, opts.timeout_s, opts.max_retries) == (
        "http://127.0.0.1:9/v1", "qwen", 12, 1)
    with pytest.raises(ValueError, match="VOICE_LLM_BASE_URL"):
        LlmOptions.from_settings(settings)


# --- embedded llama.cpp server -------------------------------------------------------


def test_resolve_gguf(tmp_path: Path) -> None:
    shipped = resolve_gguf("smollm2")
    assert shipped.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and shipped.stat().st_size > 50e6
    assert shipped.read_bytes()[:4] == b"GGUF"
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_gguf(str(tmp_path / "missing.gguf"))


def test_the_embedded_server_choice(tmp_path: Path) -> None:
    assert resolve_server("python") is None
    with pytest.raises(FileNotFoundError, match="llama-server binary not found"):
        resolve_server(str(tmp_path / "llama-server"))
    with pytest.raises(SettingsError, match="VOICE_LLM_EMBEDDED_SERVER.*existing llama-server"):
        load_settings(llm_embedded_server=str(tmp_path / "nothing-here"))
    binary = tmp_path / "my-llama-server"
    binary.write_bytes(b"")
    assert resolve_server(str(binary)) == binary
    assert llm_description(load_settings(llm_embedded_server="python")) == "embedded llama_cpp.server"
    assert llm_description(load_settings(llm_base_url="http://gpu:8000/v1")) == "http://gpu:8000/v1"
    settings = load_settings(llm_embedded_server=str(binary), llm_embedded_slots=3)
    running = EmbeddedLlamaServer(tmp_path / "model.gguf", binary=binary, slots=3)
    assert llm_description(settings) == "embedded llama-server (3 slots)"
    binary.unlink()  # /ready describes what was started, and never fails for this
    assert llm_description(settings, running) == "embedded llama-server (3 slots)"
    with pytest.raises(FileNotFoundError):
        llm_description(settings)


SERVERS = ("llama-server", "python")
"""The two programs that can serve the embedded model (``llm_embedded_server``)."""


def server_binary(program: str) -> Path | None:
    """``llama-server``: the binary scripts/setup.sh builds (the default's; missing is a
    failure, not a skip); ``python``: None, llama-cpp-python's server."""
    if program == "python":
        return None
    assert LLAMA_SERVER.is_file(), f"{LLAMA_SERVER} missing: run scripts/build_llama_server.sh"
    assert resolve_server("auto") == LLAMA_SERVER  # what the server's default runs
    return LLAMA_SERVER


@pytest.mark.parametrize("program", SERVERS)
async def test_embedded_server_reports_an_early_exit(program: str, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    server = EmbeddedLlamaServer(bogus, binary=server_binary(program))
    with pytest.raises(EmbeddedServerError, match=f"{server.program} exited with code") as info:
        await server.start(timeout_s=60)
    assert "bogus.gguf" in str(info.value)  # the log's tail names the file it failed on
    assert server.pid is None


def port_is_free(port: int) -> bool:
    """Nothing listens on ``port`` (connections the server closed may linger in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


TWO_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "The time now.",
        "parameters": {"type": "object", "properties": {}}}},
]


@pytest.mark.parametrize("program", SERVERS)
async def test_embedded_llama_server_streams_a_reply(
    program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # One thread: on a busy 2-core machine, two llama.cpp threads that wait on each
    # other at every token slow generation down tenfold.
    server = EmbeddedLlamaServer(resolve_gguf("smollm2"), threads=1, context=2048,
                                 binary=server_binary(program))
    started = time.monotonic()
    await server.start(timeout_s=120)
    start_s = time.monotonic() - started
    pid, port = server.pid, server.port
    assert pid is not None and not port_is_free(port)
    try:
        assert server.model_id == "SmolLM2-135M-Instruct.Q4_1"
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Say hello and name one colour."}]
        # The server answers any model name with its one model.
        opts = LlmOptions(base_url=server.base_url, model="whatever", temperature=0.0,
                          max_tokens=32, timeout_s=60)
        async with ChatClient(opts) as client:
            sent = time.monotonic()
            stamps: list[float] = []
            events: list[LlmEvent] = []
            async for event in client.stream(messages):
                events.append(event)
                if isinstance(event, TextDelta):
                    stamps.append(time.monotonic())
        # tool_choice "required" and a named function: llama.cpp's grammar makes the
        # tiny model produce a valid call of a declared tool, not prose.
        forced = replace(opts, named_tool_choice_only=True, max_tokens=64)
        ask = [{"role": "user", "content": "What is the weather in Paris?"}]
        calls: dict[str, list[LlmEvent]] = {}
        async with ChatClient(forced) as client:
            for choice in ("required", {"type": "function", "function": {"name": "get_time"}}):
                key = choice if isinstance(choice, str) else "named"
                calls[key] = [e async for e in client.stream(ask, tools=TWO_TOOLS,
                                                             tool_choice=choice)]
    finally:
        await server.stop()
    for key, got in calls.items():
        call = next(e for e in got if isinstance(e, ToolCallRequest))
        assert call.name in {"get_weather", "get_time"}, (key, got)
        arguments = json.loads(call.arguments)
        if call.name == "get_weather":
            assert isinstance(arguments["city"], str), (key, arguments)
        assert isinstance(got[-1], Completion) and got[-1].finish_reason == "tool_calls"
    assert next(e for e in calls["named"] if isinstance(e, ToolCallRequest)).name == "get_time"
    assert text_of(events).strip(), events
    completion = events[-1]
    assert isinstance(completion, Completion) and completion.finish_reason in ("stop", "length")
    first_token_s = stamps[0] - sent
    rate = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-6)
    with capsys.disabled():
        print(f"\nembedded {program} SmolLM2: started in {start_s:.2f} s, first token "
              f"{first_token_s * 1000:.0f} ms, {len(stamps)} chunks at {rate:.0f} tokens/s: "
              f"{text_of(events)!r}")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert port_is_free(port)


async def test_llama_server_answers_several_conversations_at_once() -> None:
    """Its slots decode together: a second conversation's reply starts streaming while
    the first's is still under way (llama-cpp-python's server would finish the first).
    Both replies are whole, each with its finish reason."""
    server = EmbeddedLlamaServer(resolve_gguf("smollm2"), threads=1, context=2048,
                                 binary=server_binary("llama-server"), slots=2)
    await server.start(timeout_s=120)
    try:
        assert server.slots == 2
        arrivals: list[tuple[str, str]] = []
        first_token = {"a": asyncio.Event(), "b": asyncio.Event()}

        async def converse(who: str, question: str, tokens: int) -> Completion:
            options = LlmOptions(base_url=server.base_url, model="m", temperature=0.0,
                                 max_tokens=tokens, timeout_s=60, max_concurrent=2)
            last: LlmEvent | None = None
            async with ChatClient(options) as client:
                async for event in client.stream(
                    [{"role": "user", "content": question}], queue_key=who
                ):
                    if isinstance(event, TextDelta):
                        arrivals.append((who, event.text))
                        first_token[who].set()
                    last = event
            assert isinstance(last, Completion), last
            return last

        long_reply = asyncio.create_task(converse(
            "a", "Tell me the whole history of the bicycle, in detail.", 200))
        await first_token["a"].wait()
        short = await converse("b", "Name one colour.", 16)
        done = await long_reply
    finally:
        await server.stop()
    order = [who for who, _ in arrivals]
    last_of_a = max(i for i, who in enumerate(order) if who == "a")
    assert "b" in order and order.index("b") < last_of_a, order
    assert done.finish_reason in ("stop", "length") and short.finish_reason in ("stop", "length")
    assert "".join(t for who, t in arrivals if who == "b").strip()


async def test_a_forced_call_is_rewritten_for_a_named_only_endpoint() -> None:
    assert adapt(TWO_TOOLS, "auto") == ("auto", None)
    assert adapt(None, "required") == ("required", None)
    choice, forced = adapt(TWO_TOOLS, "required")
    assert choice == "none" and forced is not None
    options = forced.response_format()["schema"]["anyOf"]
    assert [o["properties"]["name"]["const"] for o in options] == ["get_weather", "get_time"]
    # Free text is bounded so a rambling model stops; the caller's schema is not changed.
    city = options[0]["properties"]["arguments"]["properties"]["city"]
    assert city == {"type": "string", "maxLength": MAX_STRING_CHARS}
    assert "maxLength" not in TWO_TOOLS[0]["function"]["parameters"]["properties"]["city"]
    # The model is told what it is writing, after the conversation.
    told = forced.messages([{"role": "user", "content": "hi"}])
    assert told[-1]["role"] == "system" and "get_weather: The weather in a city." in told[-1]["content"]
    # A named function: that one alone, even when it is one of several.
    named = {"type": "function", "function": {"name": "get_time"}}
    choice, only = adapt(TWO_TOOLS, named)
    assert choice == "none" and only is not None
    assert only.schema["properties"]["name"] == {"const": "get_time"}
    with pytest.raises(ValueError, match="rm_rf"):
        adapt(TWO_TOOLS, {"type": "function", "function": {"name": "rm_rf"}})
    # The token limit leaves room for the longest call: a model that fills the city up to
    # its bound (a token a character at worst) still closes the call.
    assert forced.max_tokens(16) == MAX_STRING_CHARS + CALL_OVERHEAD_TOKENS
    assert forced.max_tokens(4096) == 4096
    assert only.max_tokens(16) == CALL_OVERHEAD_TOKENS  # get_time takes no strings

    async def reply(*texts: str) -> AsyncIterator[LlmEvent]:
        for text in texts:
            yield TextDelta(text)
        yield Completion("stop", 10, 5)

    names = {"get_weather", "get_time"}
    got = [e async for e in read_call(reply('{"name": "get_time", ', '"arguments": {}}'), names)]
    assert isinstance(got[0], ToolCallRequest) and got[0].name == "get_time"
    assert got[0].arguments == "{}" and got[1] == Completion("tool_calls", 10, 5)
    for bad in ('{"name": "rm_rf", "arguments": {}}', "Sure! The weather is"):
        with pytest.raises(LlmError, match="forced tool call"):
            [e async for e in read_call(reply(bad), names)]
    # A raw newline inside a string (the grammar allows it) still gives valid JSON.
    raw = '{"name": "get_weather", "arguments": {"city": "Paris\nFrance"}}'
    call = [e async for e in read_call(reply(raw), names)][0]
    assert isinstance(call, ToolCallRequest)
    assert json.loads(call.arguments) == {"city": "Paris\nFrance"}

    async def cut(text: str) -> AsyncIterator[LlmEvent]:
        yield TextDelta(text)
        yield Completion("length", 10, 64)

    with pytest.raises(LlmError, match="cut off at the token limit"):
        [e async for e in read_call(cut('{"name": "get_weather", "arguments": {"city": "Pa'), names)]
