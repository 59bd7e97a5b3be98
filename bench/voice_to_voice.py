"""Voice-to-voice latency, measured by the rule the Pipecat peer harness uses
(../shared/peers/pipecat/client.py), so the two can be compared in one run.

Every clip gets a new realtime session, opened with the ``openai`` SDK as a user would, with
the server's default turn detection (server VAD; ``--semantic`` sends a ``session.update``
for ``semantic_vad``). The client acts as a live microphone: 20 ms chunks of PCM16 mono
24 kHz at real-time pace, 1 s of silence, then the clip, then silence until the reply's
``response.done`` (or 30 s after the clip ends).

    voice-to-voice (ms) = arrival of the first ``response.output_audio.delta`` after the
                          reference end of speech
                        - the time the client sent the 20 ms chunk holding the clip's last
                          speech sample

Speech = 20 ms frames of the 16 kHz clip whose RMS (dBFS) is above
max(peak - 35 dB, noise floor + 10 dB), the floor being the frames' 10th percentile.
``speech_end_ms`` is the end of the last such frame, from the clip's start.

Per clip it also counts the responses the server started (more than one = a premature
reply), their ``response.done`` statuses, the user turns committed, and whether bot audio
arrived before the end of speech. One uncounted warm-up turn (``speechbrain/LJ050-0131.wav``,
the peer's) comes first. Starts the server in-process on the embedded offline defaults
unless ``--url`` is given.

``--sessions N`` (N > 1) opens N sessions at once after the warm-up, each a live microphone
speaking its share of the clips (session i: clips i, i + N, ...) one after another as
separate turns of ONE session, each once the previous reply's ``response.done`` + 1 s of
silence has passed. Rows and summary are the same per turn, plus the responses that did not
complete (``status:code``) and the 1-minute load average sampled each second of the run.

    .venv/bin/python -m bench.voice_to_voice [--url ws://HOST:PORT] [--clips N] [--extra]
                                             [--semantic] [--sessions N] [--out NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import tempfile
import time
import wave
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeErrorEvent, ResponseDoneEvent
from websockets.exceptions import ConnectionClosed

from bench.common import DATA, percentiles, write_result
from pipelines.llm_endpoint import llm_description
from voice.settings import load_settings

CLIPS = (
    *(f"speechbrain/spk{s}_snt{n}.wav" for s in (1, 2) for n in range(1, 6)),
    "deepspeech/LDC93S1.wav",
    "deepspeech/arctic_a0024.wav",
)
LONG = ("speechbrain/LJ050-0131.wav", "lhotse/2412-153948-0000.wav", "openai-whisper/jfk.wav")
WARM_UP = "speechbrain/LJ050-0131.wav"
IN_RATE, RATE = 16000, 24000
CHUNK_S = 0.02
LEAD_IN_CHUNKS = 50  # 1 s of silence before the clip
TIMEOUT_S = 30.0  # after the clip ends
SETTLE_S = 1.0  # silence kept streaming after the last response.done, to catch a second reply
METHOD = (
    "first response.output_audio.delta after the end of speech - send time of the 20 ms chunk "
    "holding the last speech sample (RMS > max(peak - 35 dB, p10 floor + 10 dB)); "
    "one session per clip, real-time 20 ms chunks, 1 s silence lead-in"
)
SILENCE = base64.b64encode(bytes(2 * int(RATE * CHUNK_S))).decode()


@dataclass
class Clip:
    name: str
    chunks: list[str]
    """Base64 20 ms chunks of 24 kHz PCM16 (the last one zero-padded)."""
    speech_end_chunk: int
    """Index of the chunk holding the last speech sample."""


def speech_end_frame(audio: np.ndarray) -> int:
    """Index of the last 20 ms frame of ``audio`` (16 kHz float) whose RMS is speech."""
    size = int(IN_RATE * CHUNK_S)
    n = len(audio) // size
    frames = audio[: n * size].astype(np.float32).reshape(n, size)
    rms_db = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    threshold = max(rms_db.max() - 35.0, np.percentile(rms_db, 10) + 10.0)
    return int(np.nonzero(rms_db > threshold)[0][-1])


def prepare(relative: str) -> Clip:
    from voice.audio.resample import resample

    with wave.open(str(DATA / relative), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (IN_RATE, 1, 2), relative
        audio = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32768
    pcm = (np.clip(resample(audio, IN_RATE, RATE), -1, 1) * 32767).astype("<i2").tobytes()
    step = 2 * int(RATE * CHUNK_S)
    chunks = [pcm[i : i + step].ljust(step, b"\0") for i in range(0, len(pcm), step)]
    return Clip(relative, [base64.b64encode(c).decode() for c in chunks], speech_end_frame(audio))


class Microphone:
    """A live microphone on one realtime connection: one 20 ms chunk every 20 ms, at
    real-time pace from the first chunk on, taken from the queued audio or silence when
    none is queued. Run :meth:`stream` as a task; cancelling it stops the microphone."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pending: deque[str] = deque()
        self.mark: int | None = None
        """Chunks still to send before the marked one (the last speech chunk) goes out."""
        self.mark_sent: float | None = None
        """``time.monotonic()`` when the marked chunk was sent."""

    def say(self, clip: Clip) -> float:
        """Queue 1 s of silence then ``clip``; returns when its last chunk will have been sent."""
        self.pending.extend([SILENCE] * LEAD_IN_CHUNKS + clip.chunks)
        self.mark, self.mark_sent = len(self.pending) - len(clip.chunks) + clip.speech_end_chunk, None
        return time.monotonic() + len(self.pending) * CHUNK_S

    async def stream(self) -> None:
        """Chunk k is sent once it has been "recorded", at start + (k + 1) * 20 ms."""
        start = time.monotonic()
        for k in itertools.count():
            delay = start + (k + 1) * CHUNK_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.conn.input_audio_buffer.append(audio=self.pending.popleft() if self.pending else SILENCE)
            if self.mark is not None:
                if self.mark == 0:
                    self.mark_sent = time.monotonic()
                self.mark = self.mark - 1 if self.mark > 0 else None


