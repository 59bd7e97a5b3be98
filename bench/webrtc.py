"""WebRTC bench: an aiortc caller on loopback speaking real clips to the server, N calls.

Measures, per call (one fresh session each):
- voice-to-voice: end of speech in the sent audio → first non-silent agent audio frame
  received on the remote track;
- barge-in stop: onset of speech in an interrupting clip sent while the agent talks →
  the last non-silent agent frame received;
- the server's stage waterfall (``voice.latency`` events on the data channel), and
  voice-to-voice minus the server's ``first_audio_sent``: roughly what the WebRTC leg
  (frame pacing, Opus, SRTP, the caller's jitter buffer) adds.

Speech start/end in the clips come from the Silero VAD, as in ``bench.realtime``. The
server runs in-process on loopback; the LLM is a scripted OpenAI-compatible server
(a long reply, so there is always something to interrupt) unless ``--llm embedded``.

    .venv/bin/python -m bench.webrtc --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.common import INTERRUPTION, QUESTIONS, percentiles, speech_clip, write_result
from tests.fakes.llm_script import Turn
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.rtc_client import RATE, RtcCaller
from tests.servers import ServerThread
from voice.settings import load_settings
from voice.tts.stream import WORKER_THREAD_PREFIX
from web.app import create_app

LONG_REPLY = (
    "Here is a long answer so that there is time to interrupt it. The morning starts cool "
    "and cloudy. By noon the clouds break up and the sun comes out. In the afternoon a light "
    "breeze blows from the west. The evening will be clear and a little colder than today. "
    "Tomorrow looks much the same, with a small chance of rain late at night."
)
INSTRUCTIONS = (
    "You are a helpful voice assistant. Answer every question with a long, detailed story "
    "of at least eight sentences."
)
TALK_BEFORE_BARGE_IN_S = 1.0


@dataclass
class Clip:
    pcm: np.ndarray
    """48 kHz int16: speech then ``pad_s`` of silence."""
    speech_start_s: float
    speech_end_s: float


def prepare(relative: str, *, max_s: float | None = None, pad_s: float = 1.0) -> Clip:
    pcm, start_ms, end_ms = speech_clip(relative, RATE, max_s=max_s, pad_s=pad_s)
    return Clip(pcm, start_ms / 1000, end_ms / 1000)


@dataclass
class Figures:
    voice_to_voice_ms: list[float] = field(default_factory=list)
    transport_ms: list[float] = field(default_factory=list)
    barge_in_stop_ms: list[float] = field(default_factory=list)
    waterfalls: list[dict[str, float | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def one_call(url: str, question: Clip, interruption: Clip, figures: Figures) -> None:
    """One call: ask, time the answer, interrupt it, time the silence; then hang up."""
    caller = RtcCaller(url)
    try:
        await caller.connect()
        await caller.wait_for("session.created", 15)
        caller.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "instructions": INSTRUCTIONS,
                            "voice_extensions": ["latency"]},
            }
        )
        played = caller.mic.play(question.pcm)
        latency = await caller.wait_for("voice.latency", 60)
        figures.waterfalls.append(latency["latency_ms"])
        assert played.started_at is not None
        speech_end = played.started_at + question.speech_end_s
        first_voice = await caller.wait_for_voice(after=speech_end, timeout_s=30)
        figures.voice_to_voice_ms.append(1000 * (first_voice - speech_end))
        sent = latency["latency_ms"].get("first_audio_sent")
        if sent is not None:
            figures.transport_ms.append(figures.voice_to_voice_ms[-1] - sent)
        await asyncio.sleep(max(0.0, first_voice + TALK_BEFORE_BARGE_IN_S - time.monotonic()))
        cut = caller.mic.play(interruption.pcm)
        done = await caller.wait_for("response.done", 30)
        done_at = next(t for t, e in caller.events if e is done)
        await asyncio.sleep(0.5)
        assert cut.started_at is not None
        onset = cut.started_at + interruption.speech_start_s
        spoken = [t for t in caller.voiced_frames(first_voice) if t <= done_at + 0.5]
        if done["response"]["status"] != "cancelled":
            figures.errors.append(f"reply was not interrupted: {done['response']['status']}")
        else:
            figures.barge_in_stop_ms.append(max(0.0, 1000 * (spoken[-1] - onset)))
        figures.errors += [e["error"]["message"] for e in caller.of_type("error")]
    finally:
        await caller.close()


@contextlib.contextmanager
def running_server(llm: str) -> Iterator[str]:
    """The server on loopback (host candidates 127.0.0.1); yields its http URL."""
    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {"webrtc_host_addresses": ["127.0.0.1"]}
        if llm == "scripted":
            scripted = stack.enter_context(ScriptedLlmServer(default=Turn.say(LONG_REPLY)))
            options["llm_base_url"] = scripted.base_url
        app = create_app(load_settings(**options))
        server = stack.enter_context(ServerThread(app, startup_timeout_s=300))
        yield server.http_url


async def run(url: str, runs: int) -> dict[str, Any]:
    questions = [prepare(q) for q in QUESTIONS]
    interruption = prepare(INTERRUPTION, max_s=4.0)
    figures = Figures()
    for n in range(runs):
        try:
            await one_call(url, questions[n % len(questions)], interruption, figures)
        except (TimeoutError, AssertionError) as exc:
            figures.errors.append(f"call {n}: {type(exc).__name__} {exc}")
    stages = sorted({k for w in figures.waterfalls for k in w})
    return {
        "calls": runs,
        "voice_to_voice_ms": percentiles(figures.voice_to_voice_ms),
        "after_server_sent_ms": percentiles(figures.transport_ms),
        "barge_in_audio_stop_ms": percentiles(figures.barge_in_stop_ms),
        "waterfall_ms": {
            s: percentiles([w[s] for w in figures.waterfalls if w.get(s) is not None])
            for s in stages
        },
        "errors": figures.errors,
    }


def wait_for_tts_workers(timeout_s: float = 15.0) -> None:
    """Join TTS worker threads still finishing a cancelled sentence.

    They are daemon threads that stop at their next chunk; one still inside the
    ONNX runtime when the interpreter exits aborts the process.
    """
    for thread in threading.enumerate():
        if thread.name.startswith(WORKER_THREAD_PREFIX):
            thread.join(timeout_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="calls to make (default 5)")
    parser.add_argument("--llm", choices=["scripted", "embedded"], default="scripted")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with running_server(args.llm) as url:
        results = asyncio.run(run(url, args.runs))
    wait_for_tts_workers()
    print(json.dumps(results, indent=2))
    path = write_result(
        "webrtc",
        results,
        transport="webrtc (aiortc caller, loopback)",
        llm=args.llm,
        load_average_1m={"before": load_before, "after": os.getloadavg()[0]},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
