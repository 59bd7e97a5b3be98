"""Hostile pages against the real server: a page on another origin cannot call the
API or open a realtime session (HTTP and WebSocket), a DNS-rebinding page is
refused by its ``Host`` when keys are off, and a browser client on a listed
origin gets CORS (preflight included) when configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.servers import ServerThread
from voice.settings import SettingsError
from web.app import create_app

EVIL = "http://evil.example"
APP = "http://app.example:5173"
KEY = "sk-security-0123456789"


@pytest.fixture(scope="module")
def open_server(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The loopback default: no keys, no listed origins."""
    with serve(api_settings(tmp_path_factory.mktemp("open")), services) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_server(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """Keys on, one browser client served from another origin."""
    settings = api_settings(tmp_path_factory.mktemp("keyed"), api_keys=[KEY], allowed_origins=[APP])
    with serve(settings, services) as running:
        yield running


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return str(response.json()["error"]["code"])


async def first_event(url: str, **kwargs: Any) -> dict[str, Any]:
    async with websockets.connect(url, max_size=None, open_timeout=30, **kwargs) as ws:
        return dict(json.loads(await asyncio.wait_for(ws.recv(), 30)))


async def handshake_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await first_event(url, **kwargs)
    return refused.value.response.status_code


def test_a_page_on_another_origin_cannot_call_the_api(open_server: ServerThread) -> None:
    base = open_server.http_url
    wav = ("a.wav", b"RIFF", "audio/wav")
    for origin in (EVIL, "null", f"http://127.0.0.1:{open_server.port + 1}"):
        refused = request(
            "POST", f"{base}/v1/meetings", headers={"Origin": origin}, files={"file": wav}
        )
        assert error_code(refused, 403) == "origin_not_allowed"
        assert "access-control-allow-origin" not in refused.headers
        listing = request("GET", f"{base}/v1/meetings", headers={"Origin": origin})
        assert error_code(listing, 403) == "origin_not_allowed"
    # The server's own pages, and clients that are not browsers, are served.
    for own in (base, f"http://localhost:{open_server.port}"):
        host = own.removeprefix("http://")
        response = request("GET", f"{base}/v1/meetings", headers={"Origin": own, "Host": host})
        assert response.status_code == 200, response.text
    assert request("GET", f"{base}/v1/meetings").status_code == 200


def test_a_page_on_another_origin_cannot_open_a_realtime_session(
    open_server: ServerThread,
) -> None:
    url = f"{open_server.ws_url}/v1/realtime?model=x"
    assert asyncio.run(handshake_status(url, origin=EVIL)) == 403
    own = asyncio.run(first_event(url, origin=open_server.http_url))
    assert own["type"] == "session.created"
    assert asyncio.run(first_event(url))["type"] == "session.created"  # no Origin: an SDK


def test_dns_rebinding_is_refused_by_host_without_keys(open_server: ServerThread) -> None:
    """The attacker's name now resolves to 127.0.0.1: the page is same-origin with
    itself, but its requests still carry its own name as ``Host``."""
    port = open_server.port
    rebound = {"Host": f"rebind.example:{port}", "Origin": f"http://rebind.example:{port}"}
    for path in ("/v1/meetings", "/meetings", "/"):
        response = request("GET", f"{open_server.http_url}{path}", headers=rebound)
        assert error_code(response, 403) == "host_not_allowed"
    url = f"{open_server.ws_url}/v1/realtime?model=x"
    status = asyncio.run(
        handshake_status(
            url, origin=rebound["Origin"], additional_headers={"Host": rebound["Host"]}
        )
    )
    assert status == 403


def test_a_listed_origin_gets_cors_and_others_do_not(keyed_server: ServerThread) -> None:
    base = keyed_server.http_url
    preflight = request(
        "OPTIONS",
        f"{base}/v1/meetings",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    auth = {"Authorization": f"Bearer {KEY}"}
    listed = request("GET", f"{base}/v1/meetings", headers={"Origin": APP, **auth})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in listed.headers["access-control-expose-headers"].lower()
    no_key = request("GET", f"{base}/v1/meetings", headers={"Origin": APP})
    assert error_code(no_key, 401) == "missing_api_key"
    assert no_key.headers["access-control-allow-origin"] == APP  # the page can read why
    evil = request("GET", f"{base}/v1/meetings", headers={"Origin": EVIL, **auth})
    assert error_code(evil, 403) == "origin_not_allowed"
    evil_preflight = request(
        "OPTIONS",
        f"{base}/v1/meetings",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert error_code(evil_preflight, 403) == "origin_not_allowed"
    # With keys on, any Host is served (a proxy's name): a rebinding page has no key.
    named = request("GET", f"{base}/v1/meetings", headers={"Host": "voice.example", **auth})
    assert named.status_code == 200


def test_a_listed_origin_opens_realtime_sessions(keyed_server: ServerThread) -> None:
    url = f"{keyed_server.ws_url}/v1/realtime?model=x"
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}"]
    event = asyncio.run(first_event(url, origin=APP, subprotocols=protocols))  # type: ignore[arg-type]
    assert event["type"] == "session.created"
    assert asyncio.run(handshake_status(url, origin=EVIL, subprotocols=protocols)) == 403  # type: ignore[arg-type]


def test_any_origin_needs_keys(tmp_path: Any) -> None:
    with pytest.raises(SettingsError, match="VOICE_ALLOWED_ORIGINS"):
        create_app(api_settings(tmp_path, allowed_origins=["*"]))
    assert create_app(api_settings(tmp_path, allowed_origins=["*"], api_keys=[KEY])) is not None
