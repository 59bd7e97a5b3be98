"""The output items of one response and the protocol events that describe them.

Every assistant message and function call a response produces is added to the
conversation and announced (``response.output_item.added``, content parts,
argument deltas, ``….done``) through this class, so the response logic only
says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipelines.realtime.context import SessionContext
from pipelines.realtime.conversation import Conversation, Item
from voice.llm import ToolCallArgumentsDelta, ToolCallRequest


@dataclass
class OutputItems:
    """Items of response ``response_id``, in output order."""

    ctx: SessionContext
    response_id: str
    history: Conversation
    """What the response's LLM reads; its output joins it (the session's conversation
    unless the response has its own context)."""
    in_conversation: bool = True
    """Whether the output joins the session's conversation, with ``conversation.item.*``
    events (False for an out-of-band response)."""
    items: list[Item] = field(default_factory=list)
    open_calls: dict[str, Item] = field(default_factory=dict)
    """Function calls whose arguments are still streaming, by call id."""

    def index(self, item: Item) -> int:
        return self.items.index(item)

    def store(self, item: Item) -> str | None:
        """Append ``item`` to the response's history (and the session's conversation if
        it is not the same); returns the id before it in the session's conversation."""
        previous = self.ctx.conversation.add(item) if self.in_conversation else None
        if self.history is not self.ctx.conversation:
            self.history.add(item)
        return previous

    async def add(self, item: Item) -> None:
        """Append ``item`` to the conversation and announce it."""
        previous = self.store(item)
        self.items.append(item)
        await self.ctx.emitter.emit(
            "response.output_item.added",
            response_id=self.response_id,
            output_index=self.index(item),
            item=item.to_protocol(),
        )
        if self.in_conversation:
            await self.ctx.emitter.item_added(item, previous)

    async def open_message(self, *, audio: bool) -> Item:
        """A new assistant message with one (audio or text) content part."""
        item = Item(
            id=self.ctx.emitter.ids.new("item"),
            type="message",
            role="assistant",
            status="in_progress",
            audio=audio,
        )
        await self.add(item)
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self.content_event("response.content_part.added", item, part=part)
        return item

    async def content_event(self, event_type: str, item: Item, **fields: Any) -> None:
        await self.ctx.emitter.emit(
            event_type,
            response_id=self.response_id,
            item_id=item.id,
            output_index=self.index(item),
            content_index=0,
            **fields,
        )

    async def finish_message(self, item: Item, status: Literal["completed", "incomplete"]) -> None:
        item.status = status
        if item.audio:
            await self.content_event("response.output_audio.done", item)
            await self.content_event(
                "response.output_audio_transcript.done", item, transcript=item.text
            )
            part = {"type": "audio", "transcript": item.text}
        else:
            await self.content_event("response.output_text.done", item, text=item.text)
            part = {"type": "text", "text": item.text}
        await self.content_event("response.content_part.done", item, part=part)
        await self.item_done(item)

    async def item_done(self, item: Item) -> None:
        await self.ctx.emitter.emit(
            "response.output_item.done",
            response_id=self.response_id,
            output_index=self.index(item),
            item=item.to_protocol(),
        )
        if self.in_conversation:
            await self.ctx.emitter.item_done(item)

    async def call_delta(self, event: ToolCallArgumentsDelta) -> None:
        """A fragment of a function call's arguments (opens the call item on the first)."""
        item = self.open_calls.get(event.call_id)
        if item is None:
            item = Item(
                id=self.ctx.emitter.ids.new("item"),
                type="function_call",
                status="in_progress",
                call_id=event.call_id,
                name=event.name,
            )
            self.open_calls[event.call_id] = item
            await self.add(item)
        item.arguments += event.delta
        await self.ctx.emitter.emit(
            "response.function_call_arguments.delta",
            response_id=self.response_id,
            item_id=item.id,
            output_index=self.index(item),
            call_id=event.call_id,
            delta=event.delta,
        )

    async def call_done(self, event: ToolCallRequest) -> Item:
        """The function call is complete; returns its item."""
        if event.call_id not in self.open_calls:
            await self.call_delta(ToolCallArgumentsDelta(event.call_id, event.name, ""))
        item = self.open_calls.pop(event.call_id)
        item.arguments = event.arguments
        item.status = "completed"
        await self.ctx.emitter.emit(
            "response.function_call_arguments.done",
            response_id=self.response_id,
            item_id=item.id,
            output_index=self.index(item),
            call_id=item.call_id,
            name=item.name,
            arguments=item.arguments,
        )
        await self.item_done(item)
        return item

    async def close_open_calls(self) -> None:
        """Mark calls cut off by a cancel as incomplete."""
        for item in self.open_calls.values():
            item.status = "incomplete"
            await self.item_done(item)
        self.open_calls.clear()
