"""An ``openai-agents`` realtime session against this server; prints what happened as JSON.

Run by ``tests/test_client_openai_agents.py`` with ``.venv-clients/bin/python`` (the
framework's pins do not fit the server's venv)::

    agents_scenario.py WS_URL API_KEY SPOKEN.pcm [--defaults]

``SPOKEN.pcm``: 24 kHz mono 16-bit little-endian audio of a spoken question followed by
silence. The full scenario (for a server whose LLM is scripted), in order: a typed turn; a question the server answers with its
own (server-side) calculator tool, which the agent must never be asked to run; a
function tool the agent runs itself;
the spoken turn, streamed at real-time pace; the same words spoken over a long reply
(a barge-in: the server cancels the reply, the library stops its audio and truncates
the item); a handoff to a second agent, which answers the next turn.

``--defaults``: the short scenario for a server on its embedded defaults (a tiny model
whose words are not asserted): the session's ``tool_choice`` names ``get_weather``, so
the first typed question is answered by the agent's tool, whose body lifts the forced
choice (the answer would be a call again) and caps replies at ``SHORT_REPLY_TOKENS``, and
its result spoken; then a typed turn and the spoken turn. The call itself may take
``CALL_TOKENS`` (a call cut short would be invalid JSON).
Each step waits at most ``STEP_TIMEOUT_S``; a step that times out is recorded in
``timeouts`` and the next one runs. Only the standard library and the framework are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner, realtime_handoff
from agents.realtime.model_inputs import RealtimeModelSendRawMessage
from openai.types.responses import ToolChoiceFunction

STEP_TIMEOUT_S = 45.0
RATE = 24000
CHUNK_MS = 40


FORCED_CHOICE = ToolChoiceFunction(type="function", name="get_weather")
CALL_TOKENS = 48
SHORT_REPLY_TOKENS = 16
"""The tiny model's replies are cut here, to keep the scenario short (they end incomplete)."""
forced: list[Any] = []
"""The session whose ``tool_choice`` names ``get_weather`` (``--defaults``), until called."""

City = Literal["Oslo", "Paris", "London"]
"""A closed set: a grammar-forced call then always closes its string (a tiny model, free
to write any city, sometimes never ends the string and the call is invalid JSON)."""


@function_tool
async def get_weather(city: City) -> str:
    """The weather in a city."""
    if forced:  # answer the call in words: a choice still naming the tool would call it again
        lift = {"type": "session.update",
                "other_data": {"session": {"type": "realtime", "tool_choice": "none",
                                           "max_output_tokens": SHORT_REPLY_TOKENS}}}
        await forced.pop().model.send_event(RealtimeModelSendRawMessage(message=lift))
    return f"It is sunny and 21 degrees in {city}."


billing = RealtimeAgent(name="Billing agent", instructions="You handle billing questions.")
assistant = RealtimeAgent(
    name="Assistant",
    instructions="You are a helpful voice assistant. Be brief.",
    tools=[get_weather],
    handoffs=[realtime_handoff(billing)],
)


class Recorder:
    """Every session event in order, and waits on them."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.changed = asyncio.Condition()
        self.timeouts: list[str] = []
        self.started = time.monotonic()
        self.reached: dict[str, float] = {}
        """Seconds from the start at which each step's awaited event arrived."""

    async def consume(self, session: Any) -> None:
        async for event in session:
            async with self.changed:
                self.events.append(event)
                self.changed.notify_all()

    async def wait(self, step: str, since: int, match: Callable[[Any], bool]) -> int:
        """Index of the first event from ``since`` on that ``match`` accepts, or -1
        (recorded as a timeout of ``step``)."""

        def found() -> int:
            return next(
                (i for i in range(since, len(self.events)) if match(self.events[i])), -1
            )

        try:
            async with self.changed:
                await asyncio.wait_for(self.changed.wait_for(lambda: found() >= 0), STEP_TIMEOUT_S)
        except TimeoutError:
            self.timeouts.append(step)
            return -1
        self.reached[step] = round(time.monotonic() - self.started, 2)
        return found()


def raw_server(event: Any) -> dict[str, Any] | None:
    """The server event under a ``raw_model_event``, if it is one."""
    if event.type == "raw_model_event" and getattr(event.data, "type", "") == "raw_server_event":
        data = event.data.data
        return data if isinstance(data, dict) else None
    return None


def server_event(kind: str) -> Callable[[Any], bool]:
    """Matches the raw server event of type ``kind``."""

    def match(event: Any) -> bool:
        raw = raw_server(event)
        return raw is not None and raw.get("type") == kind

    return match


spoken_reply = server_event("response.output_audio_transcript.done")
user_transcript = server_event("conversation.item.input_audio_transcription.completed")


async def microphone(session: Any, pcm: bytes) -> None:
    """``pcm`` then silence, in 40 ms appends at real-time pace, as a microphone sends
    audio until it is switched off (cancelled): the end of a turn is heard in silence."""
    step = RATE * 2 * CHUNK_MS // 1000
    silence = bytes(step)
    start = time.monotonic()
    n = 0
    while True:
        offset = n * step
        await session.send_audio(pcm[offset : offset + step] if offset < len(pcm) else silence)
        n += 1
        delay = start + n * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def speak(recorder: Recorder, session: Any, pcm: bytes, step: str, since: int) -> int:
    """Say ``pcm`` into the session; index of its transcription event, or -1."""
    mic = asyncio.create_task(microphone(session, pcm))
    try:
        return await recorder.wait(step, since, user_transcript)
    finally:
        mic.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await mic


