"""Whole utterances with pauses inside them, streamed at real-time pace through the
real server (Silero VAD, Whisper tiny.en, the Smart-Turn model; the scripted LLM):
each is one user turn and one reply, with ``semantic_vad`` and with the adaptive
``server_vad`` (``VOICE_TURN_ADAPTIVE_WAIT``, off by default)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import normalize, pcm24k, raw_connect, recv_json, stream_raw, wer
from voice.settings import load_settings
from web.app import create_app

JFK = "openai-whisper/jfk.wav"  # pauses of about 1 s inside one sentence


@pytest.fixture(scope="module")
def adaptive_server(
    llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The real app with the adaptive server_vad on (new sessions default to server_vad)."""
    settings = load_settings(
        llm_base_url=llm.base_url,
        cache_dir=tmp_path_factory.mktemp("cache"),
        data_dir=tmp_path_factory.mktemp("data"),
        turn_adaptive_wait=True,
        rate_limit_per_minute=0,
    )
    with ServerThread(create_app(settings)) as running:
        yield running


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


async def test_jfk_is_one_turn_and_one_reply(
    adaptive_server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """``semantic_vad`` and the adaptive ``server_vad`` (the server's default here), in
    two sessions streaming at the same time."""
    llm.add(*(Turn.say("I will ask.", when=user_says("country")) for _ in range(2)))
    runs = await asyncio.gather(
        _one_utterance(adaptive_server, JFK, SEMANTIC),
        _one_utterance(adaptive_server, JFK, None),
    )
    for name, events in zip(("semantic_vad", "adaptive_server_vad"), runs, strict=True):
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
