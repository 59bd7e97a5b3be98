"""The realtime WebSocket API end to end: the ``openai`` SDK's own realtime client
against the real server (Whisper, Silero VAD, Piper), with a scripted
OpenAI-compatible LLM server standing in for a hosted model."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import websockets
from openai import AsyncOpenAI

from tests.conftest import load_clip, reference_text
from tests.fakes.llm_script import Turn, after_tool_result, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from voice.audio.resample import resample

RATE = 24000
CHUNK_MS = 40
LONG_REPLY = (
    "Sure. Here is a long answer about the weather. The morning starts cool and cloudy. "
    "By noon the clouds break up and the sun comes out. In the afternoon a light breeze "
    "blows from the west. The evening will be clear and a little colder than today. "
    "Tomorrow looks much the same, with a small chance of rain late at night."
)






def client(server: ServerThread) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="test-key")


def pcm24k(relative: str, pad_s: float = 2.0) -> np.ndarray:
    """A clip from ../shared/data as 24 kHz int16, followed by ``pad_s`` of silence (as a
    microphone keeps sending: the default server_vad waits up to 1.5 s after a clause that
    sounds unfinished)."""
    audio = resample(load_clip(relative), 16000, RATE)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return np.concatenate([pcm, np.zeros(int(pad_s * RATE), dtype=np.int16)])


async def stream_audio(conn: Any, pcm: np.ndarray, *, pace: float = 1.0) -> None:
    """Send ``pcm`` in 40 ms appends at real-time pace (``pace`` = speed factor)."""
    step = RATE * CHUNK_MS // 1000
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), step)):
        chunk = pcm[offset : offset + step].astype("<i2").tobytes()
        await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
        delay = start + (n + 1) * CHUNK_MS / 1000 / pace - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def events_until(conn: Any, stop: str, timeout_s: float = 60.0) -> list[Any]:
    events: list[Any] = []

    async def collect() -> None:
        async for event in conn:
            events.append(event)
            if event.type == stop:
                return

    await asyncio.wait_for(collect(), timeout_s)
    return events


def normalize(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


async def test_sdk_client_speaks_and_gets_a_spoken_answer(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    clip = "azure-speech-sdk/whatstheweatherlike.wav"
    llm.add(Turn.say("It is sunny and warm today.", when=user_says("weather")))
    async with client(server).realtime.connect(model="voice-agent") as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        await conn.session.update(
            session={"type": "realtime", "instructions": "Be brief.", "voice_extensions": ["latency"]}  # type: ignore[typeddict-unknown-key]
        )
        sender = asyncio.create_task(stream_audio(conn, pcm24k(clip)))
        events = await events_until(conn, "response.done")
        await sender
    types = [e.type for e in events]
    assert "session.updated" in types
    for expected in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.output_item.done",
    ):
        assert expected in types, f"missing {expected}"
    transcript = next(
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    ).transcript
    assert wer(reference_text(clip), transcript) <= 0.2, transcript
    audio = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    assert len(audio) / 2 / RATE > 1.0  # over a second of speech for "It is sunny and warm today."
    done = events[-1]
    assert done.response.status == "completed"
    latency = next(e for e in events if e.type == "voice.latency")
    waterfall = latency.latency_ms  # extension event: every stage recorded, in order
    stages = ["speech_stopped", "stt_final", "llm_first_token", "tts_first_audio", "first_audio_sent"]
    assert all(waterfall[s] is not None for s in stages), waterfall
    assert waterfall["speech_stopped"] > 0 and waterfall["first_audio_sent"] >= waterfall["tts_first_audio"]
    spoken = next(e for e in events if e.type == "response.output_audio_transcript.done").transcript
    assert spoken == "It is sunny and warm today."
    # The LLM saw the user's words, after the session's instructions.
    request = llm.chat_requests[-1]
    assert request.messages[0] == {"role": "system", "content": "Be brief."}
    assert "weather" in request.messages[-1]["content"].lower()


async def raw_connect(server: ServerThread) -> Any:
    return await websockets.connect(f"{server.ws_url}/v1/realtime?model=x", max_size=None)


async def recv_json(ws: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def send(ws: Any, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def until(ws: Any, kind: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Events of a raw socket up to and including the first of type ``kind``."""
    events = []
    while True:
        events.append(await recv_json(ws, timeout_s))
        if events[-1]["type"] == kind:
            return events


async def expect_error(ws: Any, raw: str | bytes) -> dict[str, Any]:
    await ws.send(raw)
    while True:
        event = await recv_json(ws)
        if event["type"] == "error":
            return event["error"]


async def ask(ws: Any, text: str) -> None:
    """Add a user text item and ask for a response."""
    await ws.send(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                },
            }
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))


async def text_turn(ws: Any, text: str) -> list[dict[str, Any]]:
    """Add a user text item and ask for a response; events until response.done."""
    await ask(ws, text)
    events = []
    while True:
        event = await recv_json(ws, 60)
        events.append(event)
        if event["type"] == "response.done":
            return events


