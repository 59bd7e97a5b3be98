"""What :class:`~tests.fakes.scripted_llm.ScriptedLlmServer` replies: turns and
their rendering as OpenAI chat-completion objects. Pure, no I/O.

A :class:`Turn` is one assistant reply (text, tool calls, or both) plus, if
wanted, a matcher on the request's last message and fault/timing knobs.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
Matcher = Callable[[Message], bool]


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the fake model makes; ``arguments`` is a dict (sent as JSON) or raw text."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str | None = None  # default: call_<request>_<index>

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Turn:
    """One scripted reply.

    ``when``: the turn is used only for a request whose last message matches.
    ``first_chunk_delay_s``: pause after the response headers, before the first chunk
    (for a non-streamed request: before the response).
    ``chunk_delay_s``: pause between chunks (None: the server's default).
    ``disconnect_after``: drop the connection after this many chunks (no ``[DONE]``).
    ``end_after``: send ``[DONE]`` after this many chunks, so the stream ends cleanly
    without a finish reason (what llama.cpp's server does to a reply it interrupts).
    ``finish_reason``: default ``tool_calls`` when there are tool calls, else ``stop``.
    ``hold``: a non-streamed reply is sent only once this event is set (at most 120 s),
    so a test can act while the request is known to be in flight.
    """

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    when: Matcher | None = None
    finish_reason: str | None = None
    first_chunk_delay_s: float = 0.0
    chunk_delay_s: float | None = None
    disconnect_after: int | None = None
    end_after: int | None = None
    hold: threading.Event | None = None

    @classmethod
    def say(cls, text: str, **options: Any) -> Turn:
        return cls(text=text, **options)

    @classmethod
    def call(cls, name: str, arguments: dict[str, Any] | str | None = None,
             **options: Any) -> Turn:
        return cls(tool_calls=(ScriptedToolCall(name, arguments or {}),), **options)

    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


# --- matchers on the last message -------------------------------------------


def after_tool_result(contains: str | None = None) -> Matcher:
    """Match when the last message is a tool result (containing ``contains``)."""
    return lambda m: m.get("role") == "tool" and (contains is None or contains in _text(m))


def user_says(contains: str) -> Matcher:
    """Match when the last message is the user's and contains ``contains`` (any case)."""
    return lambda m: m.get("role") == "user" and contains.lower() in _text(m).lower()


def _text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


# --- requests and rendering ---------------------------------------------------------------


def split_text(text: str) -> list[str]:
    """Token-like pieces: each word with its leading whitespace."""
    return re.findall(r"\s*\S+\s*$|\s*\S+", text) or ([text] if text else [])


def split_arguments(arguments: str, size: int) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def prompt_tokens(messages: list[Message]) -> int:
    """The fake's token count for a prompt: whitespace-separated words of all contents."""
    return sum(len(_text(m).split()) for m in messages)


@dataclass
class Rendered:
    """A reply as streaming chunks (dicts) and as one non-streamed completion."""

    chunks: list[dict[str, Any]]
    completion: dict[str, Any]


def render(turn: Turn, *, request_id: str, model: str, messages: list[Message],
           include_usage: bool, args_chunk_chars: int) -> Rendered:
    """``turn`` as OpenAI ``chat.completion.chunk`` objects and a ``chat.completion``.

    Output tokens = text pieces + argument fragments, so tests can predict them.
    """
    created = int(time.time())
    base = {"id": request_id, "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": "fp_scripted"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]}
        return {**body, "usage": None} if include_usage else body

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    pieces = split_text(turn.text)
    chunks += [chunk({"content": piece}) for piece in pieces]
    output_tokens = len(pieces)
    calls = []
    for index, call in enumerate(turn.tool_calls):
        call_id = call.call_id or f"call_{request_id[-6:]}_{index}"
        arguments = call.arguments_json()
        calls.append({"id": call_id, "type": "function",
                      "function": {"name": call.name, "arguments": arguments}})
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        fragments = split_arguments(arguments, args_chunk_chars)
        chunks += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                   for piece in fragments]
        output_tokens += len(fragments)
    chunks.append(chunk({}, turn.finish()))
    usage = {"prompt_tokens": prompt_tokens(messages), "completion_tokens": output_tokens,
             "total_tokens": prompt_tokens(messages) + output_tokens}
    if include_usage:
        chunks.append({**base, "choices": [], "usage": usage})
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    completion = {"id": request_id, "object": "chat.completion", "created": created,
                  "model": model, "system_fingerprint": "fp_scripted",
                  "choices": [{"index": 0, "message": message, "logprobs": None,
                               "finish_reason": turn.finish()}],
                  "usage": usage}
    return Rendered(chunks, completion)


def validate_request(body: dict[str, Any]) -> str | None:
    """The 400 message OpenAI would give for a malformed request, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    open_calls: set[str] = set()
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid value for 'messages[{index}].role': {role!r}"
        if role == "assistant":
            open_calls |= {call.get("id") for call in message.get("tool_calls") or []}
        elif role == "tool" and message.get("tool_call_id") not in open_calls:
            return (f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (messages[{index}])")
    names = set()
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not (tool.get("function") or {}).get("name"):
            return "Invalid 'tools': each tool needs type 'function' and a function name"
        names.add(tool["function"]["name"])
    return _tool_choice_problem(body.get("tool_choice"), names, "tools" in body)


def _tool_choice_problem(choice: Any, names: set[str], has_tools: bool) -> str | None:
    """OpenAI's checks of ``tool_choice``: a mode, or a declared function in its shape."""
    if choice is None:
        return None
    if not has_tools:
        return "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    if isinstance(choice, str):
        if choice in ("none", "auto", "required"):
            return None
        return f"Invalid value for 'tool_choice': {choice!r}"
    function = choice.get("function") if isinstance(choice, dict) else None
    if not (isinstance(choice, dict) and choice.get("type") == "function"
            and isinstance(function, dict) and isinstance(function.get("name"), str)):
        return "Missing required parameter: 'tool_choice.function'."
    if function["name"] not in names:
        return f"Invalid value for 'tool_choice': no function named {function['name']!r} in 'tools'."
    return None
