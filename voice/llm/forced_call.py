"""A tool call forced on an endpoint whose grammar we drive ourselves.

llama-cpp-python's server (the embedded LLM) honours ``tool_choice="required"`` not
at all, and a named function only through a grammar that lets strings hold raw
control characters and run on until the token limit, with no word to the model
that it is calling a function. :func:`adapt` therefore turns every forced choice
(``required``, or a named function) into a request that carries no tools, a short
system instruction naming the callable tools, and a JSON-schema response format
``{"name": ..., "arguments": {...}}`` (which that server compiles to a grammar) with
free-text strings bounded to :data:`MAX_STRING_CHARS`. :func:`read_call` turns the
reply back into a :class:`ToolCallRequest` whose arguments are always valid JSON.
Pure functions plus one async generator; no I/O of their own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from voice.llm.events import Completion, LlmError, LlmEvent, TextDelta, ToolCallRequest

MAX_STRING_CHARS = 256
"""Longest free-text string argument the grammar allows (characters): a small model
that rambles inside a string stops there instead of at the token limit."""

_STRING_BOUNDS = ("maxLength", "enum", "const", "format", "pattern")
CALL_OVERHEAD_TOKENS = 64
"""Tokens of a forced call besides its strings' contents (braces, names, quotes)."""


@dataclass(frozen=True)
class ForcedCall:
    """A call to be read from a JSON reply constrained by :attr:`schema`."""

    schema: dict[str, Any]
    instruction: str
    """A system message telling the model which call it is writing."""

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_object", "schema": self.schema}

    def messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation with :attr:`instruction` as its last message."""
        return [*messages, {"role": "system", "content": self.instruction}]

    def max_tokens(self, asked: int) -> int:
        """``asked``, raised so that the longest call :attr:`schema` allows fits: a small
        model that fills a string up to its ``maxLength`` (at worst a token a character)
        still gets to close the call instead of being cut off."""
        return max(asked, string_chars(self.schema) + CALL_OVERHEAD_TOKENS)


def string_chars(schema: Any) -> int:
    """The most characters the strings of one value of ``schema`` may hold (the longest
    ``anyOf`` option; an array's items counted once; unbounded strings count 0)."""
    if not isinstance(schema, dict):
        return 0
    if "anyOf" in schema:
        return max((string_chars(option) for option in schema["anyOf"]), default=0)
    own = int(schema.get("maxLength", 0)) if schema.get("type") == "string" else 0
    fields = sum(string_chars(value) for value in (schema.get("properties") or {}).values())
    return own + fields + string_chars(schema.get("items"))


def adapt(
    tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any]
) -> tuple[str | dict[str, Any], ForcedCall | None]:
    """The tool choice to send, and the forced call to read back (None: a normal request).

    Raises ``ValueError`` when ``tool_choice`` names a function that is not in ``tools``.
    """
    callable_tools = _forced_tools(tools or [], tool_choice)
    if not callable_tools:
        return tool_choice, None
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["function"]["name"]},
                "arguments": bounded(tool["function"].get("parameters") or {"type": "object"}),
            },
            "required": ["name", "arguments"],
        }
        for tool in callable_tools
    ]
    schema = options[0] if len(options) == 1 else {"anyOf": options}
    listing = "\n".join(
        f"- {tool['function']['name']}: {tool['function'].get('description') or ''}".rstrip(": ")
        for tool in callable_tools
    )
    instruction = (
        "Answer now with a function call and nothing else: a JSON object "
        '{"name": <function>, "arguments": {...}} with the arguments taken from the '
        f"conversation. Functions:\n{listing}"
    )
    return "none", ForcedCall(schema, instruction)


def _forced_tools(
    tools: list[dict[str, Any]], tool_choice: str | dict[str, Any]
) -> list[dict[str, Any]]:
    if not tools:
        return []
    if tool_choice == "required":
        return tools
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        named = [t for t in tools if t["function"]["name"] == name]
        if not named:
            raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
        return named
    return []


def bounded(schema: Any) -> Any:
    """A copy of a JSON schema whose unbounded strings have ``maxLength``."""
    if isinstance(schema, list):
        return [bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copy = {key: bounded(value) for key, value in schema.items()}
    if copy.get("type") == "string" and not any(key in copy for key in _STRING_BOUNDS):
        copy["maxLength"] = MAX_STRING_CHARS
    return copy


async def read_call(
    events: AsyncIterator[LlmEvent], names: set[str]
) -> AsyncGenerator[LlmEvent, None]:
    """The events of a forced-call reply: its JSON text becomes one tool call (of one
    of ``names``) before the :class:`Completion`. Raises :class:`LlmError`
    (``bad_response``) when the reply is not such a call, or was cut off before it
    ended."""
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
        # strict=False: a grammar-made string may hold a raw newline or tab.
        data = json.loads(reply, strict=False)
        name, arguments = data["name"], data["arguments"]
    except (ValueError, TypeError, KeyError):
        cut = completion is not None and completion.finish_reason == "length"
        reason = "was cut off at the token limit" if cut else "is not valid"
        raise LlmError("bad_response", f"the forced tool call {reason}: {reply[:200]!r}") from None
    if name not in names or not isinstance(arguments, dict):
        raise LlmError("bad_response", f"the forced tool call names no declared tool: {name!r}")
    yield ToolCallRequest(f"call_{secrets.token_hex(8)}", name, json.dumps(arguments))
    if completion is not None:
        yield replace(completion, finish_reason="tool_calls")
