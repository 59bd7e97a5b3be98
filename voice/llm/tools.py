"""Tools the agent's LLM may call, and a registry that calls them safely.

A :class:`Tool` is a plain Python function (sync or async) plus the JSON
schema derived from its signature. :meth:`ToolRegistry.call` never raises for
a bad call: unknown tools, malformed or mistyped arguments, exceptions and
timeouts all come back as a :class:`ToolResult` with ``is_error=True`` and a
message the model can read and act on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voice.llm.schema import ArgumentError, bind_arguments, parameters_schema, parse_docstring

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable tool: ``parameters`` is the JSON schema of its keyword arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[..., Any] = field(repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match [A-Za-z0-9_-]{{1,64}}")

    @classmethod
    def from_function(cls, func: Callable[..., Any], name: str | None = None) -> Tool:
        """Derive name, description and schema from ``func``'s signature and docstring.

        Raises ``TypeError`` for parameters without a supported annotation.
        """
        summary, arg_docs = parse_docstring(func.__doc__)
        return cls(
            name=name or func.__name__,
            description=summary,
            parameters=parameters_schema(func, arg_docs),
            function=func,
        )


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call produced: its output text, or an error message for the model."""

    output: str
    is_error: bool = False


class ToolRegistry:
    """Tools by name, in the order they were added."""

    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools or []:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        """Register ``tool``; raises ``ValueError`` if its name is taken."""
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def openai_tools(self) -> list[dict[str, Any]]:
        """Chat-completions ``tools`` entries: ``{"type": "function", "function": {...}}``."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in self._tools.values()
        ]

    def realtime_tools(self) -> list[dict[str, Any]]:
        """Realtime API ``session.tools`` entries (flat: type, name, description, parameters)."""
        return [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in self._tools.values()
        ]

    async def call(self, name: str, arguments_json: str, *, timeout_s: float) -> ToolResult:
        """Run tool ``name`` with JSON ``arguments_json``; never raises for a bad call.

        Sync tools run in a worker thread; one that overruns ``timeout_s`` (seconds)
        keeps its thread until it returns and its result is discarded. Async tools
        are cancelled on timeout. Safe to cancel: cancelling cancels the tool.
        """
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            return ToolResult(f"error: unknown tool {name!r}; available tools: {available}", True)
        try:
            arguments = json.loads(arguments_json or "{}")
        except json.JSONDecodeError as exc:
            return ToolResult(f"error: arguments for {name} are not valid JSON ({exc})", True)
        if not isinstance(arguments, dict):
            return ToolResult(f"error: arguments for {name} must be a JSON object", True)
        try:
            kwargs = bind_arguments(tool.function, arguments)
        except ArgumentError as exc:
            return ToolResult(f"error: invalid arguments for {name}: {exc}", True)
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if inspect.iscoroutinefunction(tool.function):
                    value = await tool.function(**kwargs)
                else:
                    value = await asyncio.to_thread(tool.function, **kwargs)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                return ToolResult(f"error: {name} timed out after {timeout_s:g} s", True)
            return ToolResult(f"error: {name} failed: {type(exc).__name__}: {exc}", True)
        return ToolResult(_as_text(value))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
