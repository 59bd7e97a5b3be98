"""Several realtime sessions at once on the embedded defaults: the real app with the
embedded llama.cpp server (SmolLM2, not a scripted LLM), driven by the ``openai``
SDK's realtime client. Every response of every session must end ``completed``.

Before the fix, a new request to the embedded server cut off the one streaming,
and most concurrent responses failed with "the stream ended without a finish reason".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from tests.servers import ServerThread
from tests.test_realtime_ws import events_until, pcm24k, stream_audio

pytestmark = pytest.mark.slow

QUESTIONS = ("Say hello.", "What is two plus two?")
SPOKEN = ("speechbrain/spk1_snt1.wav", "speechbrain/spk2_snt1.wav")
INSTRUCTIONS = "You are a helpful voice assistant. Answer in one short sentence."


@pytest.fixture
def embedded_server(embedded_defaults: ServerThread) -> ServerThread:
    """The real app on the embedded defaults (shared with tests/test_embedded_defaults.py)."""
    return embedded_defaults


def sdk(server: ServerThread) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="local")


async def typed_session(server: ServerThread) -> list[Any]:
    """Typed turns (:data:`QUESTIONS`) with text replies; the ``response.done`` of each."""
    done = []
    async with sdk(server).realtime.connect(model="voice-agent") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": INSTRUCTIONS,
            }
        )
        for question in QUESTIONS:
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": question}],
                }
            )
            await conn.response.create()
            events = await events_until(conn, "response.done", timeout_s=240)
            done.append(events[-1])
    return done


async def spoken_session(server: ServerThread) -> list[Any]:
    """Spoken turns (:data:`SPOKEN`: real speech, server VAD) with spoken replies."""
    done = []
    async with sdk(server).realtime.connect(model="voice-agent") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(
            session={"type": "realtime", "instructions": INSTRUCTIONS}
        )
        for clip in SPOKEN:
            sender = asyncio.create_task(stream_audio(conn, pcm24k(clip)))
            try:
                events = await events_until(conn, "response.done", timeout_s=240)
            finally:
                await sender
            done.append(events[-1])
    return done


def failed_responses(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('voice_realtime_responses_total{status="failed"}'):
            return float(line.split()[-1])
    return 0.0


async def test_four_sessions_at_once_all_complete(embedded_server: ServerThread) -> None:
    results = await asyncio.gather(
        typed_session(embedded_server),
        typed_session(embedded_server),
        spoken_session(embedded_server),
        spoken_session(embedded_server),
    )
    statuses = [
        (session, turn, done.response.status, done.response.status_details)
        for session, dones in enumerate(results)
        for turn, done in enumerate(dones)
    ]
    assert len(statuses) == 2 * (len(QUESTIONS) + len(SPOKEN))
    not_completed = [s for s in statuses if s[2] != "completed"]
    assert not not_completed, f"{len(not_completed)} of {len(statuses)} not completed: {not_completed}"
    # Every reply has words in it: the model really answered each.
    for dones in results:
        for done in dones:
            texts = [
                getattr(part, "text", None) or getattr(part, "transcript", None) or ""
                for item in done.response.output or []
                for part in getattr(item, "content", None) or []
            ]
            assert any(t.strip() for t in texts), done.response
    async with httpx.AsyncClient(timeout=30) as http:
        metrics = (await http.get(f"{embedded_server.http_url}/metrics")).text
    assert failed_responses(metrics) == 0


async def test_a_required_tool_call_on_the_embedded_defaults(embedded_server: ServerThread) -> None:
    """A named ``tool_choice`` on the embedded LLM: the client's tool is called with
    valid arguments (llama.cpp's grammar), and the client's answer closes the round
    trip (``required`` itself is tested on the model in tests/test_llm.py)."""
    tool = {"type": "function", "name": "lookup_order", "description": "Find an order by id.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                           "required": ["order_id"]}}
    async with sdk(embedded_server).realtime.connect(model="voice-agent") as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                           "tools": [tool],
                                           "tool_choice": {"type": "function",
                                                           "name": "lookup_order"}})
        await conn.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Where is my order A17?"}]})
        await conn.response.create()
        done = (await events_until(conn, "response.done", timeout_s=240))[-1].response
        calls = [o for o in done.output or [] if o.type == "function_call"]
        assert [c.name for c in calls] == ["lookup_order"], done
        assert isinstance(json.loads(calls[0].arguments or "")["order_id"], str)
        await conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": calls[0].call_id or "",
            "output": '{"status": "shipped"}'})
        await conn.response.create(response={"tool_choice": "none"})
        after = (await events_until(conn, "response.done", timeout_s=240))[-1].response
    assert after.status == "completed" and after.output and after.output[0].type == "message"
