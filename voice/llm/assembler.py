"""Turn ``chat.completion.chunk`` objects into :mod:`voice.llm.events`. No I/O.

Tool-call fragments are keyed by their ``index``: the first fragment of a call
carries its id and name, later ones only pieces of the arguments. Complete
:class:`ToolCallRequest` events are emitted by :meth:`StreamAssembler.finish`,
in index order, once the stream has ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from openai.types.chat import ChatCompletionChunk

from voice.llm.events import (
    Completion,
    LlmError,
    LlmEvent,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallRequest,
)


@dataclass
class _PendingCall:
    call_id: str
    name: str
    arguments: str = ""


class StreamAssembler:
    """Accumulates one streamed reply (choice 0)."""

    def __init__(self) -> None:
        self._calls: dict[int, _PendingCall] = {}
        self.finish_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.has_output = False
        """Whether any text or tool-call fragment has been seen."""

    def feed(self, chunk: ChatCompletionChunk) -> list[LlmEvent]:
        """Events carried by ``chunk`` (text and argument fragments)."""
        if chunk.usage is not None:
            self.input_tokens = chunk.usage.prompt_tokens or 0
            self.output_tokens = chunk.usage.completion_tokens or 0
        events: list[LlmEvent] = []
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                events.append(TextDelta(delta.content))
            for fragment in delta.tool_calls or []:
                call = self._calls.get(fragment.index)
                function = fragment.function
                if call is None:
                    call = _PendingCall(
                        call_id=fragment.id or f"call_{uuid.uuid4().hex[:24]}",
                        name=(function.name if function else None) or "",
                    )
                    self._calls[fragment.index] = call
                elif function and function.name and not call.name:
                    call.name = function.name
                if function and function.arguments:
                    call.arguments += function.arguments
                    events.append(ToolCallArgumentsDelta(call.call_id, call.name,
                                                         function.arguments))
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        if events:
            self.has_output = True
        return events

    def finish(self) -> list[LlmEvent]:
        """The assembled tool calls, then :class:`Completion`.

        Raises :class:`LlmError`: ``cut_off`` when the stream ended without a finish
        reason, ``bad_response`` when a tool call has no name.
        """
        if self.finish_reason is None:
            raise LlmError("cut_off", "the stream ended without a finish reason "
                           "(the LLM server stopped mid-reply)", partial=self.has_output)
        events: list[LlmEvent] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.name:
                raise LlmError("bad_response", f"tool call {call.call_id} has no function name")
            events.append(ToolCallRequest(call.call_id, call.name, call.arguments or "{}"))
        events.append(Completion(self.finish_reason, self.input_tokens, self.output_tokens))
        return events
