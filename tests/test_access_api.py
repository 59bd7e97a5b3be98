"""Authentication end to end against the real server (real models, loopback):
every route and the realtime WebSocket with a missing, wrong and valid key, a
client secret and an expired one; the ``openai`` SDK's own clients; meeting jobs
that only their key can see; uploaded file names that never become paths."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import openai
import pytest
import websockets
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.conftest import data_path, load_clip
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import RtcCaller
from tests.servers import ServerThread
from voice.audio.resample import resample
from web.access.client_secret_store import ClientSecretStore
from web.access.guard import OPEN_PATHS

ALICE, BOB, CAROL = "sk-alice-0123456789", "sk-bob-0123456789", "sk-carol-0123456789"
WRONG = "sk-nobody-0123456789"
JFK = "openai-whisper/jfk.wav"
JOB = "0" * 32
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/v1/meetings"): "/v1/meetings",
    ("POST", "/v1/meetings"): "/v1/meetings",
    ("GET", "/v1/meetings/{id}"): f"/v1/meetings/{JOB}",
    ("DELETE", "/v1/meetings/{id}"): f"/v1/meetings/{JOB}",
    ("POST", "/v1/meetings/{id}/cancel"): f"/v1/meetings/{JOB}/cancel",
    ("GET", "/v1/meetings/{id}/events"): f"/v1/meetings/{JOB}/events",
    ("GET", "/v1/meetings/{id}/transcript"): f"/v1/meetings/{JOB}/transcript",
    ("GET", "/v1/meetings/{id}/summary"): f"/v1/meetings/{JOB}/summary",
    ("GET", "/v1/meetings/{id}/audio"): f"/v1/meetings/{JOB}/audio",
    ("PATCH", "/v1/meetings/{id}/speakers"): f"/v1/meetings/{JOB}/speakers",
    ("POST", "/v1/meetings/{id}/links"): f"/v1/meetings/{JOB}/links",
    ("POST", "/v1/audio/transcriptions"): "/v1/audio/transcriptions",
    ("POST", "/v1/realtime/calls"): "/v1/realtime/calls",
    ("POST", "/v1/realtime/calls/{call_id}/hangup"): "/v1/realtime/calls/rtc_x/hangup",
    ("POST", "/v1/realtime/client_secrets"): "/v1/realtime/client_secrets",
}
OPEN_FILES = ["/static/app.js", "/static/meetings.html", "/static/style.css"]


@pytest.fixture(scope="module")
def server(
    services: Services, llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    base = tmp_path_factory.mktemp("auth")
    keys_file = base / "keys.txt"
    keys_file.write_text(f"# one key per line\ncarol:{CAROL}\n")
    settings = api_settings(
        base,
        llm_base_url=llm.base_url,
        api_keys=[f"alice:{ALICE}", BOB],
        api_keys_file=keys_file,
        webrtc_host_addresses=["127.0.0.1"],
    )
    with serve(settings, services) as running:
        yield running


def app_of(server: ServerThread) -> Starlette:
    return cast(Starlette, server.server.config.app)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(
    server: ServerThread, method: str, path: str, key: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {**kw.pop("headers", {}), **(auth(key) if key else {})}
    return request(method, f"{server.http_url}{path}", headers=headers, **kw)


def assert_unauthorized(response: httpx.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def mint(server: ServerThread, key: str = ALICE, **body: Any) -> dict[str, Any]:
    response = call(server, "POST", "/v1/realtime/client_secrets", key, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_every_route_is_listed_here(server: ServerThread) -> None:
    """A route added later without an auth test fails this test."""
    found = set()
    for route in app_of(server).routes:
        assert isinstance(route, Route | WebSocketRoute | Mount)
        if isinstance(route, Route) and route.path not in OPEN_PATHS:
            found |= {(m, route.path) for m in route.methods or () if m != "HEAD"}
    assert found == set(ROUTES)


@pytest.mark.parametrize(("method", "template"), sorted(ROUTES))
def test_every_route_needs_a_valid_key(server: ServerThread, method: str, template: str) -> None:
    path = ROUTES[(method, template)]
    assert_unauthorized(call(server, method, path), "missing_api_key")
    assert_unauthorized(call(server, method, path, WRONG), "invalid_api_key")
    assert_unauthorized(
        call(server, method, path, headers={"Authorization": "Basic YTpi"}), "missing_api_key"
    )
    for key in (ALICE, BOB, CAROL):
        response = call(server, method, path, key)
        assert response.status_code != 401, response.text
        assert response.status_code < 500, response.text


def test_open_paths_need_no_key(server: ServerThread) -> None:
    routes = [r.path for r in app_of(server).routes if isinstance(r, Route)]
    for path in [p for p in routes if p in OPEN_PATHS] + OPEN_FILES:
        assert call(server, "GET", path).status_code == 200, path


async def test_client_secrets_open_realtime_only_and_expire(server: ServerThread) -> None:
    secret = (
        await asyncio.to_thread(mint, server, expires_after={"anchor": "created_at", "seconds": 60})
    )["value"]
    assert secret.startswith("ek_")
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
        for method, path in (("GET", "/v1/meetings"), ("POST", "/v1/realtime/client_secrets")):
            assert_unauthorized(
                await http.request(method, path, headers=auth(secret)), "invalid_api_key"
            )
        # It opens a WebRTC call, and hangs it up; another key cannot hang it up.
        caller = RtcCaller(server.http_url)
        try:
            sdp = {"content": await caller.offer(), "headers": {"content-type": "application/sdp"}}
            placed = await http.post(
                "/v1/realtime/calls",
                content=sdp["content"],
                headers={**sdp["headers"], **auth(secret)},
            )
            assert placed.status_code == 201, placed.text
            hangup = placed.headers["location"] + "/hangup"
            assert (await http.post(hangup, headers=auth(BOB))).status_code == 404
            assert (await http.post(hangup, headers=auth(secret))).status_code == 200
        finally:
            await caller.close()
        store: ClientSecretStore = app_of(server).state.client_secrets
        later = time.time() + 61
        store._now = lambda: later  # the secret's minute is over
        try:
            expired = await http.post(
                "/v1/realtime/calls",
                content=sdp["content"],
                headers={**sdp["headers"], **auth(secret)},
            )
            assert_unauthorized(expired, "invalid_api_key")
        finally:
            store._now = time.time
        bad = await http.post(
            "/v1/realtime/client_secrets",
            headers=auth(ALICE),
            json={"expires_after": {"seconds": 5}},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "expires_after.seconds"
        bad = await http.post(
            "/v1/realtime/client_secrets",
            headers=auth(ALICE),
            json={"session": {"instructions": 5}},
        )
        assert bad.status_code == 400 and bad.json()["error"]["message"]


# --- the realtime WebSocket ----------------------------------------------------------


async def ws_events(
    server: ServerThread,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    """Connect, read the first event, and report how the server closed (if it did)."""
    ws = await websockets.connect(
        f"{server.ws_url}/v1/realtime?model=voice-agent",
        additional_headers=headers,
        subprotocols=cast(Any, subprotocols),
    )
    events = [json.loads(await asyncio.wait_for(ws.recv(), 30))]
    if events[0]["type"] == "error":
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        return events, closed.value.rcvd
    assert ws.subprotocol == ("realtime" if subprotocols else None)
    await ws.close()
    return events, None


async def test_websocket_keys_in_header_or_subprotocol(server: ServerThread) -> None:
    for headers, protocols, code in (
        (None, None, "missing_api_key"),
        (auth(WRONG), None, "invalid_api_key"),
        (None, ["realtime", f"openai-insecure-api-key.{WRONG}"], "invalid_api_key"),
        (None, ["realtime"], "missing_api_key"),
    ):
        events, close = await ws_events(server, headers=headers, subprotocols=protocols)
        assert events[0]["error"]["code"] == code, events
        assert close.code == 4001
    for headers, protocols in (
        (auth(ALICE), None),
        (auth(CAROL), ["realtime"]),
        (None, ["realtime", f"openai-insecure-api-key.{BOB}"]),
    ):
        events, close = await ws_events(server, headers=headers, subprotocols=protocols)
        assert events[0]["type"] == "session.created" and close is None


async def test_websocket_with_a_client_secret_gets_its_session(server: ServerThread) -> None:
    minted = mint(server, session={"type": "realtime", "instructions": "Talk like a pirate."})
    secret = minted["value"]
    for headers, protocols in (
        (auth(secret), None),
        (None, ["realtime", f"openai-insecure-api-key.{secret}"]),
    ):
        events, close = await ws_events(server, headers=headers, subprotocols=protocols)
        assert events[0]["type"] == "session.created" and close is None
        assert events[0]["session"]["instructions"] == "Talk like a pirate."
    store: ClientSecretStore = app_of(server).state.client_secrets
    later = time.time() + 3600
    store._now = lambda: later
    try:
        events, close = await ws_events(server, headers=auth(secret))
    finally:
        store._now = time.time
    assert events[0]["error"]["code"] == "invalid_api_key" and close.code == 4001


# --- the openai SDK ------------------------------------------------------------------------


def sdk(server: ServerThread, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(api_key=key, base_url=f"{server.http_url}/v1", max_retries=0, timeout=120)


async def test_openai_sdk_with_a_valid_and_a_wrong_key(server: ServerThread) -> None:
    audio = data_path(JFK).read_bytes()
    text = await sdk(server, ALICE).audio.transcriptions.create(
        model="whisper-1", file=("jfk.wav", audio)
    )
    assert "ask not what your country" in text.text.lower()
    with pytest.raises(openai.AuthenticationError):
        await sdk(server, WRONG).audio.transcriptions.create(
            model="whisper-1", file=("jfk.wav", audio)
        )

    created = await sdk(server, BOB).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 120},
        session={"type": "realtime", "instructions": "Answer in one word."},
    )
    assert created.value.startswith("ek_")
    assert abs(created.expires_at - (time.time() + 120)) < 10
    assert created.session.type == "realtime"
    assert created.session.instructions == "Answer in one word."
    with pytest.raises(openai.AuthenticationError):
        await sdk(server, WRONG).realtime.client_secrets.create()

    for key, instructions in ((ALICE, None), (created.value, "Answer in one word.")):
        async with sdk(server, key).realtime.connect(model="voice-agent") as conn:
            event = await asyncio.wait_for(conn.recv(), 30)
            assert event.type == "session.created"
            if instructions:
                assert event.session.instructions == instructions
    async with sdk(server, WRONG).realtime.connect(model="voice-agent") as conn:
        event = await asyncio.wait_for(conn.recv(), 30)
        assert event.type == "error" and event.error.code == "invalid_api_key"
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(conn.recv(), 10)


# --- jobs belong to their key; file names never become paths ------------------------------------


def test_jobs_belong_to_the_key_that_made_them(server: ServerThread) -> None:
    audio = data_path(JFK).read_bytes()
    made = call(
        server,
        "POST",
        "/v1/meetings",
        ALICE,
        data={"summarize": "false"},
        files={"file": ("../../etc/passwd", audio, "audio/wav")},
    )
    assert made.status_code == 202, made.text
    job = made.json()
    assert job["filename"] == "passwd"
    base = f"/v1/meetings/{job['id']}"
    missing = call(server, "GET", f"/v1/meetings/{'f' * 32}", BOB).json()
    for key in (BOB, CAROL):
        listed = call(server, "GET", "/v1/meetings", key).json()["data"]
        assert job["id"] not in [j["id"] for j in listed]
        for method, path in (
            ("GET", base),
            ("GET", f"{base}/events"),
            ("GET", f"{base}/transcript"),
            ("GET", f"{base}/summary"),
            ("GET", f"{base}/audio"),
            ("POST", f"{base}/cancel"),
            ("DELETE", base),
        ):
            refused = call(server, method, path, key)
            assert refused.status_code == 404, (method, path, refused.text)
            assert (
                refused.json()["error"]["code"] == missing["error"]["code"] == "meeting_not_found"
            )
        renamed = call(server, "PATCH", f"{base}/speakers", key, json={"SPEAKER_00": "Eve"})
        assert renamed.status_code == 404
    assert call(server, "GET", base, ALICE).status_code == 200
    assert job["id"] in [j["id"] for j in call(server, "GET", "/v1/meetings", ALICE).json()["data"]]
    data_dir: Path = app_of(server).state.settings.data_dir
    names = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
    assert f"uploads/{job['id']}/original" in names
    assert not any("passwd" in n or ".." in n for n in names), names
    assert call(server, "DELETE", base, ALICE).status_code == 200
    assert call(server, "GET", base, ALICE).status_code == 404


def test_transcription_upload_names_never_become_paths(
    server: ServerThread, tmp_path: Path
) -> None:
    audio = data_path(JFK).read_bytes()
    for name in ("../../etc/passwd", "..\\..\\boot.ini", "/abs/path.wav", "a\x00b.wav"):
        response = call(
            server,
            "POST",
            "/v1/audio/transcriptions",
            ALICE,
            data={"model": "whisper-1", "response_format": "text"},
            files={"file": (name, audio, "audio/wav")},
        )
        assert response.status_code == 200, response.text
        assert "country" in response.text
    data_dir: Path = app_of(server).state.settings.data_dir
    scratch = data_dir / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())  # nothing kept, nothing outside
    assert not (data_dir.parent / "etc").exists()


async def test_a_recorded_live_meeting_belongs_to_the_sessions_key(server: ServerThread) -> None:
    pcm = (np.clip(resample(load_clip(JFK), 16000, 24000), -1, 1) * 32767).astype("<i2")
    async with websockets.connect(
        f"{server.ws_url}/v1/realtime", additional_headers=auth(ALICE), max_size=None
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        update = {"type": "realtime", "meeting": {"record": True, "title": "Standup"}}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "session.updated":
            pass
        chunk = base64.b64encode(pcm[: 3 * 24000].tobytes()).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        await asyncio.sleep(2)

    async def titles(key: str) -> list[str]:
        response = await asyncio.to_thread(call, server, "GET", "/v1/meetings", key)
        return [j["filename"] for j in response.json()["data"]]

    deadline = time.monotonic() + 20
    while "Standup" not in await titles(ALICE):
        assert time.monotonic() < deadline, "the live meeting was not stored"
        await asyncio.sleep(0.2)
    assert "Standup" not in await titles(BOB)
    job = next(
        j
        for j in (await asyncio.to_thread(call, server, "GET", "/v1/meetings", ALICE)).json()[
            "data"
        ]
        if j["filename"] == "Standup"
    )
    assert (
        await asyncio.to_thread(call, server, "GET", f"/v1/meetings/{job['id']}", BOB)
    ).status_code == 404
    deleted = await asyncio.to_thread(call, server, "DELETE", f"/v1/meetings/{job['id']}", ALICE)
    assert deleted.status_code == 200


async def test_openai_sdk_webrtc_call_with_a_client_secret(server: ServerThread) -> None:
    minted = await sdk(server, CAROL).realtime.client_secrets.create(
        session={"type": "realtime", "instructions": "Answer in rhymes."}
    )
    caller = RtcCaller(server.http_url)
    try:
        offer = await caller.offer()
        with pytest.raises(openai.AuthenticationError):
            await sdk(server, WRONG).realtime.calls.create(sdp=offer)
        answer = await sdk(server, minted.value).realtime.calls.create(sdp=offer)
        await caller.accept(answer.content.decode())
        created = await caller.wait_for("session.created", 15)
        assert created["session"]["instructions"] == "Answer in rhymes."
    finally:
        await caller.close()
