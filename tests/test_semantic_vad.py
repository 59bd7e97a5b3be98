"""Whole utterances with pauses inside them, streamed at real-time pace through the
real server (Silero VAD, Whisper tiny.en, the Smart-Turn model; the scripted LLM):
each is one user turn and one reply, with ``semantic_vad`` and with the default
(adaptive ``server_vad``, ``VOICE_TURN_ADAPTIVE_WAIT``). A client that stops streaming in
a mid-clause pause still gets its turn ended."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import normalize, pcm24k, raw_connect, recv_json, stream_raw, wer

JFK = "openai-whisper/jfk.wav"  # pauses of about 1 s inside one sentence
READING = "lhotse/2412-153948-0000.wav"
"""Two read sentences, 11.7 s; the first ("... to leave my native country.") is followed by
a 672 ms pause 7.2 s in, which the turn model scores as an ending (0.95)."""


async def _one_utterance(
    server: ServerThread, clip: str, turn_detection: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Stream ``clip`` (then 4.5 s of silence) and return every event until a reply is
    done and 1.5 s pass with no further event (a second turn's events included)."""
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
            try:
                event = await recv_json(ws, 1.5 if _done(events) else 60)
            except TimeoutError:
                return events
            events.append(event)
    finally:
        await ws.close()


def _done(events: list[dict[str, Any]]) -> bool:
    types = [e["type"] for e in events]
    return "response.done" in types and types.count("response.done") == types.count(
        "response.created"
    )


def _response_done(events: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in events if e["type"] == "response.done")


def _committed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "input_audio_buffer.committed"]


SEMANTIC = {"type": "semantic_vad", "eagerness": "auto"}


async def _one_turn_in_each_mode(server: ServerThread, clip: str) -> dict[str, tuple[list[str], str]]:
    """``clip`` streamed with ``semantic_vad`` and with the default, two sessions at once.
    Asserts each is one committed turn with one completed reply; returns each mode's
    event types and turn transcript."""
    runs = await asyncio.gather(
        _one_utterance(server, clip, SEMANTIC),
        _one_utterance(server, clip, None),
    )
    heard = {}
    for name, events in zip(("semantic_vad", "default"), runs, strict=True):
        types = [e["type"] for e in events]
        assert len(_committed(events)) == 1, (name, types)
        assert types.count("response.created") == 1, (name, types)
        assert _response_done(events)["response"]["status"] == "completed", name
        heard[name] = types, next(
            e["transcript"] for e in events
            if e["type"] == "conversation.item.input_audio_transcription.completed"
        )
    return heard


async def test_jfk_is_one_turn_and_one_reply(server: ServerThread, llm: ScriptedLlmServer) -> None:
    """``semantic_vad`` and the server's default turn detection, in two sessions streaming
    at the same time."""
    llm.add(*(Turn.say("I will ask.", when=user_says("country")) for _ in range(2)))
    for name, (types, transcript) in (await _one_turn_in_each_mode(server, JFK)).items():
        assert types.count("input_audio_buffer.speech_started") == 1, name
        assert types.count("input_audio_buffer.speech_stopped") == 1, name
        # The one turn holds the whole sentence, not "And so my fellow Americans".
        assert wer(reference_text(JFK), transcript) < 0.3, (name, transcript)
        assert normalize(transcript).endswith("country"), (name, transcript)


async def test_a_pause_between_read_sentences_is_one_turn_and_one_reply(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """After 7 s of reading, a finished sentence and a 672 ms pause do not end the turn,
    with ``semantic_vad`` or the default; the reply answers both sentences."""
    llm.add(*(Turn.say("I understand.", when=user_says("myself")) for _ in range(2)))
    for name, (_, transcript) in (await _one_turn_in_each_mode(server, READING)).items():
        assert wer(reference_text(READING), transcript) < 0.3, (name, transcript)


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
