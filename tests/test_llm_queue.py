"""The chat client's fair queue against a real HTTP server (the scripted LLM): with
one slot, a second session's request reaches the server only once the first reply
has ended, and a request that waits too long fails with a clear ``timeout``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from voice.llm import ChatClient, LlmError, LlmOptions, TextDelta


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def reply(client: ChatClient, text: str, key: str) -> tuple[str, float, float]:
    """The reply's text, and when (monotonic s) its first and last events came."""
    first = last = 0.0
    parts = []
    async for event in client.stream(ask(text), queue_key=key):
        last = time.monotonic()
        first = first or last
        if isinstance(event, TextDelta):
            parts.append(event.text)
    return "".join(parts), first, last


async def test_one_slot_sends_one_request_at_a_time() -> None:
    script = [Turn.say("Alpha one two three.", chunk_delay_s=0.05, when=user_says("alpha")),
              Turn.say("Beta four five.", chunk_delay_s=0.05, when=user_says("beta"))]
    async with (
        ScriptedLlmServer(script) as llm,
        ChatClient(LlmOptions(llm.base_url, max_concurrent=1)) as client,
    ):
        (a, _, a_end), (b, b_first, _) = await asyncio.gather(
            reply(client, "alpha", "s1"), reply(client, "beta", "s2"))
    assert (a, b) == ("Alpha one two three.", "Beta four five.")
    assert b_first >= a_end  # the second reply began after the first one ended
    assert all(not r.disconnected for r in llm.chat_requests)


async def test_a_request_waiting_too_long_fails_with_a_clear_timeout() -> None:
    slow = Turn.say("A long and slow reply that holds the only slot.", chunk_delay_s=0.3)
    async with (
        ScriptedLlmServer([slow], default=Turn.say("Never reached.")) as llm,
        ChatClient(LlmOptions(llm.base_url, max_concurrent=1, queue_timeout_s=0.3)) as client,
    ):
        holder = asyncio.create_task(reply(client, "first", "s1"))
        await asyncio.sleep(0)  # the first request takes the only slot at once
        assert client.gate.running == 1
        with pytest.raises(LlmError) as info:
            await reply(client, "second", "s2")
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert info.value.kind == "timeout" and "over capacity" in info.value.message
    assert len(llm.chat_requests) == 1  # the waiting request never reached the server
    assert (client.gate.running, client.gate.waiting) == (0, 0)