async def test_bad_input_gets_error_events_and_the_connection_survives(
    server: ServerThread,
) -> None:
    other = await raw_connect(server)
    ws = await raw_connect(server)
    try:
        assert (await recv_json(ws))["type"] == "session.created"
        assert (await recv_json(other))["type"] == "session.created"
        cases: list[tuple[str | bytes, str]] = [
            ("{this is not json", "invalid_json"),
            (json.dumps({"type": "no.such.event"}), "unknown_event_type"),
            (
                json.dumps({"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%"}),
                "invalid_value",
            ),
            (
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(b"\x01\x02\x03").decode(),
                    }
                ),
                "invalid_audio_format",
            ),
            (
                json.dumps(
                    {
                        "type": "input_audio_buffer.append",
                        "audio": base64.b64encode(
                            Path(__file__)
                            .parents[2]
                            .joinpath("shared/data/openai-whisper/jfk.wav")
                            .read_bytes()[:4000]
                        ).decode(),
                    }
                ),
                "invalid_audio_format",
            ),
            (
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": "nope",
                        "content_index": 0,
                        "audio_end_ms": 10,
                    }
                ),
                "item_not_found",
            ),
            (json.dumps({"type": "response.cancel"}), "response_cancel_not_active"),
            (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty"),
            (
                json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (300 * 1024)}),
                "message_too_large",
            ),
        ]
        for raw, code in cases:
            error = await expect_error(ws, raw)
            assert error["code"] == code, (raw[:80], error)
            assert error["message"]
        # The same connection still works, and so does the other session.
        for conn in (ws, other):
            events = await text_turn(conn, "Hi!")
            assert events[-1]["response"]["status"] == "completed"
    finally:
        await ws.close()
        await other.close()


async def test_client_vanishing_mid_response_leaves_others_unaffected(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(Turn.say(LONG_REPLY, when=user_says("vanish")))
    doomed = await raw_connect(server)
    assert (await recv_json(doomed))["type"] == "session.created"
    await ask(doomed, "please vanish")
    while (await recv_json(doomed))["type"] != "response.output_audio.delta":
        pass
    doomed.transport.abort()  # no close handshake: the client just disappears
    survivor = await raw_connect(server)
    try:
        assert (await recv_json(survivor))["type"] == "session.created"
        events = await text_turn(survivor, "Are you still there?")
        assert events[-1]["response"]["status"] == "completed"
        assert any(e["type"] == "response.output_audio.delta" for e in events)
    finally:
        await survivor.close()
    health = await asyncio.to_thread(_get, f"{server.http_url}/health")
    assert health == {"status": "ok"}


def _get(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def test_server_and_client_tools_feed_the_spoken_answer(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(
        Turn.call("calculate", {"expression": "12*7"}, when=user_says("twelve times seven")),
        Turn.call("get_weather", {"city": "Paris"}, when=after_tool_result("84")),
        Turn.say("Twelve times seven is 84, and Paris is sunny.", when=after_tool_result("sunny")),
    )
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "type": "realtime",
                        "voice_extensions": ["server_tools"],
                        "tools": [
                            {
                                "type": "function",
                                "name": "get_weather",
                                "description": "Weather in a city.",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"city": {"type": "string"}},
                                    "required": ["city"],
                                },
                            }
                        ],
                    },
                }
            )
        )
        first = await text_turn(ws, "What is twelve times seven, and the weather in Paris?")
        # The server's own tool stays on the server: the client sees only its own call,
        # and (having asked for the server_tools extension) a voice.tool_call event.
        items = [e["item"] for e in first if e["type"].startswith("conversation.item.")]
        assert {i.get("name") for i in items if i["type"] == "function_call"} == {"get_weather"}
        assert not [i for i in items if i["type"] == "function_call_output"]
        calc = next(e for e in first if e["type"] == "voice.tool_call")
        assert calc["name"] == "calculate" and "84" in calc["output"]
        done = first[-1]["response"]
        assert done["status"] == "completed"
        weather_call = next(o for o in done["output"] if o.get("name") == "get_weather")
        assert json.loads(weather_call["arguments"]) == {"city": "Paris"}
        args_done = next(
            e
            for e in first
            if e["type"] == "response.function_call_arguments.done" and e["name"] == "get_weather"
        )
        assert args_done["call_id"] == weather_call["call_id"]
        # The client runs its tool and answers; the agent speaks from both results.
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": weather_call["call_id"],
                        "output": json.dumps({"sky": "sunny"}),
                    },
                }
            )
        )
        await ws.send(json.dumps({"type": "response.create"}))
        second = []
        while True:
            event = await recv_json(ws, 60)
            second.append(event)
            if event["type"] == "response.done":
                break
        spoken = next(e for e in second if e["type"] == "response.output_audio_transcript.done")[
            "transcript"
        ]
        assert "84" in spoken and "sunny" in spoken
        assert any(e["type"] == "response.output_audio.delta" for e in second)
        final_request = llm.chat_requests[-1].messages
        tool_messages = [m for m in final_request if m["role"] == "tool"]
        assert [
            json.loads(m["content"]) if m["content"].startswith("{") else m["content"]
            for m in tool_messages
        ][-1] == {"sky": "sunny"}
        assert any("84" in m["content"] for m in tool_messages)
    finally:
        await ws.close()


