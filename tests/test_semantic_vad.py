"""Whole utterances with pauses inside them, streamed at real-time pace through the
real server (Silero VAD, Whisper tiny.en, the Smart-Turn model; the scripted LLM):
each is one user turn and one reply, with ``semantic_vad`` and with the default
(adaptive ``server_vad``, ``VOICE_TURN_ADAPTIVE_WAIT``). A client that stops streaming in
a mid-clause pause still gets its turn ended; a speaker who goes on while the reply to the
first sentence is still being prepared keeps the turn."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import normalize, pcm24k, raw_connect, recv_json, stream_raw, wer

JFK = "openai-whisper/jfk.wav"  # pauses of about 1 s inside one sentence


async def _one_utterance(
    server: ServerThread, clip: str, turn_detection: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Stream ``clip`` (then 4.5 s of silence) and return every event until the reply is done."""
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        if turn_detection is not None:
            await ws.send(json.dumps({
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"turn_detection": turn_detection}}},
            }))
            updated = await recv_json(ws)
            assert updated["type"] == "session.updated"
            assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == turn_detection["type"]
        events: list[dict[str, Any]] = []
        await stream_raw(ws, pcm24k(clip, pad_s=4.5))
        while True:  # the reply may still be under way once the audio is sent
            event = await recv_json(ws, 60)
            events.append(event)
            if event["type"] == "response.done":
                break
        return events
    finally:
        await ws.close()


def _committed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "input_audio_buffer.committed"]


SEMANTIC = {"type": "semantic_vad", "eagerness": "auto"}


async def test_jfk_is_one_turn_and_one_reply(server: ServerThread, llm: ScriptedLlmServer) -> None:
    """``semantic_vad`` and the server's default turn detection, in two sessions streaming
    at the same time."""
    llm.add(*(Turn.say("I will ask.", when=user_says("country")) for _ in range(2)))
    runs = await asyncio.gather(
        _one_utterance(server, JFK, SEMANTIC),
        _one_utterance(server, JFK, None),
    )
    for name, events in zip(("semantic_vad", "default"), runs, strict=True):
        types = [e["type"] for e in events]
        assert len(_committed(events)) == 1, (name, types)
        assert types.count("input_audio_buffer.speech_started") == 1, name
        assert types.count("input_audio_buffer.speech_stopped") == 1, name
        assert types.count("response.created") == 1, name
        transcript = next(
            e["transcript"] for e in events
            if e["type"] == "conversation.item.input_audio_transcription.completed"
        )
        # The one turn holds the whole sentence, not "And so my fellow Americans".
        assert wer(reference_text(JFK), transcript) < 0.3, (name, transcript)
        assert normalize(transcript).endswith("country"), (name, transcript)
        assert events[-1]["response"]["status"] == "completed", name


async def test_a_client_that_stops_streaming_mid_clause_gets_its_turn_ended(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """jfk's opening ("And so, my fellow Americans,") and 1 s of its pause, then no more
    audio: the default server_vad holds the unfinished clause past 500 ms while audio
    comes, and ends the turn once the client has stopped sending (OpenAI's timing)."""
    llm.add(Turn.say("Go on.", when=user_says("fellow")))
    ws = await raw_connect(server)
    timed: list[tuple[float, dict[str, Any]]] = []

    async def read() -> None:
        while True:
            event = await recv_json(ws, 30)
            timed.append((time.monotonic(), event))
            if event["type"] == "response.done":
                return

    try:
        await recv_json(ws)
        reader = asyncio.create_task(read())
        await stream_raw(ws, pcm24k(JFK, pad_s=0.0)[: int(24000 * 3.2)])
        stopped_sending = time.monotonic()
        await asyncio.wait_for(reader, 30)
    finally:
        await ws.close()
    stops = [t for t, e in timed if e["type"] == "input_audio_buffer.speech_stopped"]
    assert len(stops) == 1, [e["type"] for _, e in timed]
    assert stops[0] > stopped_sending  # 1 s of silence streamed did not end the clause
    transcript = next(
        e["transcript"] for _, e in timed
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    )
    assert "fellow" in normalize(transcript), transcript
    assert timed[-1][1]["response"]["status"] == "completed"


async def test_a_speaker_who_goes_on_while_the_reply_is_prepared_keeps_the_turn(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """Two finished sentences 0.8 s apart (the VAD hears about 0.6 s of that pause), the
    default turn detection. The first sentence ends a turn after 300 ms of silence, but
    the reply begun on it is not ready to speak (the LLM takes 1 s to its first token),
    so the turn is held open, and the second sentence joins it: one turn, one reply."""
    slow = (Turn.say("Sure.", first_chunk_delay_s=1.0, when=user_says("coat")) for _ in range(3))
    llm.add(*slow)  # the first sentence's request is dropped: 2 or 3 requests in all
    gap = np.zeros(int(0.54 * 24000), dtype=np.int16)
    audio = np.concatenate([
        pcm24k("speechbrain/spk2_snt4.wav", pad_s=0.0), gap, pcm24k("speechbrain/spk2_snt5.wav"),
    ])
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await stream_raw(ws, audio)
        events: list[dict[str, Any]] = []
        while not events or events[-1]["type"] != "response.done":
            events.append(await recv_json(ws, 60))
    finally:
        await ws.close()
    types = [e["type"] for e in events]
    assert len(_committed(events)) == 1, types
    assert types.count("response.created") == 1, types
    transcript = normalize(next(
        e["transcript"] for e in events
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    ))
    assert "coat" in transcript and "fence" in transcript, transcript
    assert events[-1]["response"]["status"] == "completed"