def _not_completed(event: ResponseDoneEvent) -> str | None:
    """``status:code`` (error code, else reason) of a response that did not complete."""
    response = event.response
    if response.status == "completed":
        return None
    details = response.status_details
    code = (details.error.code if details and details.error else None) or (details.reason if details else None)
    return f"{response.status}:{code or 'unknown'}"


async def one_turn(conn: Any, mic: Microphone, clip: Clip) -> dict[str, Any]:
    """Speak ``clip`` into the open session and read events until its reply's
    ``response.done`` + :data:`SETTLE_S` (or :data:`TIMEOUT_S` after the clip): the row for
    the result file. ``speculative``: whether the reply's LLM request had started on the
    pause's transcript (the ``voice.latency`` event says; None without one)."""
    clip_end = mic.say(clip)
    audio_at: list[float] = []
    statuses: list[str] = []
    not_completed: list[str] = []
    errors: list[str] = []
    responses = committed = open_responses = 0
    last_done: float | None = None
    waterfalls: list[dict[str, Any]] = []
    pieces: list[str] = []
    heard = ""
    speculative: list[bool] = []
    timed_out = False
    while True:
        ref = mic.mark_sent
        ready = open_responses == 0 and ref is not None and last_done is not None and last_done > ref
        until = max(last_done or 0.0, clip_end) + SETTLE_S if ready else clip_end + TIMEOUT_S
        try:
            raw = await asyncio.wait_for(conn.recv_bytes(), max(0.0, until - time.monotonic()))
        except TimeoutError:
            timed_out = not ready
            break
        except ConnectionClosed as exc:
            errors.append(f"connection closed: {exc}")
            break
        now = time.monotonic()
        data = json.loads(raw)
        if data.get("type") == "voice.latency":
            waterfalls.append(data["latency_ms"])
            speculative.append(bool(data.get("speculative")))
            continue
        event = conn.parse_event(raw)
        if event.type == "response.output_audio.delta":
            audio_at.append(now)
        elif event.type == "response.created":
            responses += 1
            open_responses += 1
        elif isinstance(event, ResponseDoneEvent):
            open_responses = max(0, open_responses - 1)
            statuses.append(str(event.response.status))
            if (code := _not_completed(event)) is not None:
                not_completed.append(code)
            last_done = now
        elif event.type == "response.output_audio_transcript.delta":
            pieces.append(event.delta)
        elif event.type == "conversation.item.input_audio_transcription.completed":
            heard = event.transcript
        elif event.type == "input_audio_buffer.committed":
            committed += 1
        elif isinstance(event, RealtimeErrorEvent):
            errors.append(event.error.message)
    ref = mic.mark_sent
    after = [t for t in audio_at if ref is not None and t > ref]
    return {
        "clip": clip.name,
        "speech_end_ms": round((clip.speech_end_chunk + 1) * CHUNK_S * 1000),
        "v2v_ms": round(1000 * (after[0] - ref), 1) if after and ref is not None else None,
        "responses": responses,
        "statuses": statuses,
        "not_completed": not_completed,
        "turns_committed": committed,
        "audio_before_speech_end": len(after) < len(audio_at),
        "timed_out": timed_out,
        "errors": errors,
        "waterfall_ms": waterfalls[0] if waterfalls else None,
        "heard": heard,
        "reply_pieces": pieces[:3],
        "speculative": any(speculative) if speculative else None,
    }