async def _audio_events(ws: Any) -> AsyncIterator[dict[str, Any]]:
    while True:
        yield await recv_json(ws, 60)


async def test_barge_in_stops_audio_and_cuts_history_to_what_was_heard(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    first_clip = "azure-speech-sdk/whatstheweatherlike.wav"
    interrupt_clip = "lhotse/2412-153948-0000.wav"
    llm.add(Turn.say(LONG_REPLY, when=user_says("weather")))
    async with client(server).realtime.connect(model="voice-agent") as conn:
        await conn.recv()
        sender = asyncio.create_task(stream_audio(conn, pcm24k(first_clip, pad_s=0.8)))
        received: list[tuple[float, Any]] = []
        interrupt_sent_at: float | None = None
        interrupter: asyncio.Task[None] | None = None
        async for event in conn:
            received.append((time.monotonic(), event))
            if event.type == "response.output_audio.delta" and interrupter is None:
                await sender
                await asyncio.sleep(1.0)  # let the agent talk for a second
                interrupt_sent_at = time.monotonic()
                interrupter = asyncio.create_task(
                    stream_audio(conn, pcm24k(interrupt_clip, pad_s=1.0))
                )
            if event.type == "response.done":
                break
        assert interrupter is not None and interrupt_sent_at is not None
        done = received[-1][1]
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        deltas = [(t, e) for t, e in received if e.type == "response.output_audio.delta"]
        last_audio_at = deltas[-1][0]
        # Speech in the interrupting clip starts within its first 0.3 s; audio must stop soon after.
        assert last_audio_at - interrupt_sent_at < 0.3 + 0.5
        delivered_ms = sum(len(base64.b64decode(e.delta)) for _, e in deltas) / 2 / RATE * 1000
        item_id = deltas[0][1].item_id
        await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = None
        async for event in conn:
            if event.type == "conversation.item.retrieved":
                retrieved = event
                break
        interrupter.cancel()
    assert retrieved is not None
    kept = retrieved.item.content[0].transcript
    assert kept and len(kept) < len(LONG_REPLY)
    assert LONG_REPLY.startswith(kept.split()[0])
    # What is kept can't be more than what was delivered: at Piper's pace (~14 chars/s
    # or more), the delivered audio bounds the kept text.
    assert len(kept) <= delivered_ms / 1000 * 25 + 20
    assert retrieved.item.status == "incomplete"


def synthesized_24k(text: str, pad_s: float = 1.0) -> np.ndarray:
    """Real speech made by the Piper voice (a different source than the agent's stream)."""
    from voice.tts import PiperSynthesizer
    from voice.tts.stream import synthesize_text

    audio = asyncio.run(synthesize_text(PiperSynthesizer(), text, RATE))
    return np.concatenate([audio.astype(np.int16), np.zeros(int(pad_s * RATE), dtype=np.int16)])


async def stream_raw(ws: Any, pcm: np.ndarray) -> None:
    step = RATE * CHUNK_MS // 1000
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), step)):
        chunk = pcm[offset : offset + step].astype("<i2").tobytes()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))
        delay = start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def test_manual_turns_commit_transcribe_and_answer_on_request(server: ServerThread) -> None:
    clip = "openai-whisper/jfk.wav"
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await ws.send(json.dumps({
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }))
        pcm = pcm24k(clip, pad_s=0.2)
        step = RATE // 2  # half-second appends, as fast as the socket takes them
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step].astype("<i2").tobytes()
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        seen = []
        while True:
            event = await recv_json(ws, 90)
            seen.append(event["type"])
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                assert wer(reference_text(clip), event["transcript"]) == 0.0, event["transcript"]
                break
        assert "input_audio_buffer.committed" in seen
        assert "input_audio_buffer.speech_started" not in seen and "response.created" not in seen
        await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        events = []
        while True:
            event = await recv_json(ws, 60)
            events.append(event)
            if event["type"] == "response.done":
                break
        assert events[-1]["response"]["status"] == "completed"
        assert any(e["type"] == "response.output_text.delta" for e in events)
        assert not any(e["type"] == "response.output_audio.delta" for e in events)
    finally:
        await ws.close()


async def test_an_llm_failure_fails_the_response_and_the_session_goes_on(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        with llm.failing(503, count=10):  # more than the client's retries
            events = await text_turn(ws, "Hello?")
        done = events[-1]["response"]
        assert done["status"] == "failed"
        assert done["status_details"]["error"]["code"] == "unavailable"
        events = await text_turn(ws, "Hello again?")
        assert events[-1]["response"]["status"] == "completed"
    finally:
        await ws.close()
