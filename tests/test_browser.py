"""The browser page end to end: headless Chromium (Debian's ``chromium``, driven by
Playwright) with its fake microphone playing a real speech clip calls the real server
over WebRTC on loopback; the clip's words must show in the page's transcript and the
agent's voice must come back (RTP bytes and audible level at the page's analyser)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import jiwer
import numpy as np
import pytest
from playwright.async_api import Page, async_playwright
from starlette.applications import Starlette

from tests.conftest import load_clip, reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import eventually
from tests.servers import ServerThread
from web.realtime.rtc_peer import CallRegistry

CHROMIUM = "/usr/bin/chromium"
CLIP = "azure-speech-sdk/whatstheweatherlike.wav"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"






def microphone_wav(path: Path, relative: str, lead_s: float, tail_s: float) -> Path:
    """A 16-bit 16 kHz WAV of the clip between silences (Chromium loops the file)."""
    clip = (load_clip(relative) * 32767).astype("<i2")
    pcm = np.concatenate(
        [np.zeros(int(lead_s * 16000), "<i2"), clip, np.zeros(int(tail_s * 16000), "<i2")]
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm.tobytes())
    return path


@contextlib.asynccontextmanager
async def open_page(
    tmp_path: Path, *, allow_microphone: bool, clip: str = CLIP, lead_s: float = 3.0
) -> AsyncIterator[Page]:
    """Headless Chromium whose fake microphone plays ``clip``; a fresh page in it."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    mic = microphone_wav(tmp_path / "mic.wav", clip, lead_s=lead_s, tail_s=30.0)
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if allow_microphone:
        args.append("--use-fake-ui-for-media-stream")  # grants the permission prompt
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            context = await browser.new_context(viewport={"width": 900, "height": 1000})
            yield await context.new_page()
        finally:
            await browser.close()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with open_page(tmp_path, allow_microphone=True) as opened:
        yield opened


def wer(reference: str, hypothesis: str) -> float:
    def normalize(text: str) -> str:
        return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())

    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


async def hook(page: Page, expression: str) -> Any:
    return await page.evaluate(f"() => window.voiceAgent.{expression}")


async def wait_hook(page: Page, condition: str, timeout_s: float) -> None:
    await page.wait_for_function(
        f"() => window.voiceAgent && ({condition})", timeout=timeout_s * 1000, polling=100
    )


async def test_browser_call_transcribes_speech_and_plays_the_answer(
    server: ServerThread, llm: ScriptedLlmServer, page: Page
) -> None:
    llm.add(Turn.say("It is sunny and warm today.", when=user_says("weather")))
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    await page.goto(f"{server.http_url}/?loopback=1&raw=1")
    await page.get_by_role("button", name="Start talking").click()
    await wait_hook(page, "window.voiceAgent.connected", 15)
    await page.get_by_role("button", name="Hang up").wait_for(timeout=5000)
    await wait_hook(
        page, "window.voiceAgent.transcripts.some(t => t.role === 'user' && t.final)", 40
    )
    user = [t for t in await hook(page, "transcripts") if t["role"] == "user" and t["final"]]
    error = wer(reference_text(CLIP), user[0]["text"])
    print(f"\nbrowser transcript {user[0]['text']!r}: WER {error:.2f}")
    assert error <= 0.25
    # The agent answers: its words on the page, its voice at the analyser, RTP bytes growing.
    await wait_hook(page, "window.voiceAgent.agentVoicedTicks >= 10", 30)
    ARTIFACTS.mkdir(exist_ok=True)  # the page while the agent speaks
    await page.screenshot(path=str(ARTIFACTS / "browser-call.png"), full_page=True)
    await wait_hook(
        page, "window.voiceAgent.transcripts.some(t => t.role === 'agent' && t.final)", 15
    )
    first_bytes = await hook(page, "bytesReceived")
    await asyncio.sleep(1.2)
    assert await hook(page, "bytesReceived") > first_bytes > 0
    assert await hook(page, "agentLevelMax") > 0.02
    agent = [t for t in await hook(page, "transcripts") if t["role"] == "agent"]
    assert agent[0]["text"] == "It is sunny and warm today."
    await expect_text(page, "It is sunny and warm today.")
    latencies = await hook(page, "latencies")
    assert latencies and latencies[0]["first_audio_sent"] is not None
    assert await page.locator("#latency-table tbody tr").count() == len(latencies)
    assert await hook(page, "errors") == [] and page_errors == []
    # Hanging up from the page ends the call on the server too.
    await page.get_by_role("button", name="Hang up").click()
    await wait_hook(page, "window.voiceAgent.state === 'ended'", 5)
    calls = cast(CallRegistry, cast(Starlette, server.server.config.app).state.webrtc_calls)
    await eventually(lambda: len(calls) == 0, 10)


