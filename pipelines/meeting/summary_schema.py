"""The published JSON Schema of a meeting summary (``docs/summary.schema.json``).

:data:`CONTENT_SCHEMA` is what the LLM is asked to produce (OpenAI "strict"
structured-output compatible: every property required, no extra properties,
nullable fields typed ``["string", "null"]``). :data:`SUMMARY_SCHEMA` is the
``summary.json`` the pipeline writes: the content plus ``method`` (which method
produced each part) and ``problems`` (why LLM output was rejected, if it was).
Citations are transcript segment ids (``TranscriptSegment.id``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

SCHEMA_ID = "https://voice-agent.local/schemas/meeting-summary/1.json"
PARTS = ("title", "key_points", "decisions", "action_items", "open_questions")
"""The parts of a summary, each produced by the LLM or extractively on its own."""
LIST_PARTS = PARTS[1:]
METHODS = ("llm", "extractive")

_CITATIONS: dict[str, Any] = {
    "type": "array",
    "description": "Ids of the transcript segments this item is based on.",
    "items": {"type": "integer", "minimum": 0},
    "minItems": 1,
}
_TEXT: dict[str, Any] = {"type": "string", "minLength": 1}


def _item(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"text": _TEXT, **(extra or {}), "citations": _CITATIONS}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_ACTION_EXTRA: dict[str, Any] = {
    "owner": {"type": ["string", "null"], "description": "Who will do it, if known."},
    "due": {"type": ["string", "null"], "description": "When it is due, as stated."},
}

CONTENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {**_TEXT, "description": "A short title for the meeting."},
        "key_points": {"type": "array", "items": _item()},
        "decisions": {"type": "array", "items": _item()},
        "action_items": {"type": "array", "items": _item(_ACTION_EXTRA)},
        "open_questions": {"type": "array", "items": _item()},
    },
    "required": list(PARTS),
    "additionalProperties": False,
}

SUMMARY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "Meeting summary",
    "description": (
        "Structured summary of a meeting transcript. Every item cites the transcript "
        "segments it is based on; `method` says whether the LLM or the extractive "
        "fallback produced each part."
    ),
    "type": "object",
    "properties": {
        **copy.deepcopy(CONTENT_SCHEMA["properties"]),
        "method": {
            "type": "object",
            "properties": {part: {"enum": list(METHODS)} for part in PARTS},
            "required": list(PARTS),
            "additionalProperties": False,
        },
        "problems": {
            "type": "array",
            "description": "Why LLM output was rejected for some parts (empty when none was).",
            "items": {"type": "string"},
        },
    },
    "required": [*PARTS, "method", "problems"],
    "additionalProperties": False,
}


def response_formats() -> list[dict[str, Any]]:
    """``response_format`` values asking for :data:`CONTENT_SCHEMA`, best first: OpenAI's
    strict ``json_schema``, then ``json_object`` with a ``schema`` (what llama.cpp's
    server accepts, turning the schema into a grammar)."""
    return [
        {
            "type": "json_schema",
            "json_schema": {"name": "meeting_summary", "strict": True, "schema": CONTENT_SCHEMA},
        },
        {"type": "json_object", "schema": CONTENT_SCHEMA},
    ]


def schema_json() -> str:
    """:data:`SUMMARY_SCHEMA` as the text of ``docs/summary.schema.json``."""
    return json.dumps(SUMMARY_SCHEMA, indent=2) + "\n"
