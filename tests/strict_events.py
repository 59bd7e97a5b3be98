"""Strict conformance of server events: every event a realtime test client receives must
validate against the installed ``openai`` package's ``RealtimeServerEvent`` union
(``TypeAdapter.validate_python``, never ``construct``) and carry no field the SDK's
models do not declare, unless the test opted in to the extension that adds it.

:func:`check` raises :class:`NonConformingEvent` on the first bad event and records it;
the autouse fixture in ``tests/conftest.py`` routes every WebSocket message of a
``/v1/realtime`` connection through it (the ``openai`` SDK and raw ``websockets``
clients alike) and fails the test in teardown if any event was bad, even one raised
inside a background task. :mod:`tests.rtc_client` calls it for data-channel events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)

ALLOWED_EXTRA = frozenset({"session.created.session.id", "session.created.session.object",
                           "session.updated.session.id", "session.updated.session.object"})
"""Fields OpenAI's own server sends that the SDK's session model does not declare."""

EXTENSION_EVENTS = frozenset({"voice.latency", "voice.tool_call"})
"""Events of this server's opt-in extensions (``session.voice_extensions``)."""


class NonConformingEvent(AssertionError):
    """A server event that a strict OpenAI Realtime client would reject."""


violations: list[str] = []
"""Every bad event seen in the current test (reset by the fixture)."""


def _extras(value: Any, where: str) -> Iterator[str]:
    """Paths of fields present in ``value`` that its model does not declare."""
    if isinstance(value, BaseModel):
        for name in value.model_extra or {}:
            yield f"{where}.{name}"
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list | tuple):
        for n, element in enumerate(value):
            yield from _extras(element, f"{where}[{n}]")
    elif isinstance(value, dict):
        for key, element in value.items():
            yield from _extras(element, f"{where}.{key}")


def problem(event: Any, *, extensions: bool = False) -> str | None:
    """Why ``event`` (a decoded JSON object) is not a conforming server event, or None.

    ``extensions``: the client opted in to extensions, so ``voice.*`` events and
    undeclared fields are allowed (the rest must still validate).
    """
    if not isinstance(event, dict):
        return f"not a JSON object: {event!r:.200}"
    if extensions and event.get("type") in EXTENSION_EVENTS:
        return None
    try:
        model = SERVER_EVENT.validate_python(event)
    except ValidationError as exc:
        return f"{event.get('type')!r} does not validate: {exc.errors()[:3]}; event {event!r:.600}"
    if not extensions:
        extra = [p for p in _extras(model, str(event.get("type"))) if p not in ALLOWED_EXTRA]
        if extra:
            return f"{event.get('type')!r} carries fields the SDK does not know: {extra}"
    return None


def check(event: Any, *, extensions: bool = False) -> None:
    """Raise :class:`NonConformingEvent` (and record it) if ``event`` does not conform."""
    found = problem(event, extensions=extensions)
    if found is not None:
        violations.append(found)
        raise NonConformingEvent(found)


def check_raw(raw: str | bytes, *, extensions: bool = False) -> None:
    """:func:`check` for one WebSocket text message."""
    check(json.loads(raw), extensions=extensions)


def opts_in(message: Any) -> bool:
    """Whether a client message asks for extensions (``session.voice_extensions``)."""
    try:
        event = json.loads(message)
    except (TypeError, ValueError):
        return False
    session = event.get("session") if isinstance(event, dict) else None
    return event.get("type") == "session.update" and isinstance(session, dict) and bool(
        session.get("voice_extensions")
    )


def install(monkeypatch: Any) -> None:
    """Check every text message received on a ``/v1/realtime`` WebSocket of the
    ``websockets`` asyncio client (which the ``openai`` SDK uses too). A connection
    that sent a ``session.update`` with ``voice_extensions`` may receive extensions."""
    from websockets.asyncio.client import ClientConnection

    recv, send = ClientConnection.recv, ClientConnection.send

    def realtime(conn: Any) -> bool:
        request = getattr(conn, "request", None)
        return request is not None and request.path.startswith("/v1/realtime")

    async def checked_recv(self: Any, decode: bool | None = None) -> Any:
        message = await recv(self, decode)
        if realtime(self) and isinstance(message, str | bytes):
            check_raw(message, extensions=getattr(self, "_voice_extensions", False))
        return message

    async def noting_send(self: Any, message: Any, *, text: bool | None = None) -> None:
        if isinstance(message, str | bytes) and opts_in(message):
            self._voice_extensions = True
        await send(self, message, text=text)

    monkeypatch.setattr(ClientConnection, "recv", checked_recv)
    monkeypatch.setattr(ClientConnection, "send", noting_send)
