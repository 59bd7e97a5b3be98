"""``livekit-plugins-openai``'s ``RealtimeModel`` against this server, without a LiveKit room:
its ``RealtimeSession`` is driven directly, as ``AgentSession`` drives it. Prints JSON.

Run by ``tests/test_client_livekit.py`` with ``.venv-clients/bin/python``::

    livekit_scenario.py HTTP_BASE_URL API_KEY PUSH_TO_TALK.pcm [--defaults]

``HTTP_BASE_URL`` is ``http://127.0.0.1:PORT/v1`` (the plugin turns it into the WebSocket
URL); ``PUSH_TO_TALK.pcm`` is 24 kHz mono 16-bit little-endian speech. Steps, each bounded
by ``STEP_TIMEOUT_S`` and recorded in ``failures`` when it fails, the next one running:

1. ``greeting``: a user message through ``update_chat_ctx``, then ``generate_reply()``,
   whose future resolves only when ``response.created`` carries the request's ``metadata``;
2. ``tool``: the model calls the declared ``get_weather``; its output goes back through
   ``update_chat_ctx`` and a second ``generate_reply()`` speaks from it;
3. ``server_tool``: a question the server answers with its own calculator: the
   session, which declared only ``get_weather``, must see no call to run;
4. ``push_to_talk``: a second session with turn detection off: the recording pushed as
   frames, ``commit_audio()``, then at once ``generate_reply()``.

``--defaults``, for a server on its embedded defaults (a tiny model whose words are not
asserted): no ``server_tool`` step, and the ``tool`` step forces the call with
``generate_reply(tool_choice=...)`` naming ``get_weather``, then answers with
``tool_choice="none"``. Replies are not capped: the plugin raises a ``RealtimeError``
for a response that ends ``incomplete`` at ``max_output_tokens``. So a step may last as
long as a reply of the server's whole token limit takes to play: audio is paced at real
time, and 256 tokens of SmolLM2 can be 60-90 s of speech. Each step then has
``DEFAULTS_STEP_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any, Literal

import aiohttp
from livekit import rtc
from livekit.agents import llm
from livekit.plugins.openai.realtime import RealtimeModel

STEP_TIMEOUT_S = 45.0
DEFAULTS_STEP_TIMEOUT_S = 150.0
RATE = 24000
FRAME_SAMPLES = RATE // 50  # 20 ms frames, as a room track delivers them
FORCED: Any = {"type": "function", "function": {"name": "get_weather"}}

City = Literal["Oslo", "Paris", "London"]
"""A closed set: a grammar-forced call then always closes its string (a tiny model, free
to write any city, sometimes never ends the string and the call is invalid JSON)."""


@llm.function_tool
async def get_weather(city: City) -> str:
    """The weather in a city."""
    return f"It is snowy and minus 3 degrees in {city}."


class Watch:
    """What a session emits: errors, transcriptions, server event types."""

    def __init__(self, session: Any) -> None:
        self.errors: list[str] = []
        self.transcripts: list[str] = []
        self.server_events: list[str] = []
        self.server_errors: list[Any] = []
        self.heard = asyncio.Event()
        session.on("error", lambda e: self.errors.append(repr(e.error)))
        session.on("input_audio_transcription_completed", self._transcribed)
        session.on("openai_server_event_received", self._server_event)

    def _transcribed(self, event: Any) -> None:
        self.transcripts.append(event.transcript)
        self.heard.set()

    def _server_event(self, event: dict[str, Any]) -> None:
        self.server_events.append(str(event.get("type")))
        if event.get("type") == "error":
            self.server_errors.append(event.get("error"))


async def reply(session: Any, **options: Any) -> dict[str, Any]:
    """``generate_reply(**options)`` and everything the generation then delivers."""
    generation = await session.generate_reply(**options)
    out: dict[str, Any] = {"user_initiated": generation.user_initiated, "text": "",
                           "audio_frames": 0, "calls": []}
    async for message in generation.message_stream:
        async def frames(stream: Any) -> int:
            return sum([1 async for _ in stream])

        counting = asyncio.create_task(frames(message.audio_stream))
        out["text"] += "".join([piece async for piece in message.text_stream])
        out["audio_frames"] += await counting
    out["calls"] = [call async for call in generation.function_stream]
    return out


async def tell(session: Any, text: str) -> None:
    """The user's typed words added to the conversation, as an agent does."""
    ctx = session.chat_ctx.copy()
    ctx.add_message(role="user", content=text)
    await session.update_chat_ctx(ctx)


