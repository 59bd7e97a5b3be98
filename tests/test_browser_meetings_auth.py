"""The meetings page against a server that needs an API key (real server, real
Whisper and diarization, headless Debian Chromium): the page asks for the key once,
uploads, follows the job over its event stream, shows the transcript, plays the
audio and offers downloads. Streams, audio and downloads use signed read links
(they cannot carry a bearer header); the links open one meeting, read-only, and
never contain the key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from playwright.async_api import Dialog
from starlette.applications import Starlette

from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.conftest import data_path
from tests.servers import ServerThread
from tests.test_browser import open_page
from web.access.read_links import LINK_TTL_S, ReadLinks

KEY = "sk-meetings-0123456789"
OTHER_KEY = "sk-meetings-other-0123"
JFK = "openai-whisper/jfk.wav"
JOB_TIMEOUT_MS = 240_000
"""Upload to finished transcript on a loaded 2-core machine (generous)."""


@pytest.fixture(scope="module")
def keyed(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = api_settings(tmp_path_factory.mktemp("keyed-meetings"), api_keys=[KEY, OTHER_KEY])
    with serve(settings, services) as running:
        yield running


async def test_the_meetings_page_works_with_keys_on(keyed: ServerThread, tmp_path: Path) -> None:
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept(KEY)

    async with open_page(tmp_path, allow_microphone=False) as page:
        page.on("dialog", answer)
        await page.goto(f"{keyed.http_url}/meetings")
        await page.locator("#list-empty").wait_for(state="visible", timeout=20_000)
        assert len(asked) == 1 and "API key" in asked[0]
        assert await page.evaluate("() => sessionStorage.getItem('voiceAgent.apiKey')") == KEY

        await page.set_input_files("#file", str(data_path(JFK)))
        await page.uncheck("#summarize")
        await page.click("#upload-button")
        # Progress arrives over the event stream (a read link); then the transcript opens.
        await page.locator("#segments li").first.wait_for(timeout=JOB_TIMEOUT_MS)
        transcript = (await page.locator("#segments").inner_text()).lower()
        assert "ask not what your country can do for you" in transcript
        assert len(asked) == 1  # the stored key served every later call

        player_src = await page.get_attribute("#player", "src")
        assert player_src is not None and "link=" in player_src and KEY not in player_src
        await page.wait_for_function(
            "() => document.getElementById('player').duration > 10", timeout=20_000
        )
        srt = await page.get_attribute(".downloads a[data-format='srt']", "href")
        assert srt is not None and "link=" in srt and "format=srt" in srt
        # The links work without any header (as a download or the player fetch them)...
        download = request("GET", f"{keyed.http_url}{srt}")
        assert download.status_code == 200, download.text
        assert "ask not what your country" in download.text.lower()
        audio = request("GET", f"{keyed.http_url}{player_src}", headers={"Range": "bytes=0-99"})
        assert audio.status_code == 206
        # ...but open nothing else: not another path, not a write, not the list.
        meeting_id = player_src.split("/")[3]
        token = player_src.split("link=")[1]
        for method, path in (
            ("GET", f"/v1/meetings/{meeting_id}?link={token}"),
            ("DELETE", f"/v1/meetings/{meeting_id}?link={token}"),
            ("GET", f"/v1/meetings?link={token}"),
        ):
            refused = request(method, f"{keyed.http_url}{path}")
            assert refused.status_code == 401, (method, path, refused.text)
        assert (
            request(
                "GET",
                f"{keyed.http_url}/v1/meetings/{meeting_id}",
                headers={"Authorization": f"Bearer {KEY}"},
            ).json()["state"]
            == "succeeded"
        )


def test_read_links_are_bound_to_meeting_owner_and_time(keyed: ServerThread) -> None:
    """A link for one meeting does not open another; another key's meeting stays
    hidden (404 for its links); a forged or expired link is refused."""
    now = [1_000_000.0]
    links = ReadLinks(key=b"k" * 32, clock=lambda: now[0])
    token, expires_at = links.sign("a" * 32, "name:alice")
    assert expires_at == 1_000_000 + LINK_TTL_S
    assert links.verify(token, "a" * 32) == "name:alice"
    assert links.verify(token, "b" * 32) is None
    forged = token.rsplit(".", 1)[0] + ".AAAA"
    assert links.verify(forged, "a" * 32) is None
    assert ReadLinks(key=b"x" * 32, clock=lambda: now[0]).verify(token, "a" * 32) is None
    for junk in ("", "..", "9" * 5000 + ".a.b", "٣.é.é", f"{expires_at}.!!.??"):
        assert links.verify(junk, "a" * 32) is None
    now[0] += LINK_TTL_S + 1
    assert links.verify(token, "a" * 32) is None

    base = keyed.http_url
    mine = {"Authorization": f"Bearer {KEY}"}
    theirs = {"Authorization": f"Bearer {OTHER_KEY}"}
    wav = data_path(JFK).read_bytes()
    created = request(
        "POST",
        f"{base}/v1/meetings",
        headers=mine,
        data={"summarize": "false"},
        files={"file": ("jfk.wav", wav, "audio/wav")},
    )
    assert created.status_code == 202, created.text
    meeting_id = created.json()["id"]
    assert (
        request("POST", f"{base}/v1/meetings/{meeting_id}/links", headers=theirs).status_code == 404
    )
    assert request("POST", f"{base}/v1/meetings/{meeting_id}/links").status_code == 401
    issued = request("POST", f"{base}/v1/meetings/{meeting_id}/links", headers=mine).json()
    assert issued["expires_at"] > time.time() + LINK_TTL_S - 60
    events_url = issued["urls"]["events"]
    with_link = request("GET", f"{base}{events_url}", timeout=120)
    assert with_link.status_code == 200 and "event: job" in with_link.text
    token = events_url.split("link=")[1]
    other = request("GET", f"{base}/v1/meetings/{'0' * 32}/events?link={token}")
    assert other.status_code == 401 and other.json()["error"]["code"] == "invalid_link"
    # A link signed for nobody (as with keys off) opens nothing while keys are on.
    server_links = cast(Starlette, keyed.server.config.app).state.read_links
    anonymous, _ = server_links.sign(meeting_id, None)
    refused = request("GET", f"{base}/v1/meetings/{meeting_id}/transcript?link={anonymous}")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_link"


@pytest.fixture(scope="module")
def open_server(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    with serve(api_settings(tmp_path_factory.mktemp("open-meetings")), services) as running:
        yield running


async def test_without_keys_the_page_never_asks_and_uses_plain_urls(
    open_server: ServerThread, tmp_path: Path
) -> None:
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    async with open_page(tmp_path, allow_microphone=False) as page:
        page.on("dialog", answer)
        await page.goto(f"{open_server.http_url}/meetings")
        await page.locator("#list-empty").wait_for(state="visible", timeout=20_000)
        await page.set_input_files("#file", str(data_path(JFK)))
        await page.uncheck("#summarize")
        await page.click("#upload-button")
        await page.locator("#segments li").first.wait_for(timeout=JOB_TIMEOUT_MS)
        player_src = await page.get_attribute("#player", "src")
        assert player_src is not None and player_src.endswith("/audio")
        assert asked == []


async def test_a_wrong_key_is_explained_and_forgotten(keyed: ServerThread, tmp_path: Path) -> None:
    async def answer(dialog: Dialog) -> None:
        await dialog.accept("sk-wrong-key")

    async with open_page(tmp_path, allow_microphone=False) as page:
        page.on("dialog", answer)
        await page.goto(f"{keyed.http_url}/meetings")
        error = page.locator("#upload-error")
        await error.wait_for(state="visible", timeout=20_000)
        assert "API key is not valid" in await error.inner_text()
        assert await page.evaluate("() => sessionStorage.getItem('voiceAgent.apiKey')") is None
