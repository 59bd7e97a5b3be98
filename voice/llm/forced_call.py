"""A tool call forced on an endpoint whose grammar honours only a named function.

llama-cpp-python's server (the embedded LLM) constrains its output to a valid call
only when ``tool_choice`` names a function; ``"required"`` would be ignored and the
model free to answer in prose. :func:`adapt` rewrites the request: with one tool,
``required`` becomes that tool's name; with several, the request carries no tools
and asks for a JSON object ``{"name": ..., "arguments": {...}}`` matching one of
them (a JSON-schema response format, which that server compiles to a grammar), and
:func:`read_call` turns the reply back into a :class:`ToolCallRequest`. Pure
functions plus one async generator; no I/O of their own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from voice.llm.events import Completion, LlmError, LlmEvent, TextDelta, ToolCallRequest


@dataclass(frozen=True)
class ForcedCall:
    """A call to be read from a JSON reply constrained by :attr:`schema`."""

    schema: dict[str, Any]

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_object", "schema": self.schema}


def adapt(
    tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any]
) -> tuple[str | dict[str, Any], ForcedCall | None]:
    """The tool choice to send, and the forced call to read back (None: a normal request)."""
    if tool_choice != "required" or not tools:
        return tool_choice, None
    if len(tools) == 1:
        return {"type": "function", "function": {"name": tools[0]["function"]["name"]}}, None
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["function"]["name"]},
                "arguments": tool["function"].get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    return "none", ForcedCall({"anyOf": options})


async def read_call(
    events: AsyncIterator[LlmEvent], names: set[str]
) -> AsyncGenerator[LlmEvent, None]:
    """The events of a forced-call reply: its JSON text becomes one tool call (of one
    of ``names``) before the :class:`Completion`. Raises :class:`LlmError`
    (``bad_response``) when the reply is not such a call."""
    text: list[str] = []
    completion: Completion | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Completion):
            completion = event
        else:
            yield event
    reply = "".join(text)
    try:
        data = json.loads(reply)
        name, arguments = data["name"], data["arguments"]
    except (ValueError, TypeError, KeyError):
        raise LlmError("bad_response", f"the forced tool call is not valid: {reply[:200]!r}") from None
    if name not in names or not isinstance(arguments, dict):
        raise LlmError("bad_response", f"the forced tool call names no declared tool: {name!r}")
    yield ToolCallRequest(f"call_{secrets.token_hex(8)}", name, json.dumps(arguments))
    if completion is not None:
        yield replace(completion, finish_reason="tool_calls")