async def typed_turn(recorder: Recorder, session: Any, text: str, step: str) -> None:
    mark = len(recorder.events)
    await session.send_message(text)
    await recorder.wait(step, mark, spoken_reply)


async def tool_turn(recorder: Recorder, session: Any, text: str) -> None:
    """``text`` answered by the agent's tool, whose result is then spoken."""
    mark = len(recorder.events)
    await session.send_message(text)
    tool_end = await recorder.wait("tool", mark, lambda e: e.type == "tool_end")
    if tool_end >= 0:
        await recorder.wait("tool answer", tool_end, spoken_reply)


async def spoken_turn(recorder: Recorder, session: Any, pcm: bytes) -> None:
    mark = len(recorder.events)
    heard = await speak(recorder, session, pcm, "spoken heard", mark)
    if heard >= 0:
        await recorder.wait("spoken", heard, spoken_reply)


async def scenario(recorder: Recorder, session: Any, pcm: bytes) -> None:
    await typed_turn(recorder, session, "Hello, who are you?", "typed")
    await typed_turn(recorder, session, "What is thirteen times three?", "server tool")
    await tool_turn(recorder, session, "What is the forecast for Paris?")
    await spoken_turn(recorder, session, pcm)

    mark = len(recorder.events)
    await session.send_message("Tell me a very long tale please.")
    first_audio = await recorder.wait("long reply audio", mark, lambda e: e.type == "audio")
    if first_audio >= 0:
        heard = await speak(recorder, session, pcm, "barge-in heard", first_audio)
        await recorder.wait("barge-in", first_audio, lambda e: e.type == "audio_interrupted")
        if heard >= 0:
            await recorder.wait("answer after barge-in", heard, spoken_reply)

    mark = len(recorder.events)
    await session.send_message("I have a question about my invoice.")
    handoff = await recorder.wait("handoff", mark, lambda e: e.type == "handoff")
    if handoff >= 0:
        await recorder.wait("handoff answer", handoff, spoken_reply)


async def defaults_scenario(recorder: Recorder, session: Any, pcm: bytes) -> None:
    await tool_turn(recorder, session, "What is the weather in Paris?")
    await typed_turn(recorder, session, "Hello, who are you?", "typed")
    await spoken_turn(recorder, session, pcm)


def summary(recorder: Recorder, failure: str | None) -> dict[str, Any]:
    raw = [r for r in map(raw_server, recorder.events) if r is not None]
    transcripts = [
        r.get("transcript", "")
        for r in raw
        if r.get("type") == "conversation.item.input_audio_transcription.completed"
    ]
    calls = [
        r.get("item", {})
        for r in raw
        if r.get("type") == "response.output_item.done"
        and r.get("item", {}).get("type") == "function_call"
    ]
    spoken_replies = [
        r.get("transcript", "") for r in raw if r.get("type") == "response.output_audio_transcript.done"
    ]
    return {
        "failure": failure,
        "timeouts": recorder.timeouts,
        "reached_s": recorder.reached,
        "session_events": [e.type for e in recorder.events],
        "errors": [repr(e.error) for e in recorder.events if e.type == "error"],
        "server_events": [r.get("type") for r in raw],
        "server_errors": [r.get("error") for r in raw if r.get("type") == "error"],
        "response_statuses": [
            (r.get("response") or {}).get("status") for r in raw if r.get("type") == "response.done"
        ],
        "tools": [[e.tool.name, e.output] for e in recorder.events if e.type == "tool_end"],
        "function_calls": [item.get("name") for item in calls],
        "call_arguments": [item.get("arguments") for item in calls],
        "handoffs": [
            [e.from_agent.name, e.to_agent.name] for e in recorder.events if e.type == "handoff"
        ],
        "audio_interrupted": sum(e.type == "audio_interrupted" for e in recorder.events),
        "audio_chunks": sum(e.type == "audio" for e in recorder.events),
        "user_transcripts": transcripts,
        "spoken_replies": spoken_replies,
    }


async def main(url: str, api_key: str, pcm: bytes, defaults: bool) -> dict[str, Any]:
    recorder = Recorder()
    settings: Any = {"tool_choice": FORCED_CHOICE, "max_output_tokens": CALL_TOKENS} if defaults else {}
    runner = RealtimeRunner(assistant, config={"model_settings": settings})
    failure = None
    try:
        session = await runner.run(model_config={"url": url, "api_key": api_key})
        async with session:
            consumer = asyncio.create_task(recorder.consume(session))
            try:
                if defaults:
                    forced.append(session)
                    await defaults_scenario(recorder, session, pcm)
                else:
                    await scenario(recorder, session, pcm)
            finally:
                consumer.cancel()
                try:
                    await consumer
                except asyncio.CancelledError:
                    pass
                except Exception:  # the session raised: report it
                    failure = traceback.format_exc()
    except Exception:
        failure = traceback.format_exc()
    return summary(recorder, failure)


if __name__ == "__main__":
    with open(sys.argv[3], "rb") as f:
        spoken_pcm = f.read()
    result = asyncio.run(main(sys.argv[1], sys.argv[2], spoken_pcm, "--defaults" in sys.argv[4:]))
    json.dump(result, sys.stdout)
