"""Bad input and server bugs against the real server: bad values get OpenAI-shaped
JSON errors rather than plain-text 500s, an unexpected failure is a JSON 500
whose request id is logged, and a failure inside a realtime session becomes an
``error`` event while the session carries on. (Oversize bodies:
``tests/test_body_limits.py``.)"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from pipelines.realtime.session import RealtimeSession
from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.conftest import data_path
from tests.servers import ServerThread

JFK = "openai-whisper/jfk.wav"
KIB = 1024
ANSWER_TIMEOUT_S = 20.0
"""How long a refusal may take once the cap is passed (a loaded 2-core machine)."""


@pytest.fixture(scope="module")
def server(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve(api_settings(tmp_path_factory.mktemp("hostile")), services) as running:
        yield running


def test_unknown_language_is_a_400_naming_the_field(server: ServerThread) -> None:
    jfk = data_path(JFK).read_bytes()
    for path, status in (("/v1/audio/transcriptions", 400), ("/v1/meetings", 422)):
        response = request(
            "POST",
            f"{server.http_url}{path}",
            data={"model": "whisper-1", "language": "klingon", "summarize": "false"},
            files={"file": ("jfk.wav", jfk, "audio/wav")},
        )
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_value", "language")
    assert request("GET", f"{server.http_url}/v1/meetings").json()["data"] == []
    upper = request(
        "POST",
        f"{server.http_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", "language": "EN"},
        files={"file": ("jfk.wav", jfk, "audio/wav")},
    )
    assert upper.status_code == 200 and "country" in upper.json()["text"].lower()


def test_a_rename_that_is_not_utf8_is_a_400(server: ServerThread) -> None:
    created = request(
        "POST",
        f"{server.http_url}/v1/meetings",
        data={"summarize": "false"},
        files={"file": ("jfk.wav", data_path(JFK).read_bytes(), "audio/wav")},
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    try:
        response = request(
            "PATCH",
            f"{server.http_url}/v1/meetings/{job_id}/speakers",
            content=b'{"SPEAKER_00": "\xff\xfe Al\xe9"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_json"
    finally:
        request("DELETE", f"{server.http_url}/v1/meetings/{job_id}")


def test_a_server_bug_is_a_json_500_with_the_request_id_logged(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault injected into the job store (the stand-in for any bug in a route)."""
    store = server.server.config.app.state.meetings.store  # type: ignore[union-attr]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(store, "list", broken)
    with caplog.at_level(logging.ERROR):
        response = request(
            "GET", f"{server.http_url}/v1/meetings", headers={"X-Request-Id": "req-fault-1"}
        )
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "req-fault-1" in error["message"] and response.headers["x-request-id"] == "req-fault-1"
    assert any("req-fault-1" in r.getMessage() and r.exc_info for r in caplog.records)


async def _realtime_after_a_fault(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with websockets.connect(url, max_size=None) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "evt_boom"}))
        while (error := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] != "error":
            pass
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "instructions": "Be brief."},
                }
            )
        )
        while (after := json.loads(await asyncio.wait_for(ws.recv(), 30)))[
            "type"
        ] != "session.updated":
            pass
        return error, after


def test_a_failure_inside_a_realtime_session_is_an_error_event_and_it_carries_on(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault injected into one event handler (the stand-in for any server bug)."""

    async def broken(self: RealtimeSession, event: Any) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(RealtimeSession, "_on_input_audio_buffer_clear", broken)
    error, after = asyncio.run(_realtime_after_a_fault(f"{server.ws_url}/v1/realtime?model=x"))
    assert error["error"]["type"] == "server_error"
    assert error["error"]["code"] == "internal_error"
    assert error["error"]["event_id"] == "evt_boom"
    assert after["session"]["instructions"] == "Be brief."
