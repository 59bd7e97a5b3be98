"""A realtime WebSocket client that streams a recording at real-time pace and collects
the live speaker-labelled turns (shared by the live diarization tests and the bench)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import websockets

from tests.conftest import load_clip
from voice.audio.resample import resample

RATE = 24000
CHUNK_MS = 40


@dataclass(frozen=True)
class LiveTurn:
    """One transcribed user turn: times in s of the streamed audio."""

    item_id: str
    start: float
    end: float
    speaker: str | None
    text: str
    echo: bool = False
    segments: tuple[tuple[float, float, str], ...] = ()
    """Who spoke when inside the turn (``speaker_segments``), when the voice changed."""


@dataclass
class LiveRun:
    turns: list[LiveTurn] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def speaker_turns(self) -> list[tuple[float, float, str]]:
        """``(start, end, speaker)`` of every labelled stretch, clipped to its turn."""
        out: list[tuple[float, float, str]] = []
        for t in self.turns:
            if t.echo or not t.speaker:
                continue
            if not t.segments:
                out.append((t.start, t.end, t.speaker))
                continue
            for start, end, speaker in t.segments:
                a, b = max(start, t.start), min(end, t.end)
                if b > a:
                    out.append((a, b, speaker))
        return out

    def by_speaker(self) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for turn in sorted(self.turns, key=lambda t: t.start):  # finals may come out of order
            if turn.speaker and not turn.echo:
                out.setdefault(turn.speaker, []).append(turn.text)
        return {speaker: " ".join(texts) for speaker, texts in out.items()}


def pcm24k(audio16k: np.ndarray, pad_s: float = 1.5) -> np.ndarray:
    """16 kHz float audio as 24 kHz int16, followed by ``pad_s`` of silence."""
    audio = resample(audio16k, 16000, RATE)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return np.concatenate([pcm, np.zeros(int(pad_s * RATE), dtype=np.int16)])


def data_url(relative: str) -> str:
    """A clip from ../shared/data as an MP3 data URL (48 kbit/s keeps events small)."""
    pcm = (load_clip(relative) * 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        stream.bit_rate = 48000
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return "data:audio/mpeg;base64," + base64.b64encode(buf.getvalue()).decode()


EXTENSIONS = ["speakers", "echo", "partials", "latency"]
"""The protocol extensions these live tests read (speaker labels, echo marks...)."""


def transcribe_only(**extra: Any) -> dict[str, Any]:
    """A ``session.update`` for live transcription: no agent replies, no interruptions,
    with the extensions this client reads (:data:`EXTENSIONS`)."""
    session: dict[str, Any] = {
        "type": "realtime",
        "voice_extensions": EXTENSIONS,
        "audio": {
            "input": {
                "turn_detection": {
                    "type": "server_vad",
                    "create_response": False,
                    "interrupt_response": False,
                }
            }
        },
    }
    session.update(extra)
    return {"type": "session.update", "session": session}


async def send_pcm(ws: Any, pcm: np.ndarray, *, pace: float = 1.0) -> None:
    """Append ``pcm`` (24 kHz int16) in 40 ms chunks at ``pace`` × real time."""
    step = RATE * CHUNK_MS // 1000
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), step)):
        chunk = pcm[offset : offset + step].astype("<i2").tobytes()
        await ws.send(
            json.dumps(
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}
            )
        )
        delay = start + (n + 1) * CHUNK_MS / 1000 / pace - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def stream_live(
    ws_url: str,
    clip: str,
    session_update: dict[str, Any] | list[dict[str, Any]] | None = None,
    *,
    pace: float = 1.0,
    settle_s: float = 90.0,
) -> LiveRun:
    """Stream ``clip`` through a new session and collect every event and finished turn.

    After the audio, waits until every committed turn is transcribed (at most
    ``settle_s``), then closes the connection.
    """
    run = LiveRun()
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    committed: set[str] = set()
    done: set[str] = set()
    settled = asyncio.Event()
    async with websockets.connect(f"{ws_url}/v1/realtime?model=x", max_size=None) as ws:
        updates = session_update or transcribe_only()
        for update in updates if isinstance(updates, list) else [updates]:
            await ws.send(json.dumps(update))

        async def reader() -> None:
            async for raw in ws:
                event = json.loads(raw)
                run.events.append(event)
                kind = event["type"]
                if kind == "error":
                    raise AssertionError(f"server error: {event['error']}")
                if kind == "input_audio_buffer.speech_started":
                    starts[event["item_id"]] = event["audio_start_ms"] / 1000
                elif kind == "input_audio_buffer.speech_stopped":
                    ends[event["item_id"]] = event["audio_end_ms"] / 1000
                elif kind == "input_audio_buffer.committed":
                    committed.add(event["item_id"])
                    settled.clear()
                elif kind == "conversation.item.input_audio_transcription.completed":
                    item = event["item_id"]
                    done.add(item)
                    if committed <= done:
                        settled.set()
                    run.turns.append(
                        LiveTurn(
                            item,
                            starts.get(item, 0.0),
                            ends.get(item, starts.get(item, 0.0)),
                            event.get("speaker"),
                            event["transcript"],
                            bool(event.get("echo")),
                            tuple(
                                (s["start"], s["end"], s["speaker"])
                                for s in event.get("speaker_segments") or ()
                            ),
                        )
                    )

        task = asyncio.create_task(reader())
        try:
            await send_pcm(ws, pcm24k(load_clip(clip)), pace=pace)
            if committed - done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), settle_s)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return run
