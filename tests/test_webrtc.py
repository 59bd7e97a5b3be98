"""Realtime over WebRTC end to end: an aiortc caller (real speech on its microphone
track, the ``oai-events`` data channel) against the real server (Whisper, Silero VAD,
Piper) on loopback, with a scripted OpenAI-compatible LLM server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import jiwer
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from openai import AsyncOpenAI
from starlette.applications import Starlette

from pipelines.realtime.audio_out import FrameQueue
from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import RtcCaller, clip48k, eventually, voiced_span_s
from tests.servers import ServerThread
from voice.settings import load_settings
from web.app import create_app
from web.realtime import rtc_peer
from web.realtime.rtc_peer import CallRegistry
from web.realtime.rtc_tracks import AgentAudioTrack, pump_input, to_mono_int16
from web.realtime.webrtc import calls, parse_session

WEATHER = "azure-speech-sdk/whatstheweatherlike.wav"
INTERRUPTION = "lhotse/2412-153948-0000.wav"
LONG_REPLY = (
    "Sure. Here is a long answer about the weather. The morning starts cool and cloudy. "
    "By noon the clouds break up and the sun comes out. In the afternoon a light breeze "
    "blows from the west. The evening will be clear and a little colder than today."
)






def registry(server: ServerThread) -> CallRegistry:
    """The server's call registry (created on first use, so a test may look before any call)."""
    return calls(cast(Starlette, server.server.config.app))