async def one_session(
    client: AsyncOpenAI, clips: list[Clip], semantic: bool
) -> list[dict[str, Any]]:
    """One session, a live microphone speaking ``clips`` one after another as separate
    turns, each once the previous reply is done (+ :data:`SETTLE_S`): one row per clip."""
    async with client.realtime.connect(model="voice-agent") as conn:
        first = await asyncio.wait_for(conn.recv(), 60)
        assert first.type == "session.created", first
        session: dict[str, Any] = {"type": "realtime", "voice_extensions": ["latency"]}
        if semantic:
            session["audio"] = {"input": {"turn_detection": {"type": "semantic_vad"}}}
        await conn.send({"type": "session.update", "session": session})  # type: ignore[arg-type]
        mic = Microphone(conn)
        sender = asyncio.create_task(mic.stream())
        try:
            return [await one_turn(conn, mic, clip) for clip in clips]
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sender


async def one_clip(client: AsyncOpenAI, clip: Clip, semantic: bool) -> dict[str, Any]:
    """One session, one clip: the row for the result file."""
    return (await one_session(client, [clip], semantic))[0]




def stage_medians(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median of each waterfall stage (ms after the server's end of speech) over ``rows``."""
    falls = [r["waterfall_ms"] for r in rows if r.get("waterfall_ms")]
    stages = list(falls[0]) if falls else []
    out: dict[str, float | None] = {}
    for stage in stages:
        values = [f[stage] for f in falls if f.get(stage) is not None]
        out[stage] = round(float(np.median(values)), 1) if values else None
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    not_completed = Counter(code for r in rows for code in r.get("not_completed", ()))
    return {
        "v2v_ms": percentiles([r["v2v_ms"] for r in rows if r["v2v_ms"] is not None]),
        "waterfall_p50_ms": stage_medians(rows),
        "speculative_used": sum(bool(r.get("speculative")) for r in rows),
        "clips": len(rows),
        "no_reply": sum(r["v2v_ms"] is None for r in rows),
        "not_completed": dict(sorted(not_completed.items())),
        "premature": sum(r["responses"] > 1 for r in rows),
        "audio_before_speech_end": sum(r["audio_before_speech_end"] for r in rows),
    }


async def _sample_load(samples: list[float]) -> None:
    """Append the 1-minute load average every second until cancelled."""
    while True:
        samples.append(os.getloadavg()[0])
        await asyncio.sleep(1.0)


async def concurrent_group(
    client: AsyncOpenAI, names: list[str], sessions: int, semantic: bool
) -> dict[str, Any]:
    """``sessions`` sessions started together, session i speaking ``names[i::sessions]``
    as its turns: the rows in clip order, their summary and the load during the run."""
    shares = [[prepare(n) for n in names[i::sessions]] for i in range(sessions)]
    load: list[float] = []
    sampler = asyncio.create_task(_sample_load(load))
    try:
        per_session = await asyncio.gather(*(one_session(client, share, semantic) for share in shares))
    finally:
        sampler.cancel()
    rows = [row for i in range(len(names)) for row in [per_session[i % sessions][i // sessions]]]
    for row in rows:
        print({k: row[k] for k in ("clip", "v2v_ms", "statuses", "not_completed", "waterfall_ms", "heard")})
    result: dict[str, Any] = {"sessions": sessions, "clips": rows, "summary": summary(rows)}
    result["load_average_1m_during"] = {"mean": round(float(np.mean(load)), 2), "max": round(max(load), 2)}
    return result


async def run(base_url: str, names: dict[str, list[str]], semantic: bool, sessions: int = 1) -> dict[str, Any]:
    client = AsyncOpenAI(base_url=base_url, api_key="unused")
    warm = await one_clip(client, prepare(WARM_UP), semantic)
    print(f"warm-up {warm['clip']}: {warm['v2v_ms']} ms")
    results: dict[str, Any] = {"warm_up": warm}
    for group, clips in names.items():
        if sessions > 1:
            results[group] = await concurrent_group(client, clips, sessions, semantic)
            continue
        rows = []
        for name in clips:
            rows.append(await one_clip(client, prepare(name), semantic))
            print({k: rows[-1][k] for k in ("clip", "v2v_ms", "responses", "statuses", "speculative",
                                             "waterfall_ms", "heard", "reply_pieces")}, flush=True)
        results[group] = {"clips": rows, "summary": summary(rows)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="ws://HOST:PORT of a running server (default: start one in-process)")
    parser.add_argument("--clips", type=int, help="only the first N default clips")
    parser.add_argument("--extra", action="store_true", help="also the long utterances, reported as 'long'")
    parser.add_argument("--semantic", action="store_true", help="turn detection semantic_vad")
    parser.add_argument("--out", default="voice_to_voice", help="result name under bench/results/")
    parser.add_argument("--sessions", type=int, default=1,
                        help="N sessions at once, session i speaking clips i, i+N, ... as its turns")
    args = parser.parse_args()
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    names = {"short": list(CLIPS[: args.clips])}
    if args.extra:
        names["long"] = list(LONG)
    missing = [n for n in [WARM_UP, *names["short"], *names.get("long", [])] if not (DATA / n).exists()]
    if missing:
        parser.error(f"missing clips under {DATA}: {missing}")

    load_before = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        if args.url:
            url = args.url.rstrip("/").removesuffix("/v1/realtime").removesuffix("/v1")
            url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        else:
            from tests.servers import ServerThread
            from web.app import create_app

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            settings = load_settings(data_dir=tmp / "data", cache_dir=tmp / "cache")
            url = stack.enter_context(ServerThread(create_app(settings), startup_timeout_s=300)).http_url
        results = asyncio.run(run(f"{url}/v1", names, args.semantic, args.sessions))
    path = write_result(
        args.out, results, url=args.url or "in-process embedded defaults",
        turn_detection="semantic_vad" if args.semantic else "server default", sessions=args.sessions,
        stt_device=os.environ.get("VOICE_STT_DEVICE", "auto"),
        llm_server=None if args.url else llm_description(load_settings()),
        load_average_1m={"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        method=METHOD,
    )
    line = ", ".join(
        f"{g}: n={s['v2v_ms']['n']} P50 {s['v2v_ms']['p50']} ms P95 {s['v2v_ms']['p95']} ms "
        f"premature {s['premature']} no reply {s['no_reply']} not completed {s['not_completed']} "
        f"speculative {s['speculative_used']}"
        f" stages {s['waterfall_p50_ms']}"
        for g, s in ((g, results[g]["summary"]) for g in names)
    )
    print(f"voice-to-voice {line} -> {path}")


if __name__ == "__main__":
    main()
