"""Smoke tests on the embedded defaults, as a user runs ``voice serve`` with no settings:
Whisper tiny.en live and base for meetings, the embedded llama.cpp server with SmolLM2 and
the default tools, Piper. No scripted LLM anywhere in this module: what the embedded model
says is not asserted (it is tiny), only that each path completes as the server promises."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from tests.conftest import data_path, reference_text
from tests.servers import ServerThread
from tests.test_realtime_ws import pcm24k, stream_audio
from tests.test_transcriptions_api import wer

QUESTION = "azure-speech-sdk/whatstheweatherlike.wav"
MEETING = "pyannote-audio/sample.wav"


@pytest.fixture
def defaults(embedded_defaults: ServerThread) -> ServerThread:
    return embedded_defaults


async def test_a_spoken_turn_on_the_embedded_defaults(defaults: ServerThread) -> None:
    client = AsyncOpenAI(base_url=f"{defaults.http_url}/v1", api_key="unused")
    events: list[Any] = []
    async with client.realtime.connect(model="voice-agent") as conn:
        created = await asyncio.wait_for(conn.recv(), 60)
        assert created.type == "session.created"
        tools = {t.name for t in created.session.tools or []}
        assert not tools, tools  # the server's own tools stay on the server
        await stream_audio(conn, pcm24k(QUESTION, pad_s=2.5))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            event = await asyncio.wait_for(conn.recv(), 120)
            events.append(event)
            if event.type == "response.done":
                break
    types = [e.type for e in events]
    assert "error" not in types, [e for e in events if e.type == "error"]
    heard = next(e for e in events
                 if e.type == "conversation.item.input_audio_transcription.completed")
    assert wer(reference_text(QUESTION), heard.transcript) <= 0.25, heard.transcript
    done = events[-1]
    assert done.type == "response.done" and done.response.status == "completed", done
    audio = [e for e in events if e.type == "response.output_audio.delta"]
    assert audio, types  # the reply was spoken
    said = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    assert said.strip()


def test_a_meeting_summary_on_the_embedded_defaults(defaults: ServerThread) -> None:
    """Upload → transcript with speakers → summary, every item citing real segments. The
    shipped SmolLM2-135M is not asked to summarise (``summary_llm=auto``): the summary is
    the extractive method's."""
    with httpx.Client(base_url=defaults.http_url, timeout=60) as http:
        made = http.post(
            "/v1/meetings",
            files={"file": (Path(MEETING).name, data_path(MEETING).read_bytes(), "audio/wav")},
        )
        assert made.status_code == 202, made.text
        job_id = made.json()["id"]
        deadline = time.monotonic() + 600
        while (job := http.get(f"/v1/meetings/{job_id}").json())["state"] not in (
            "succeeded", "failed", "cancelled"
        ):
            assert time.monotonic() < deadline, job
            time.sleep(1.0)
        assert job["state"] == "succeeded", job
        transcript = http.get(f"/v1/meetings/{job_id}/transcript").json()
        summary = http.get(f"/v1/meetings/{job_id}/summary").json()
    segment_ids = {s["id"] for s in transcript["segments"]}
    assert len(transcript["speakers"]) >= 2 and segment_ids
    assert summary["key_points"], summary
    assert set(summary["method"].values()) == {"extractive"}, summary["method"]
    for section in ("key_points", "decisions", "action_items", "open_questions"):
        for item in summary[section]:
            assert item["citations"] and set(item["citations"]) <= segment_ids, item