async def expect_text(page: Page, text: str) -> None:
    await page.locator("#transcript").get_by_text(text).wait_for(timeout=5000)


async def test_unreachable_server_is_reported_in_plain_words(
    server: ServerThread, page: Page
) -> None:
    await page.goto(f"{server.http_url}/?loopback=1")
    await page.route("**/v1/realtime/calls", lambda route: route.abort("connectionrefused"))
    await page.get_by_role("button", name="Start talking").click()
    alert = page.get_by_role("alert")
    await alert.wait_for(timeout=10000)
    assert "could not be reached" in (await alert.inner_text())
    assert await hook(page, "state") == "idle"
    assert await page.get_by_role("button", name="Start talking").is_enabled()


async def test_server_ending_the_call_is_reported_as_a_dropped_call(
    server: ServerThread, page: Page
) -> None:
    await page.goto(f"{server.http_url}/?loopback=1")
    await page.get_by_role("button", name="Start talking").click()
    await wait_hook(page, "window.voiceAgent.connected", 15)
    calls = cast(CallRegistry, cast(Starlette, server.server.config.app).state.webrtc_calls)
    (call_id,) = calls.ids()
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server.http_url}/v1/realtime/calls/{call_id}/hangup")
    assert response.status_code == 200
    alert = page.get_by_role("alert")
    await alert.wait_for(timeout=10000)
    assert "call dropped" in (await alert.inner_text())
    assert await hook(page, "state") == "ended"


async def test_denied_microphone_is_explained(server: ServerThread, tmp_path: Path) -> None:
    async with open_page(tmp_path, allow_microphone=False) as page:
        await page.goto(f"{server.http_url}/?loopback=1")
        await page.get_by_role("button", name="Start talking").click()
        alert = page.get_by_role("alert")
        await alert.wait_for(timeout=10000)
        assert "Microphone access was denied" in (await alert.inner_text())
        assert await hook(page, "state") == "idle"


async def test_meeting_mode_labels_speakers_and_saves_a_meeting(
    server: ServerThread, tmp_path: Path
) -> None:
    """The page in meeting mode: the Katie/Steve dialogue from the fake microphone comes out
    as labelled turns with no agent replies, and hanging up stores it as a meeting job."""
    async with open_page(
        tmp_path, allow_microphone=True, clip="azure-speech-sdk/katiesteve.wav", lead_s=1.0
    ) as page:
        await page.goto(f"{server.http_url}/?loopback=1&raw=1")
        await page.get_by_label("Transcribe a meeting").check()
        await page.get_by_label("Title").fill("browser meeting")
        await page.get_by_role("button", name="Start talking").click()
        await wait_hook(page, "window.voiceAgent.connected", 15)
        await wait_hook(
            page,
            "new Set(window.voiceAgent.transcripts.filter(t => t.final && t.speaker)"
            ".map(t => t.speaker)).size >= 2 && "
            "window.voiceAgent.transcripts.filter(t => t.final).length >= 5",
            60,
        )
        turns = await hook(page, "transcripts")
        assert all(t["role"] == "user" for t in turns)  # nobody answered
        assert await page.locator("#transcript .role", has_text="Speaker 2").count() >= 1
        await page.get_by_role("button", name="Hang up").click()
        await wait_hook(page, "window.voiceAgent.state === 'ended'", 5)

    def stored() -> bool:
        jobs = httpx.get(f"{server.http_url}/v1/meetings", timeout=30).json()["data"]
        return any(j["filename"] == "browser meeting" and j["state"] == "succeeded" for j in jobs)

    await eventually(stored, 240, every_s=1.0)
    async with httpx.AsyncClient(timeout=30) as http:
        jobs = (await http.get(f"{server.http_url}/v1/meetings")).json()["data"]
    job = next(j for j in jobs if j["filename"] == "browser meeting")
    meetings = cast(Starlette, server.server.config.app).state.meetings
    live = json.loads((meetings.files.upload_dir(job["id"]) / "live.json").read_text())
    # the turns as heard live are kept beside the recording, on its time line
    assert live["title"] == "browser meeting"
    texts = [t["text"] for t in turns if t["final"] and t["text"]]  # before hanging up
    assert [s["text"] for s in live["segments"]][: len(texts)] == texts
    assert len({s["speaker"] for s in live["segments"]}) >= 2
    starts = [s["start"] for s in live["segments"]]
    assert starts == sorted(starts) and all(s["end"] > s["start"] >= 0 for s in live["segments"])
