"""``response.create``'s whole surface against the real server (Whisper, VAD; the
scripted LLM): out-of-band responses, ``input`` and ``metadata``, per-response tools and
tool choice, and push-to-talk (a commit followed at once by ``response.create``)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import RATE, pcm24k, raw_connect, recv_json, send, until, wer

TEXT = {"output_modalities": ["text"]}


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def test_an_out_of_band_response_reads_its_input_and_leaves_the_conversation_alone(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(
        Turn.say("Category: weather.", when=user_says("classify: is it raining")),
        Turn.say("You asked about rain.", when=user_says("what did i ask about rain")),
    )
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await send(ws, {"type": "conversation.item.create", "item": user_text("is it raining")})
        await until(ws, "conversation.item.done")
        await send(ws, {"type": "response.create", "response": {
            **TEXT, "conversation": "none", "metadata": {"purpose": "classify"},
            "instructions": "Classify the request.",
            "input": [user_text("classify: is it raining")]}})
        events = await until(ws, "response.done")
        created, done = events[0]["response"], events[-1]["response"]
        assert created["metadata"] == done["metadata"] == {"purpose": "classify"}
        assert created["usage"] is None and done["usage"]["total_tokens"] > 0
        assert done["conversation_id"] is None and done["status"] == "completed"
        assert done["output"][0]["content"][0]["text"] == "Category: weather."
        assert not [e for e in events if e["type"].startswith("conversation.item.")]
        request = llm.chat_requests[-1].messages
        assert request[0] == {"role": "system", "content": "Classify the request."}
        assert [m["content"] for m in request[1:]] == ["classify: is it raining"]  # input only
        # The main conversation never saw the out-of-band exchange.
        await send(ws, {"type": "conversation.item.create",
                        "item": user_text("what did i ask about rain")})
        await send(ws, {"type": "response.create", "response": TEXT})
        main = await until(ws, "response.done")
        assert main[-1]["response"]["metadata"] is None
        contents = [m["content"] for m in llm.chat_requests[-1].messages[1:]]
        assert contents == ["is it raining", "what did i ask about rain"], contents
    finally:
        await ws.close()


async def test_per_response_tools_and_a_named_tool_choice_reach_the_llm_in_its_shape(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(Turn.call("lookup_order", {"order": "A17"}, when=user_says("where is order a17")))
    tool = {"type": "function", "name": "lookup_order", "description": "Find an order.",
            "parameters": {"type": "object", "properties": {"order": {"type": "string"}}}}
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await send(ws, {"type": "response.create", "response": {
            **TEXT, "tool_choice": {"type": "function", "name": "nope"}, "tools": [tool]}})
        error = (await until(ws, "error"))[-1]["error"]
        assert error["param"] == "response.tool_choice" and "nope" in error["message"]
        await send(ws, {"type": "conversation.item.create", "item": user_text("where is order A17")})
        await send(ws, {"type": "response.create", "response": {
            **TEXT, "tools": [tool], "tool_choice": {"type": "function", "name": "lookup_order"}}})
        events = await until(ws, "response.done")
        body = llm.chat_requests[-1].body
        assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup_order"}}
        assert "lookup_order" in {t["function"]["name"] for t in body["tools"]}
        call = next(o for o in events[-1]["response"]["output"] if o["type"] == "function_call")
        assert call["name"] == "lookup_order" and json.loads(call["arguments"]) == {"order": "A17"}
        # The session's own tools did not change.
        await send(ws, {"type": "session.update", "session": {"type": "realtime"}})
        updated = (await until(ws, "session.updated"))[-1]["session"]
        assert updated["tools"] == [] and updated["tool_choice"] == "auto"
    finally:
        await ws.close()


async def test_push_to_talk_answers_the_words_just_committed(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    clip = "openai-whisper/jfk.wav"
    llm.add(Turn.say("A famous speech.", when=user_says("ask not what your country")))
    ws = await raw_connect(server)
    try:
        await recv_json(ws)
        await send(ws, {"type": "session.update", "session": {
            "type": "realtime", "audio": {"input": {"turn_detection": None}}}})
        pcm = pcm24k(clip, pad_s=0.2)
        for offset in range(0, len(pcm), RATE // 2):
            chunk = pcm[offset : offset + RATE // 2].astype("<i2").tobytes()
            await send(ws, {"type": "input_audio_buffer.append",
                            "audio": base64.b64encode(chunk).decode()})
        await send(ws, {"type": "input_audio_buffer.commit"})
        await send(ws, {"type": "response.create", "response": TEXT})  # at once
        events = await until(ws, "response.done", 90)
        types = [e["type"] for e in events]
        assert types.index("conversation.item.input_audio_transcription.completed") < types.index(
            "response.created"
        )
        transcript = next(e["transcript"] for e in events if e["type"].endswith(".completed"))
        assert wer(reference_text(clip), transcript) == 0.0, transcript
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "A famous speech."
    finally:
        await ws.close()
