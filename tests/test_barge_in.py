"""Barge-in as a protocol client sees it, against the real server (Silero VAD,
Whisper tiny.en, Piper; the scripted LLM).

The client follows OpenAI's guidance: it plays the reply's audio deltas in real
time and, on ``input_audio_buffer.speech_started``, stops playback and sends
``conversation.item.truncate`` with what it played. So the server must never send
``speech_started`` for a cough or an "mm-hm" over a reply (the client would lose
the reply), and once it has, no audio delta of that reply may follow.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.fakes.llm_script import Turn, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import (
    LONG_REPLY,
    RATE,
    pcm24k,
    raw_connect,
    recv_json,
    stream_raw,
    synthesized_24k,
)
from voice.settings import load_settings
from web.app import create_app


@pytest.fixture(scope="module")
def unguarded(
    llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The real server without the echo guard (a client with echo cancellation of its
    own): nothing but the barge-in rules keeps a backchannel from interrupting."""
    base = tmp_path_factory.mktemp("unguarded")
    settings = load_settings(
        llm_base_url=llm.base_url, cache_dir=base / "cache", data_dir=base / "data",
        realtime_echo_guard=False, realtime_speakers=False, rate_limit_per_minute=0,
    )
    with ServerThread(create_app(settings)) as running:
        yield running


def cough_24k(pad_s: float = 1.0) -> np.ndarray:
    """Two cough-like bursts (shaped, band-limited noise, 180 ms and 140 ms)."""
    rng = np.random.default_rng(7)
    parts = []
    for length_s, gap_s in ((0.18, 0.12), (0.14, 0.0)):
        n = int(length_s * RATE)
        noise = rng.standard_normal(n)
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[(freqs < 250) | (freqs > 3500)] = 0  # a throat's band
        burst = np.fft.irfft(spectrum, n)
        envelope = np.minimum(1.0, np.arange(n) / (0.01 * RATE)) * np.exp(-np.arange(n) / (0.06 * RATE))
        burst = burst / np.abs(burst).max() * envelope * 0.6
        parts += [burst, np.zeros(int(gap_s * RATE))]
    sound = np.concatenate([*parts, np.zeros(int(pad_s * RATE))])
    return (sound * 32767).astype(np.int16)


@dataclass
class GuidedClient:
    """Plays reply audio in real time; on ``speech_started`` stops and truncates."""

    ws: Any
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    received_ms: float = 0.0
    playing_since: float | None = None
    stopped: bool = False
    item_id: str | None = None
    truncated_at_ms: float | None = None

    def played_ms(self, now: float) -> float:
        if self.playing_since is None:
            return 0.0
        return min(self.received_ms, 1000.0 * (now - self.playing_since))

    async def handle(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        self.events.append((now, event))
        kind = event["type"]
        if kind == "response.output_audio.delta" and not self.stopped:
            self.item_id = event["item_id"]
            if self.playing_since is None:
                self.playing_since = now
            self.received_ms += len(base64.b64decode(event["delta"])) / 2 / RATE * 1000
        elif kind == "input_audio_buffer.speech_started" and self.item_id and not self.stopped:
            self.stopped = True
            self.truncated_at_ms = self.played_ms(now)
            await self.ws.send(json.dumps({
                "type": "conversation.item.truncate",
                "item_id": self.item_id,
                "content_index": 0,
                "audio_end_ms": int(self.truncated_at_ms),
            }))

    def types(self) -> list[str]:
        return [e["type"] for _, e in self.events]


MEDIUM_REPLY = (
    "Sure. Here is an answer about the weather. The morning starts cool and cloudy. "
    "By noon the clouds break up and the sun comes out."
)
"""About 7 s of speech: long enough to go on well after a sound 1 s into it."""


async def _reply_with(
    server: ServerThread,
    llm: ScriptedLlmServer,
    topic: str,
    sound: np.ndarray,
    *,
    stop: str,
    reply: str = LONG_REPLY,
) -> GuidedClient:
    """Ask for ``reply`` about ``topic``; 1 s into its audio, stream ``sound``; collect
    events until both ``response.done`` and ``stop`` arrived (or ``stop`` is that event)."""
    llm.add(Turn.say(reply, when=user_says(topic)))
    ws = await raw_connect(server)
    client = GuidedClient(ws)
    sender: asyncio.Task[None] | None = None
    try:
        await recv_json(ws)
        await ws.send(json.dumps({
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user",
                     "content": [{"type": "input_text", "text": f"tell me about {topic}"}]},
        }))
        await ws.send(json.dumps({"type": "response.create"}))
        done = stopped = False
        while True:
            event = await recv_json(ws, 90)
            await client.handle(event)
            if event["type"] == "response.output_audio.delta" and sender is None:
                sender = asyncio.create_task(_after(1.0, stream_raw(ws, sound)))
            done = done or event["type"] == "response.done"
            stopped = stopped or event["type"] == stop
            if done and stopped:  # in either order: the truncate may be answered first
                break
        assert sender is not None
        await sender
        return client
    finally:
        if sender is not None:
            sender.cancel()
        await ws.close()


