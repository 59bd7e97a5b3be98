"""The strict event check itself: it rejects what a strict client would, on a live socket."""

from __future__ import annotations

import json

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests import strict_events
from tests.servers import ServerThread


def test_the_check_rejects_unknown_events_fields_and_bad_values() -> None:
    good = {"type": "input_audio_buffer.cleared", "event_id": "event_1"}
    assert strict_events.problem(good) is None
    latency = {"type": "voice.latency", "event_id": "e", "response_id": "r", "latency_ms": {}}
    assert "does not validate" in (strict_events.problem(latency) or "")
    assert strict_events.problem(latency, extensions=True) is None
    labelled = {**good, "speaker": "Alice"}
    assert "fields the SDK does not know" in (strict_events.problem(labelled) or "")
    done = {"type": "response.done", "event_id": "e", "response": {
        "id": "r", "status": "incomplete", "status_details": {"reason": "max_tool_steps"}}}
    assert "does not validate" in (strict_events.problem(done) or "")


async def test_every_realtime_socket_is_checked(server: ServerThread) -> None:
    assert ClientConnection.recv.__name__ == "checked_recv"
    async with websockets.connect(f"{server.ws_url}/v1/realtime?model=x") as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        strict_events.violations.clear()
        before = strict_events.SERVER_EVENT
        try:  # a check that rejects everything: the next event must fail the recv
            strict_events.SERVER_EVENT = type(before)(int)
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            with pytest.raises(strict_events.NonConformingEvent):
                await ws.recv()
        finally:
            strict_events.SERVER_EVENT = before
            strict_events.violations.clear()


def test_the_protocol_document_names_every_event_of_the_sdk() -> None:
    """docs/realtime-protocol.md has a row for each client and server event type."""
    import re
    import typing
    from pathlib import Path

    from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent

    doc = (Path(__file__).resolve().parents[1] / "docs" / "realtime-protocol.md").read_text()
    rows = "\n".join(line for line in doc.splitlines() if line.startswith("| `"))
    missing = []
    for union in (RealtimeClientEvent, RealtimeServerEvent):
        for model in typing.get_args(typing.get_args(union)[0]):
            kind = typing.get_args(model.model_fields["type"].annotation)[0]
            prefix, _, last = kind.rpartition(".")
            grouped = rf"`{re.escape(prefix)}\.\w+`( / `\.\w+`)* / `\.{last}`"  # `a.x` / `.y`
            if f"`{kind}`" not in rows and not re.search(grouped, rows):
                missing.append(kind)
    assert not missing, missing
