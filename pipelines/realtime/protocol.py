"""OpenAI Realtime protocol core: parse and validate client events, build server events.

No I/O here. Client events are validated against the installed ``openai``
package's own models, so the accepted shapes are exactly the GA protocol's.
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

from openai.types.realtime import (
    ConversationItemCreateEvent,
    ConversationItemDeleteEvent,
    ConversationItemRetrieveEvent,
    ConversationItemTruncateEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    OutputAudioBufferClearEvent,
    ResponseCancelEvent,
    ResponseCreateEvent,
    SessionUpdateEvent,
)
from pydantic import BaseModel, ValidationError

CLIENT_EVENTS: dict[str, type[BaseModel]] = {
    "session.update": SessionUpdateEvent,
    "input_audio_buffer.append": InputAudioBufferAppendEvent,
    "input_audio_buffer.commit": InputAudioBufferCommitEvent,
    "input_audio_buffer.clear": InputAudioBufferClearEvent,
    "output_audio_buffer.clear": OutputAudioBufferClearEvent,
    "conversation.item.create": ConversationItemCreateEvent,
    "conversation.item.retrieve": ConversationItemRetrieveEvent,
    "conversation.item.truncate": ConversationItemTruncateEvent,
    "conversation.item.delete": ConversationItemDeleteEvent,
    "response.create": ResponseCreateEvent,
    "response.cancel": ResponseCancelEvent,
}
"""Client event types the server understands, with the model that validates each."""


class ProtocolError(Exception):
    """A client event the server cannot accept; becomes an ``error`` server event."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_value",
        param: str | None = None,
        event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id
        self.error_type = error_type


def parse_client_event(raw: str | bytes, *, max_bytes: int) -> BaseModel:
    """Decode and validate one client message.

    Raises :class:`ProtocolError` for oversized, non-JSON, untyped, unknown or
    malformed events; the error names the offending field where it can.
    """
    if len(raw) > max_bytes:
        raise ProtocolError(
            f"event of {len(raw)} bytes exceeds the limit of {max_bytes} bytes",
            code="message_too_large",
        )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"event is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ProtocolError("event must be a JSON object", code="invalid_json")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    event_type = data.get("type")
    if not isinstance(event_type, str):
        raise ProtocolError("event has no string 'type'", param="type", event_id=event_id)
    model = CLIENT_EVENTS.get(event_type)
    if model is None:
        raise ProtocolError(
            f"unknown event type {event_type!r}; supported: {', '.join(sorted(CLIENT_EVENTS))}",
            code="unknown_event_type",
            param="type",
            event_id=event_id,
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ProtocolError(
            f"invalid {event_type}: {first['msg']} at {param or 'event'}",
            param=param,
            event_id=event_id,
        ) from None


class Ids:
    """Generator of protocol ids (``event_…``, ``item_…``, ``resp_…``); unique per process."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._prefix = secrets.token_hex(4)

    def new(self, kind: str) -> str:
        return f"{kind}_{self._prefix}{next(self._counter):06d}"


def error_event(ids: Ids, err: ProtocolError) -> dict[str, Any]:
    """The protocol's ``error`` server event for ``err``."""
    return {
        "type": "error",
        "event_id": ids.new("event"),
        "error": {
            "type": err.error_type,
            "code": err.code,
            "message": err.message,
            "param": err.param,
            "event_id": err.event_id,
        },
    }