async def _after(delay_s: float, work: Any) -> None:
    await asyncio.sleep(delay_s)
    await work


@pytest.mark.parametrize("sound", ["okay", "mm-hmm", "cough"])
async def test_a_cough_or_backchannel_never_makes_the_client_lose_the_reply(
    unguarded: ServerThread, llm: ScriptedLlmServer, sound: str
) -> None:
    # On the server without the echo guard: the sounds are in the agent's own (Piper)
    # voice, which the guard would often discount as echo, hiding what the barge-in
    # rules decide. Whisper tiny.en hears "Mm-hmm." as "in a month.", "MMM." or
    # "in Emma.": words beyond a backchannel, in about 350 ms of voice, which only
    # barge_in_words_min_ms (500) tells from an interruption.
    audio = cough_24k() if sound == "cough" else await asyncio.to_thread(
        synthesized_24k, {"okay": "Okay.", "mm-hmm": "Mm-hmm."}[sound]
    )
    client = await _reply_with(unguarded, llm, f"trains {sound}", audio, stop="response.done",
                               reply=MEDIUM_REPLY)
    types = client.types()
    assert "input_audio_buffer.speech_started" not in types
    assert not client.stopped
    done = client.events[-1][1]
    assert done["response"]["status"] == "completed"
    spoken = next(e for _, e in client.events if e["type"] == "response.output_audio_transcript.done")
    assert spoken["transcript"] == MEDIUM_REPLY
    # Audio went on after the sound: it ended well over a second after it started.
    deltas = [t for t, e in client.events if e["type"] == "response.output_audio.delta"]
    assert deltas[-1] - deltas[0] > 3.0


async def test_speech_over_a_reply_stops_its_audio_before_speech_started(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    # The clip's first 3 s of speech, then a second of silence: plainly not a backchannel.
    speech = pcm24k("lhotse/2412-153948-0000.wav", pad_s=0.0)[: 3 * RATE]
    interruption = np.concatenate([speech, np.zeros(RATE, dtype=np.int16)])
    client = await _reply_with(
        server, llm, "boats", interruption, stop="conversation.item.truncated"
    )
    types = client.types()
    assert "error" not in types, [e for _, e in client.events if e["type"] == "error"]
    started = types.index("input_audio_buffer.speech_started")
    reply_id = next(e["response"]["id"] for _, e in client.events if e["type"] == "response.created")
    audio_of_reply = [
        i for i, (_, e) in enumerate(client.events)
        if e["type"] == "response.output_audio.delta" and e["response_id"] == reply_id
    ]
    assert audio_of_reply and max(audio_of_reply) < started  # nothing after speech_started
    done = next(
        e for _, e in client.events
        if e["type"] == "response.done" and e["response"]["id"] == reply_id
    )
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    truncated = next(e for _, e in client.events if e["type"] == "conversation.item.truncated")
    assert truncated["item_id"] == client.item_id
    assert client.truncated_at_ms is not None and client.truncated_at_ms < client.received_ms + 1