async def greeting(session: Any) -> dict[str, Any]:
    await tell(session, "Livekit greeting please.")
    return await reply(session)


async def tool(session: Any, forced: bool) -> dict[str, Any]:
    await session.update_tools([get_weather])
    await tell(session, "What is the weather in Oslo?")
    asked = await reply(session, **({"tool_choice": FORCED} if forced else {}))
    calls = asked.pop("calls")
    result: dict[str, Any] = {"calls": [[c.name, json.loads(c.arguments)] for c in calls]}
    if not calls:
        return result
    ctx = session.chat_ctx.copy()
    for call in calls:
        output = await get_weather(**json.loads(call.arguments))
        ctx.items.append(
            llm.FunctionCallOutput(call_id=call.call_id, name=call.name, output=output,
                                   is_error=False)
        )
    await session.update_chat_ctx(ctx)
    answer = await reply(session, **({"tool_choice": "none"} if forced else {}))
    answer.pop("calls")
    result["answer"] = answer
    return result


async def server_tool(session: Any) -> dict[str, Any]:
    await tell(session, "What is nine times six?")
    answer = await reply(session)
    answer["calls"] = [call.name for call in answer["calls"]]
    return answer


async def push_to_talk(session: Any, watch: Watch, pcm: bytes) -> dict[str, Any]:
    step = FRAME_SAMPLES * 2
    for offset in range(0, len(pcm) - step + 1, step):
        session.push_audio(rtc.AudioFrame(pcm[offset : offset + step], RATE, 1, FRAME_SAMPLES))
    session.commit_audio()
    answer = await reply(session)
    answer.pop("calls")
    await asyncio.wait_for(watch.heard.wait(), STEP_TIMEOUT_S)
    return answer


async def step(
    failures: dict[str, str], name: str, work: Any, timeout_s: float = STEP_TIMEOUT_S
) -> Any:
    try:
        return await asyncio.wait_for(work, timeout_s)
    except Exception:
        failures[name] = traceback.format_exc(limit=3)
        return None


async def main(base_url: str, api_key: str, pcm: bytes, defaults: bool) -> dict[str, Any]:
    failures: dict[str, str] = {}
    results: dict[str, Any] = {}
    limit = DEFAULTS_STEP_TIMEOUT_S if defaults else STEP_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        model = RealtimeModel(model="voice-agent", base_url=base_url, api_key=api_key,
                              http_session=http)
        session = model.session()
        watch = Watch(session)
        try:
            results["greeting"] = await step(failures, "greeting", greeting(session), limit)
            results["tool"] = await step(failures, "tool", tool(session, forced=defaults), limit)
            if not defaults:
                results["server_tool"] = await step(failures, "server_tool", server_tool(session))
        finally:
            await session.aclose()
        ptt_model = RealtimeModel(model="voice-agent", base_url=base_url, api_key=api_key,
                                  http_session=http, turn_detection=None)
        ptt = ptt_model.session()
        ptt_watch = Watch(ptt)
        try:
            results["push_to_talk"] = await step(
                failures, "push_to_talk", push_to_talk(ptt, ptt_watch, pcm), limit
            )
        finally:
            await ptt.aclose()
    return {
        "failures": failures,
        **results,
        "errors": watch.errors + ptt_watch.errors,
        "server_errors": watch.server_errors + ptt_watch.server_errors,
        "server_events": watch.server_events,
        "push_to_talk_transcripts": ptt_watch.transcripts,
        "push_to_talk_events": ptt_watch.server_events,
    }


if __name__ == "__main__":
    with open(sys.argv[3], "rb") as f:
        audio = f.read()
    result = asyncio.run(main(sys.argv[1], sys.argv[2], audio, "--defaults" in sys.argv[4:]))
    json.dump(result, sys.stdout, default=str)
