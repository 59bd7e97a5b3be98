"""Session-level parts of the protocol against the real server (Whisper, VAD, Piper):
transcription sessions, client audio items, the transcription prompt, voices and speed,
and the clear errors for what the server cannot do."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
import websockets

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import RATE, pcm24k, recv_json, send, until, wer

JFK = "openai-whisper/jfk.wav"
WEATHER = "azure-speech-sdk/whatstheweatherlike.wav"


async def connect(server: ServerThread, query: str = "") -> Any:
    return await websockets.connect(f"{server.ws_url}/v1/realtime?model=x{query}", max_size=None)


async def append_fast(ws: Any, pcm: np.ndarray) -> None:
    """Half-second appends as fast as the socket takes them (the VAD reads audio time)."""
    for offset in range(0, len(pcm), RATE // 2):
        chunk = pcm[offset : offset + RATE // 2].astype("<i2").tobytes()
        await send(ws, {"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(chunk).decode()})


def services_of(server: ServerThread) -> Any:
    return server._config.app.state.services


async def test_a_transcription_session_transcribes_and_never_answers(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = services_of(server).transcriber
    prompts: list[str | None] = []
    real = transcriber.transcribe_utterance  # the live path

    def spy(audio: np.ndarray, **kwargs: Any) -> Any:  # the real model, prompt recorded
        prompts.append(kwargs.get("prompt"))
        return real(audio, **kwargs)

    monkeypatch.setattr(transcriber, "transcribe_utterance", spy)
    ws = await connect(server, "&intent=transcription")
    try:
        created = (await recv_json(ws))["session"]
        assert created["type"] == "transcription" and "instructions" not in created
        await send(ws, {"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"transcription": {"prompt": "Kennedy's inaugural address."},
                      "turn_detection": {"type": "server_vad", "silence_duration_ms": 1500}}}}})
        updated = (await until(ws, "session.updated"))[-1]["session"]
        assert updated["audio"]["input"]["transcription"]["prompt"] == "Kennedy's inaugural address."
        await append_fast(ws, pcm24k(JFK, pad_s=2.5))
        events = await until(ws, "conversation.item.input_audio_transcription.completed", 90)
        assert wer(reference_text(JFK), events[-1]["transcript"]) <= 0.1, events[-1]
        assert "Kennedy's inaugural address." in prompts  # Whisper's initial prompt
        await send(ws, {"type": "response.create"})
        later = await until(ws, "error")
        assert later[-1]["error"]["param"] == "type"
        assert not [e for e in events + later if e["type"].startswith("response.")]
    finally:
        await ws.close()


async def test_an_unknown_intent_is_refused(server: ServerThread) -> None:
    ws = await connect(server, "&intent=telepathy")
    try:
        error = await recv_json(ws)
        assert error["type"] == "error" and error["error"]["code"] == "invalid_intent"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        await ws.close()


async def test_a_client_audio_item_is_transcribed_and_answered_on_request(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(Turn.say("It is sunny.", when=user_says("weather")))
    audio = base64.b64encode(pcm24k(WEATHER, pad_s=0.2).astype("<i2").tobytes()).decode()
    ws = await connect(server)
    try:
        await recv_json(ws)
        await send(ws, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_audio", "audio": audio}]}})
        await send(ws, {"type": "response.create", "response": {"output_modalities": ["text"]}})
        events = await until(ws, "response.done", 90)
        types = [e["type"] for e in events]
        done = next(e for e in events if e["type"].endswith("transcription.completed"))
        assert wer(reference_text(WEATHER), done["transcript"]) <= 0.2, done
        assert types.index("conversation.item.done") < types.index("response.created")
        reply = events[-1]["response"]["output"][0]["content"][0]["text"]
        assert reply == "It is sunny."
        await send(ws, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_audio", "audio": "%%%"}]}})
        assert (await until(ws, "error"))[-1]["error"]["param"] == "item.content[0].audio"
    finally:
        await ws.close()


async def spoken_seconds(ws: Any, text: str) -> float:
    await send(ws, {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    await send(ws, {"type": "response.create"})
    events = await until(ws, "response.done", 90)
    pcm = b"".join(base64.b64decode(e["delta"]) for e in events
                   if e["type"] == "response.output_audio.delta")
    return len(pcm) / 2 / RATE


async def test_voices_map_speed_changes_the_pace_and_bad_settings_are_refused(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    llm.add(Turn.say(sentence, when=user_says("normal pace")),
            Turn.say(sentence, when=user_says("fast pace")))
    ws = await connect(server)
    try:
        await recv_json(ws)
        for bad, param in (
            ({"output": {"voice": "no-such-voice"}}, "session.audio.output.voice"),
            ({"input": {"noise_reduction": {"type": "near_field"}}},
             "session.audio.input.noise_reduction"),
        ):
            await send(ws, {"type": "session.update", "session": {"type": "realtime", "audio": bad}})
            assert (await until(ws, "error"))[-1]["error"]["param"] == param
        await send(ws, {"type": "session.update", "session": {
            "type": "realtime", "audio": {"output": {"voice": "alloy"}}}})
        assert (await until(ws, "session.updated"))[-1]["session"]["audio"]["output"]["voice"] == "alloy"
        normal = await spoken_seconds(ws, "say it at normal pace")
        await send(ws, {"type": "session.update", "session": {
            "type": "realtime", "audio": {"output": {"speed": 1.5}}}})
        await until(ws, "session.updated")
        fast = await spoken_seconds(ws, "say it at fast pace")
        print(f"\nPiper: {normal:.2f} s at speed 1, {fast:.2f} s at speed 1.5")
        assert 0.55 < fast / normal < 0.8, (normal, fast)
    finally:
        await ws.close()


async def test_the_idle_timeout_prompts_a_response_after_quiet_input(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    # Quiet input adds no words: the LLM's last message is the instructions.
    llm.add(Turn.say("Are you still there?", when=lambda m: m.get("role") == "system"
                     and "nudge a quiet caller" in str(m.get("content"))))
    ws = await connect(server)
    try:
        await recv_json(ws)
        await send(ws, {"type": "session.update", "session": {
            "type": "realtime", "output_modalities": ["text"],
            "instructions": "You nudge a quiet caller.", "audio": {"input": {
                "turn_detection": {"type": "server_vad", "idle_timeout_ms": 1500}}}}})
        assert (await until(ws, "session.updated"))[-1]["session"]["audio"]["input"][
            "turn_detection"]["idle_timeout_ms"] == 1500
        await append_fast(ws, np.zeros(RATE * 3, dtype=np.int16))  # 3 s of quiet
        events = await until(ws, "response.done", 60)
        timeout = next(e for e in events if e["type"] == "input_audio_buffer.timeout_triggered")
        assert timeout["audio_end_ms"] - timeout["audio_start_ms"] >= 1500
        committed = next(e for e in events if e["type"] == "input_audio_buffer.committed")
        assert committed["item_id"] == timeout["item_id"]
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Are you still there?"
    finally:
        await ws.close()
