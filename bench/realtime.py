"""Realtime WebSocket bench: N simulated clients streaming real speech at real-time pace.

Measures, per turn:
- voice-to-voice: end of speech in the sent audio → first ``response.output_audio.delta``;
- barge-in: onset of speech in an interrupting clip → ``input_audio_buffer.speech_started``
  received, and → the last audio delta received;
- the server's stage waterfall (``voice.latency`` events).

Starts the server in-process on the embedded offline defaults unless ``--url`` is given.

    .venv/bin/python -m bench.realtime --clients 1 2 4 --turns 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.common import INTERRUPTION, QUESTIONS, percentiles, speech_clip, write_result

RATE = 24000
CHUNK_MS = 20
INSTRUCTIONS = (
    "You are a helpful voice assistant. Answer every question with a long, detailed story "
    "of at least eight sentences."
)


@dataclass
class Clip:
    pcm: bytes
    """24 kHz PCM16 (speech plus trailing silence)."""
    speech_start_ms: float
    speech_end_ms: float


def prepare(relative: str, *, max_s: float | None = None, pad_s: float = 1.0) -> Clip:
    pcm, start_ms, end_ms = speech_clip(relative, RATE, max_s=max_s, pad_s=pad_s)
    return Clip(pcm.astype("<i2").tobytes(), start_ms, end_ms)


@dataclass
class ClientStats:
    voice_to_voice_ms: list[float] = field(default_factory=list)
    barge_in_detect_ms: list[float] = field(default_factory=list)
    barge_in_stop_ms: list[float] = field(default_factory=list)
    waterfalls: list[dict[str, float | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    """``response.done`` statuses (a failed one's error code is added as ``failed:<code>``)."""

    def done(self, event: dict[str, Any]) -> None:
        response = event.get("response") or {}
        status = str(response.get("status"))
        self.statuses[status] += 1
        if status == "failed":
            error = (response.get("status_details") or {}).get("error") or {}
            self.statuses[f"failed:{error.get('code') or error.get('type')}"] += 1


async def send_clip(ws: Any, clip: Clip) -> float:
    """Stream ``clip`` at real-time pace; returns the wall time its first sample was sent."""
    step = RATE * CHUNK_MS // 1000 * 2
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(clip.pcm), step)):
        chunk = base64.b64encode(clip.pcm[offset : offset + step]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        delay = start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return start


async def one_client(url: str, turns: int, stats: ClientStats, questions: list[Clip], interruption: Clip, barge_in: bool) -> None:
    async with websockets.connect(f"{url}/v1/realtime", max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": INSTRUCTIONS, "voice_extensions": ["latency"]}}))
        inbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

        async def reader() -> None:
            async for raw in ws:
                inbox.put_nowait((time.monotonic(), json.loads(raw)))

        read_task = asyncio.create_task(reader())
        try:
            for turn in range(turns):
                clip = questions[turn % len(questions)]
                started = await send_clip(ws, clip)
                speech_end_at = started + clip.speech_end_ms / 1000
                first_audio: float | None = None
                while True:
                    at, event = await asyncio.wait_for(inbox.get(), 60)
                    if event["type"] == "voice.latency":
                        stats.waterfalls.append(event["latency_ms"])
                    if event["type"] == "error":
                        stats.errors.append(event["error"]["message"])
                    if event["type"] == "response.output_audio.delta" and first_audio is None:
                        first_audio = at
                        stats.voice_to_voice_ms.append(1000 * (at - speech_end_at))
                        if barge_in:
                            break
                    if event["type"] == "response.done":
                        stats.done(event)
                        break
                if barge_in and first_audio is not None:
                    await interrupt(ws, inbox, interruption, stats)
                await asyncio.sleep(0.5)
                await drain(inbox, stats)
        finally:
            read_task.cancel()


async def interrupt(ws: Any, inbox: asyncio.Queue[tuple[float, dict[str, Any]]], clip: Clip, stats: ClientStats) -> None:
    await asyncio.sleep(1.0)  # let the agent talk
    sender = asyncio.create_task(send_clip(ws, clip))
    await asyncio.sleep(0)
    onset_at = time.monotonic() + clip.speech_start_ms / 1000
    last_audio = onset_at
    detected: float | None = None
    while True:
        at, event = await asyncio.wait_for(inbox.get(), 60)
        if event["type"] == "response.output_audio.delta":
            last_audio = at
        if event["type"] == "input_audio_buffer.speech_started" and detected is None:
            detected = at
            stats.barge_in_detect_ms.append(1000 * (at - onset_at))
        if event["type"] == "response.done":
            stats.done(event)
            break
    stats.barge_in_stop_ms.append(max(0.0, 1000 * (last_audio - onset_at)))
    await sender


async def drain(inbox: asyncio.Queue[tuple[float, dict[str, Any]]], stats: ClientStats) -> None:
    """Wait for the reply to the interruption to finish, so turns do not overlap."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, event = await asyncio.wait_for(inbox.get(), 3)
        except TimeoutError:
            return
        if event["type"] == "voice.latency":
            stats.waterfalls.append(event["latency_ms"])
        if event["type"] == "response.done":
            stats.done(event)
            return


async def run_level(url: str, clients: int, turns: int, barge_in: bool) -> dict[str, Any]:
    questions = [prepare(q) for q in QUESTIONS]
    interruption = prepare(INTERRUPTION, max_s=4.0)
    stats = [ClientStats() for _ in range(clients)]
    await asyncio.gather(*(one_client(url, turns, s, questions, interruption, barge_in) for s in stats))
    merged = ClientStats()
    for s in stats:
        merged.voice_to_voice_ms += s.voice_to_voice_ms
        merged.barge_in_detect_ms += s.barge_in_detect_ms
        merged.barge_in_stop_ms += s.barge_in_stop_ms
        merged.waterfalls += s.waterfalls
        merged.errors += s.errors
        merged.statuses += s.statuses
    stages = sorted({k for w in merged.waterfalls for k in w})
    return {
        "clients": clients,
        "turns_per_client": turns,
        "voice_to_voice_ms": percentiles(merged.voice_to_voice_ms),
        "barge_in_speech_started_ms": percentiles(merged.barge_in_detect_ms),
        "barge_in_audio_stop_ms": percentiles(merged.barge_in_stop_ms),
        "waterfall_ms": {s: percentiles([w[s] for w in merged.waterfalls if w.get(s) is not None]) for s in stages},
        "errors": merged.errors,
        "responses": dict(merged.statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="ws://host:port of a running server (default: start one in-process)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--no-barge-in", action="store_true")
    parser.add_argument("--out", default="realtime", help="result name under bench/results/")
    args = parser.parse_args()

    server = None
    url = args.url
    if url is None:
        from tests.servers import ServerThread
        from voice.settings import load_settings
        from web.app import create_app

        server = ServerThread(create_app(load_settings()), startup_timeout_s=300).__enter__()
        url = server.ws_url
    try:
        results = {}
        for n in args.clients:
            results[f"N={n}"] = asyncio.run(run_level(url, n, args.turns, not args.no_barge_in))
            print(json.dumps(results[f"N={n}"], indent=2))
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    path = write_result(args.out, results, transport="websocket", settings="embedded defaults",
                        load_average=os.getloadavg())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
