"""Opt-in protocol extensions: what a client sees beyond the OpenAI Realtime protocol.

A session starts with none; a client asks for some with the session field
``voice_extensions`` (a list of the names in :data:`EXTENSIONS`). The session
always builds the full event (metrics read it); :func:`client_view` removes what
the client did not ask for, so a client that asked for nothing receives only
events and fields the ``openai`` SDK's models declare. Pure functions, no I/O.
"""

from __future__ import annotations

from typing import Any

EXTENSIONS: dict[str, str] = {
    "latency": "a `voice.latency` event per answered turn (the latency waterfall, ms)",
    "speakers": "`speaker` (and `speaker_segments`) on user items and transcription events",
    "echo": "`echo: true` on the transcription of a turn that was the agent's own voice "
    "(the item is deleted either way)",
    "partials": "`partial` (the whole hypothesis so far) on transcription delta events",
    "server_tools": "a `voice.tool_call` event for each call of the server's own tools",
}
"""Extension names a client may list in ``session.voice_extensions``, with what each adds."""

EXTENSION_EVENTS: dict[str, str] = {"voice.latency": "latency", "voice.tool_call": "server_tools"}
"""Extension events and the extension that sends each."""

_EVENT_FIELDS: dict[str, str] = {
    "speaker": "speakers",
    "speaker_segments": "speakers",
    "echo": "echo",
    "partial": "partials",
}
"""Extension fields of server events (top level) and the extension that adds each."""

SESSION_FIELDS = ("voice_extensions", "speakers", "meeting", "temperature")
"""Extension fields of the ``session`` object, echoed only to a client using extensions."""


def parse_extensions(value: Any) -> frozenset[str]:
    """``session.voice_extensions`` as a set; raises ``ValueError`` naming the known ones."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("voice_extensions must be a list of extension names")
    unknown = sorted(set(value) - EXTENSIONS.keys())
    if unknown:
        raise ValueError(
            f"unknown voice_extensions {unknown}; known: {', '.join(sorted(EXTENSIONS))}"
        )
    return frozenset(value)


def client_view(event: dict[str, Any], enabled: frozenset[str]) -> dict[str, Any] | None:
    """``event`` as the client may see it: None for an extension event it did not ask
    for, else the event without the extension fields it did not ask for (a copy when
    anything is removed; ``event`` itself is never changed)."""
    kind = event.get("type")
    if kind in EXTENSION_EVENTS:
        return event if EXTENSION_EVENTS[kind] in enabled else None
    drop = {name for name, ext in _EVENT_FIELDS.items() if ext not in enabled}
    view = event
    if drop & event.keys():
        view = {k: v for k, v in event.items() if k not in drop}
    if "speakers" not in enabled:
        if isinstance(view.get("item"), dict) and "speaker" in view["item"]:
            view = {**view, "item": _without(view["item"], "speaker")}
        response = view.get("response")
        if isinstance(response, dict) and any(
            isinstance(i, dict) and "speaker" in i for i in response.get("output") or ()
        ):
            output = [_without(i, "speaker") for i in response["output"]]
            view = {**view, "response": {**response, "output": output}}
    if not enabled and isinstance(view.get("session"), dict):
        session = view["session"]
        if any(name in session for name in SESSION_FIELDS):
            view = {**view, "session": {k: v for k, v in session.items() if k not in SESSION_FIELDS}}
    return view


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}
