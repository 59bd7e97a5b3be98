"""Barge-in bench: how fast the agent's audio stops when the user really talks over it.

One WebSocket client, ``--trials`` times: ask for a long reply (the scripted LLM of the
tests speaks a fixed paragraph of about 20 s, so every trial has a long reply), let the
agent talk for ``--talk-s`` seconds, then stream real speech over it at real-time pace.
The client behaves as OpenAI's guidance says: on ``input_audio_buffer.speech_started`` it
stops playback and sends ``conversation.item.truncate`` with what it played.

Per trial (times are when the client received the event; onset = when the first voiced
sample of the interrupting clip was sent, found by the Silero VAD on the clip):

- ``stop_ms``: onset → last ``response.output_audio.delta`` of the interrupted reply;
- ``speech_started_ms``: onset → ``input_audio_buffer.speech_started``;
- ``deltas_after_speech_started``: audio deltas of the reply received after it (must be 0).

Writes ``bench/results/barge_in.json`` (machine, commit, load average).

    .venv/bin/python -m bench.barge_in --trials 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from typing import Any

import websockets

from bench.common import INTERRUPTION, percentiles, speech_clip, write_result

RATE = 24000
CHUNK_MS = 20
LONG_REPLY = " ".join(
    [
        "Here is the long story you asked for.",
        "The morning starts cool and cloudy over the hills.",
        "By noon the clouds break up and the sun comes out over the valley.",
        "In the afternoon a light breeze blows in from the west and the lake turns blue.",
        "The evening will be clear and a little colder than today.",
        "Tomorrow looks much the same, with a small chance of rain late at night.",
        "After that a long spell of warm and settled weather is expected for the whole week.",
    ]
)


async def _send(ws: Any, pcm: bytes) -> float:
    """Stream 24 kHz PCM16 at real-time pace; returns when its first sample was sent."""
    step = RATE * CHUNK_MS // 1000 * 2
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), step)):
        chunk = base64.b64encode(pcm[offset : offset + step]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        delay = start + (n + 1) * CHUNK_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    return start


async def trial(ws: Any, speech: bytes, speech_start_ms: float, talk_s: float) -> dict[str, Any]:
    """One long reply interrupted by real speech; the client stops playback on speech_started."""
    await ws.send(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "tell me a long story"}],
                },
            }
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))
    response_id: str | None = None
    first_audio: float | None = None
    played_ms = 0.0
    sender: asyncio.Task[float] | None = None
    last_delta: float | None = None
    speech_started: float | None = None
    after = 0
    playing = True
    assistant_item = ""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 90)
        at = time.monotonic()
        event = json.loads(raw)
        kind = event["type"]
        if kind == "response.created" and response_id is None:
            response_id = event["response"]["id"]
        if kind == "response.output_audio.delta" and event.get("response_id") == response_id:
            if first_audio is None:
                first_audio = at
                assistant_item = event["item_id"]
            last_delta = at
            if speech_started is not None:
                after += 1
            if playing:
                played_ms += len(base64.b64decode(event["delta"])) / 2 / RATE * 1000
            if sender is None and at - first_audio >= talk_s:
                sender = asyncio.create_task(_send(ws, speech))
        if kind == "input_audio_buffer.speech_started" and sender is not None and speech_started is None:
            speech_started = at
            playing = False  # OpenAI guidance: stop playback, truncate to what was heard
            assert first_audio is not None
            heard = min(played_ms, 1000 * (at - first_audio))
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": assistant_item,
                        "content_index": 0,
                        "audio_end_ms": int(heard),
                    }
                )
            )
        if kind == "response.done" and event["response"]["id"] == response_id:
            status = event["response"]["status"]
            break
    assert sender is not None and last_delta is not None, "the reply ended before the interruption"
    onset = await sender + speech_start_ms / 1000
    await _drain(ws)
    return {
        "status": status,
        "stop_ms": round(max(0.0, 1000 * (last_delta - onset)), 1),
        "speech_started_ms": None if speech_started is None else round(1000 * (speech_started - onset), 1),
        "deltas_after_speech_started": after,
    }


async def _drain(ws: Any) -> None:
    """Cancel the answer to the interruption (if one starts), so trials do not overlap."""
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), 6)
        except TimeoutError:
            return
        kind = json.loads(raw)["type"]
        if kind == "response.created":
            await ws.send(json.dumps({"type": "response.cancel"}))
        if kind == "response.done":
            return


async def run(url: str, trials: int, talk_s: float, warm_s: float) -> dict[str, Any]:
    pcm, start_ms, _ = speech_clip(INTERRUPTION, RATE, max_s=4.0, pad_s=1.5)
    speech = pcm.astype("<i2").tobytes()
    rows = []
    async with websockets.connect(f"{url}/v1/realtime", max_size=None) as ws:
        await ws.recv()  # session.created
        if warm_s > 0:  # a client streams its microphone from the start: the VAD exists
            await _send(ws, bytes(int(warm_s * RATE) * 2))
        for _ in range(trials):
            rows.append(await trial(ws, speech, start_ms, talk_s))
            print(json.dumps(rows[-1]))
    return {
        "trials": rows,
        "stop_ms": percentiles([r["stop_ms"] for r in rows]),
        "speech_started_ms": percentiles([r["speech_started_ms"] for r in rows if r["speech_started_ms"] is not None]),
        "deltas_after_speech_started": sum(r["deltas_after_speech_started"] for r in rows),
        "cancelled": sum(r["status"] == "cancelled" for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--talk-s", type=float, default=1.5, help="agent speech before the interruption")
    parser.add_argument(
        "--warm-s", type=float, default=1.0, help="silence streamed before the first trial (0: none)"
    )
    args = parser.parse_args()

    from tests.fakes.llm_script import Turn
    from tests.fakes.scripted_llm import ScriptedLlmServer
    from tests.servers import ServerThread
    from voice.settings import load_settings
    from web.app import create_app

    load_before = os.getloadavg()
    with ScriptedLlmServer(default=Turn.say(LONG_REPLY)) as llm:
        settings = load_settings(llm_base_url=llm.base_url, rate_limit_per_minute=0)
        with ServerThread(create_app(settings), startup_timeout_s=300) as server:
            results = asyncio.run(run(server.ws_url, args.trials, args.talk_s, args.warm_s))
    print(json.dumps({k: v for k, v in results.items() if k != "trials"}, indent=2))
    path = write_result(
        "barge_in",
        results,
        transport="websocket",
        settings="defaults; scripted LLM (fixed long reply)",
        warm_s=args.warm_s,
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