def normalize(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


async def test_caller_speaks_and_hears_a_spoken_answer(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(Turn.say("It is sunny and warm today.", when=user_says("weather")))
    caller = RtcCaller(server.http_url)
    try:
        await caller.connect()
        assert caller.location and caller.location.startswith("/v1/realtime/calls/rtc_")
        created = await caller.wait_for("session.created", 10)
        assert created["session"]["type"] == "realtime"
        caller.send({"type": "session.update",
                     "session": {"type": "realtime", "voice_extensions": ["latency"]}})
        await caller.wait_for("session.updated", 10)
        clip = caller.mic.play(clip48k(WEATHER))
        done = await caller.wait_for("response.done", 40)
        assert clip.started_at is not None
        transcript = caller.of_type("conversation.item.input_audio_transcription.completed")[0]
        error = wer(reference_text(WEATHER), transcript["transcript"])
        print(f"\nWebRTC transcript {transcript['transcript']!r}: WER {error:.2f}")
        assert error <= 0.25, transcript
        assert done["response"]["status"] == "completed"
        spoken = caller.of_type("response.output_audio_transcript.delta")
        assert "".join(d["delta"] for d in spoken).strip() == "It is sunny and warm today."
        assert not caller.of_type("response.output_audio.delta")  # audio goes on the track
        # Agent audio arrives on the remote track: over a second of voiced 20 ms frames.
        await eventually(lambda: len(caller.voiced_frames(clip.started_at or 0)) > 50, 10)
        speech_end = clip.started_at + voiced_span_s(clip.pcm)[1]
        first_voice = caller.voiced_frames(clip.started_at)[0]
        print(f"voice-to-voice latency {1000 * (first_voice - speech_end):.0f} ms")
        assert first_voice > speech_end
        latency = caller.of_type("voice.latency")[0]["latency_ms"]
        assert latency["first_audio_sent"] is not None
        # The output buffer's life on WebRTC: started with the reply, stopped once played.
        started = caller.of_type("output_audio_buffer.started")
        assert [e["response_id"] for e in started] == [done["response"]["id"]]
        stopped = await caller.wait_for("output_audio_buffer.stopped", 20)
        assert stopped["response_id"] == done["response"]["id"]
        assert "weather" in llm.chat_requests[-1].messages[-1]["content"].lower()
    finally:
        await caller.close()
    # The client closing its peer connection is a hang-up: the server closes the call.
    await eventually(lambda: len(registry(server)) == 0, 15)


async def test_barge_in_silences_the_agent_track(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    llm.add(Turn.say(LONG_REPLY, when=user_says("weather")))
    caller = RtcCaller(server.http_url)
    try:
        await caller.connect()
        await caller.wait_for("session.created", 10)
        first = caller.mic.play(clip48k(WEATHER, pad_s=0.8))
        await eventually(lambda: first.started_at is not None, 5)
        talking_since = await caller.wait_for_voice(after=first.started_at or 0, timeout_s=30)
        await asyncio.sleep(max(0.0, talking_since + 1.0 - time.monotonic()))
        interruption = caller.mic.play(clip48k(INTERRUPTION, pad_s=1.0))
        done = await caller.wait_for("response.done", 30)
        assert interruption.started_at is not None
        onset = interruption.started_at + voiced_span_s(interruption.pcm)[0]
        await asyncio.sleep(0.5)  # anything still in flight arrives
        during = caller.voiced_frames(talking_since)
        assert during[0] < onset  # the agent was talking when the user cut in
        stop_ms = 1000 * (during[-1] - onset)
        print(f"\nbarge-in: agent audio stopped {stop_ms:.0f} ms after speech onset")
        # behaviour, not speed (bench/webrtc.py measures that): the agent went quiet
        # while the user was still speaking
        assert during[-1] < interruption.started_at + voiced_span_s(interruption.pcm)[1]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        # It stays silent while the user goes on talking (no reply until the turn ends).
        assert not caller.voiced_frames(during[-1] + 0.3)
    finally:
        await caller.close()


async def test_openai_sdk_calls_create_gets_an_answer_and_applies_the_session(
    server: ServerThread,
) -> None:
    caller = RtcCaller(server.http_url)
    try:
        sdk = AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="test-key")
        answer = await sdk.realtime.calls.create(
            sdp=await caller.offer(),
            session={"type": "realtime", "instructions": "Speak like a pirate."},
        )
        text = answer.content.decode()
        assert text.startswith("v=0") and "m=audio" in text and "a=candidate:" in text
        await caller.accept(text)
        created = await caller.wait_for("session.created", 15)
        assert created["session"]["instructions"] == "Speak like a pirate."
        caller.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
        )
        updated = await caller.wait_for("session.updated", 5)
        assert updated["session"]["instructions"] == "x"
        # A call can become a transcription session (or start as one: the offer's session).
        caller.send({"type": "session.update", "session": {"type": "transcription"}})
        updated = await caller.wait_for("session.updated", 5, count=2)
        assert updated["session"]["type"] == "transcription"
        assert parse_session('{"type": "transcription"}').type == "transcription"
    finally:
        await caller.close()


async def test_bad_offers_get_json_errors_and_hangup_ends_a_call(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{server.http_url}/v1/realtime/calls"
    caller = RtcCaller(server.http_url)
    offer = await caller.offer()
    async with httpx.AsyncClient(timeout=30) as http:
        cases = [
            (
                {"content": b"hello", "headers": {"content-type": "application/sdp"}},
                "invalid_offer",
            ),
            ({"content": b"{}", "headers": {"content-type": "application/json"}}, "invalid_offer"),
            (
                {
                    "content": offer.replace("m=audio", "m=video").encode(),
                    "headers": {"content-type": "application/sdp"},
                },
                "invalid_offer",
            ),
            (
                {
                    "files": {
                        "sdp": (None, offer, "application/sdp"),
                        "session": (None, json.dumps({"instructions": 5}), "application/json"),
                    }
                },
                "invalid_value",
            ),
        ]
        for request, code in cases:
            response = await http.post(url, **request)  # type: ignore[arg-type]
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == code
            assert response.json()["error"]["message"]
        assert len(registry(server)) == 0
        # A real offer as a multipart form without a session part works too.
        response = await http.post(url, files={"sdp": (None, offer, "application/sdp")})
        assert response.status_code == 201
        assert response.headers["content-type"].startswith("application/sdp")
        location = response.headers["location"]
        assert len(registry(server)) == 1
        hung = await http.post(f"{server.http_url}{location}/hangup")
        assert hung.status_code == 200 and hung.json()["status"] == "closed"
        assert len(registry(server)) == 0
        missing = await http.post(f"{server.http_url}{location}/hangup")
        assert missing.status_code == 404
        # A call whose caller never connects is dropped after the connect timeout.
        monkeypatch.setattr(rtc_peer, "CONNECT_TIMEOUT_S", 1.0)
        response = await http.post(url, content=offer, headers={"content-type": "application/sdp"})
        assert response.status_code == 201
        assert len(registry(server)) == 1
        await eventually(lambda: len(registry(server)) == 0, 5)
    await caller.close()


@pytest.fixture
def own_server(llm: ScriptedLlmServer, tmp_path: Path) -> Iterator[ServerThread]:
    """A server of this test's own, since the test shuts it down."""
    settings = load_settings(
        llm_base_url=llm.base_url,
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        webrtc_host_addresses=["127.0.0.1"],
    )
    with ServerThread(create_app(settings)) as running:
        yield running


async def test_server_shutdown_closes_open_calls(own_server: ServerThread) -> None:
    """Stopping the server with a call still up closes the call."""
    server = own_server
    caller = RtcCaller(server.http_url)
    try:
        await caller.connect()
        await caller.wait_for("session.created", 10)
        calls = registry(server)
        assert len(calls) == 1
        await asyncio.to_thread(server.__exit__, None, None, None)
        assert len(calls) == 0
        # The caller sees the peer go away.
        await eventually(lambda: caller.pc.connectionState in ("closed", "failed"), 15)
    finally:
        await caller.close()


# --- media pieces without a network ------------------------------------------------


def audio_frame(data: np.ndarray, layout: str, fmt: str = "s16", rate: int = 48000) -> AudioFrame:
    frame = AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = rate
    return frame


def test_incoming_frames_are_mixed_down_to_mono() -> None:
    left, right = np.full(960, 1000, np.int16), np.full(960, -3000, np.int16)
    packed = np.stack([left, right], axis=1).reshape(1, -1)  # interleaved L R L R
    assert np.all(to_mono_int16(audio_frame(packed, "stereo")) == -1000)
    planar = np.stack([left, right])
    assert np.all(to_mono_int16(audio_frame(planar, "stereo", "s16p")) == -1000)
    mono = np.arange(960, dtype=np.int16).reshape(1, -1)
    assert np.array_equal(to_mono_int16(audio_frame(mono, "mono")), mono[0])


async def test_pump_feeds_40_ms_batches_until_the_track_ends() -> None:
    class Track(MediaStreamTrack):
        kind = "audio"

        def __init__(self, frames: list[AudioFrame]) -> None:
            super().__init__()
            self.frames = frames

        async def recv(self) -> AudioFrame:
            if not self.frames:
                raise MediaStreamError
            return self.frames.pop(0)

    stereo = [
        audio_frame(np.full((1, 1920), n, np.int16), "stereo") for n in range(5)
    ]  # 5 frames of 20 ms
    fed: list[tuple[np.ndarray, int]] = []

    async def feed(samples: np.ndarray, rate: int) -> None:
        fed.append((samples, rate))

    await pump_input(Track(stereo), feed)
    assert [(len(s), r) for s, r in fed] == [(1920, 48000), (1920, 48000)]
    assert fed[1][0][0] == 2 and fed[1][0][-1] == 3  # in order; the odd last frame is dropped


async def test_agent_track_paces_queued_audio_and_falls_silent_on_clear() -> None:
    queue = FrameQueue(sample_rate=48000, frame_ms=20, lead_ms=200)
    track = AgentAudioTrack(queue)
    await queue.write(np.full(960 * 3, 1200, np.int16))
    started = time.monotonic()
    first, second = await track.recv(), await track.recv()
    assert first.pts == 0 and second.pts == 960 and first.sample_rate == 48000
    assert np.all(first.to_ndarray() == 1200)
    queue.clear()
    third = await track.recv()
    assert not third.to_ndarray().any()  # cleared: silence at the next frame
    for _ in range(2):
        await track.recv()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.075  # 5 frames = 4 waits of 20 ms: real-time pace, never faster
    assert queue.played_samples() == 2 * 960


async def test_a_sideband_websocket_joins_the_call_session(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """``/v1/realtime?call_id=…``: the caller's own server joins the call's session,
    sees its events, and steers it (instructions, a typed question)."""
    import websockets

    llm.add(Turn.say("Sideband says hello.", when=user_says("from the sideband")))
    caller = RtcCaller(server.http_url)
    try:
        await caller.connect()
        created = await caller.wait_for("session.created", 10)
        call_id = (caller.location or "").rsplit("/", 1)[-1]
        url = f"{server.ws_url}/v1/realtime"
        async with websockets.connect(f"{url}?call_id=rtc_nope") as wrong:
            assert json.loads(await wrong.recv())["error"]["code"] == "call_not_found"
        async with websockets.connect(f"{url}?call_id={call_id}", max_size=None) as side:
            joined = json.loads(await side.recv())
            assert joined["type"] == "session.created"
            assert joined["session"]["id"] == created["session"]["id"]
            await side.send(json.dumps({"type": "session.update", "session": {
                "type": "realtime", "instructions": "Answer from the sideband."}}))
            await caller.wait_for("session.updated", 10)
            await side.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "a question from the sideband"}]}}))
            await side.send(json.dumps({"type": "response.create",
                                        "response": {"output_modalities": ["text"]}}))
            while (event := json.loads(await asyncio.wait_for(side.recv(), 60)))["type"] != (
                "response.done"
            ):
                pass
            done = await caller.wait_for("response.done", 10)
            assert event["response"]["id"] == done["response"]["id"]
            assert event["response"]["output"][0]["content"][0]["text"] == "Sideband says hello."
            assert llm.chat_requests[-1].messages[0]["content"] == "Answer from the sideband."
        assert len(registry(server)) == 1  # the sideband left; the call goes on
    finally:
        await caller.close()
    await eventually(lambda: len(registry(server)) == 0, 15)
