"""Builds server events with fresh ids and hands them to the transport's send function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pipelines.realtime.conversation import Item
from pipelines.realtime.protocol import Ids, ProtocolError, error_event

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Emitter:
    """Sends protocol events through ``send``; one per session.

    ``send`` must not block for long (transports queue); events are sent in call order.
    """

    def __init__(self, send: Send, ids: Ids) -> None:
        self._send = send
        self.ids = ids

    async def emit(self, event_type: str, **fields: Any) -> None:
        await self._send({"type": event_type, "event_id": self.ids.new("event"), **fields})

    async def error(self, err: ProtocolError) -> None:
        await self._send(error_event(self.ids, err))

    async def item_added(self, item: Item, previous_item_id: str | None) -> None:
        await self.emit(
            "conversation.item.added", previous_item_id=previous_item_id, item=item.to_protocol()
        )

    async def item_done(self, item: Item, previous_item_id: str | None = None) -> None:
        await self.emit(
            "conversation.item.done", previous_item_id=previous_item_id, item=item.to_protocol()
        )
