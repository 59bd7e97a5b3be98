"""The browser page against a server that needs an API key: the page asks for the key
once, keeps it in the tab, exchanges it for a client secret and calls with that;
a wrong key is explained in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from playwright.async_api import Dialog
from starlette.applications import Starlette

from pipelines.services import Services
from tests.api_helpers import api_settings, serve
from tests.rtc_client import eventually
from tests.servers import ServerThread
from tests.test_browser import hook, open_page, wait_hook
from web.realtime.rtc_peer import CallRegistry

KEY = "sk-browser-0123456789"


@pytest.fixture(scope="module")
def keyed(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = api_settings(
        tmp_path_factory.mktemp("keyed"), api_keys=[KEY], webrtc_host_addresses=["127.0.0.1"]
    )
    with serve(settings, services) as running:
        yield running


async def test_page_asks_for_the_key_once_and_calls_with_a_client_secret(
    keyed: ServerThread, tmp_path: Path
) -> None:
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept(KEY)

    async with open_page(tmp_path, allow_microphone=True) as page:
        page.on("dialog", answer)
        await page.goto(f"{keyed.http_url}/?loopback=1")
        await page.get_by_role("button", name="Start talking").click()
        await wait_hook(page, "window.voiceAgent.connected", 20)
        assert len(asked) == 1 and "API key" in asked[0]
        assert await page.evaluate("() => sessionStorage.getItem('voiceAgent.apiKey')") == KEY
        calls = cast(CallRegistry, cast(Starlette, keyed.server.config.app).state.webrtc_calls)
        assert len(calls) == 1
        await page.get_by_role("button", name="Hang up").click()
        await eventually(lambda: len(calls) == 0, 10)  # the hang-up carried the secret
        # A second call uses the stored key without asking again.
        await page.get_by_role("button", name="Start talking").click()
        await wait_hook(page, "window.voiceAgent.connected", 20)
        assert len(asked) == 1
        await page.get_by_role("button", name="Hang up").click()


async def test_a_wrong_key_is_explained(keyed: ServerThread, tmp_path: Path) -> None:
    async def answer(dialog: Dialog) -> None:
        await dialog.accept("sk-wrong")

    async with open_page(tmp_path, allow_microphone=True) as page:
        page.on("dialog", answer)
        await page.goto(f"{keyed.http_url}/?loopback=1")
        await page.get_by_role("button", name="Start talking").click()
        alert = page.get_by_role("alert")
        await alert.wait_for(timeout=10000)
        assert "API key was not accepted" in (await alert.inner_text())
        assert await hook(page, "state") == "idle"
        assert await page.evaluate("() => sessionStorage.getItem('voiceAgent.apiKey')") is None
