"""The meeting transcription stage against plain faster-whisper, on the same audio in
the same run: the ratio of their times is what our stage adds or saves, whatever the
load on the machine (measure on a shared machine as ratios, never absolute seconds).

All three transcribe the bench's long recording (already decoded, 16 kHz) with the same
loaded model and thread count, one after the other:

- ``ours``: :meth:`MeetingPipeline.transcribe_speech` (speech clips filled to 29.5 s,
  batched, word timestamps, second pass over unheard speech);
- ``plain``: ``WhisperModel.transcribe(vad_filter=True, beam_size=1)`` (sequential 30 s
  windows over faster-whisper's own VAD, temperature fallback, no word timestamps);
- ``batched``: ``BatchedInferencePipeline.transcribe(vad_filter=True, beam_size=1,
  word_timestamps=True)`` with our CPU clip batch.

    .venv/bin/python -m bench.meeting_stt            # → bench/results/meeting_stt.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import write_result


def compare(model: str) -> dict[str, Any]:
    """Seconds, encoder windows and words of each way, and their ratios to ``plain``."""
    from faster_whisper import BatchedInferencePipeline

    from bench.meeting import build_long_recording
    from pipelines.meeting.pipeline import PLANNING_VAD, MeetingPipeline
    from pipelines.meeting.stages import decode_with_vad
    from voice.settings import load_settings
    from voice.stt import WhisperTranscriber
    from voice.vad import make_classifier

    settings = load_settings(stt_model=model, stt_compute_type="int8", stt_device="cpu")
    transcriber = WhisperTranscriber.from_settings(settings, False)
    whisper = transcriber._model  # the same loaded model for all three
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long_meeting.wav"
        duration, _, _ = build_long_recording(path)
        audio = decode_with_vad(
            path, make_classifier("silero"), PLANNING_VAD, lambda f: None, threading.Event()
        )
    pipeline = MeetingPipeline(transcriber, diarizer=None)  # type: ignore[arg-type]
    rows: dict[str, dict[str, Any]] = {}

    t0 = time.perf_counter()
    words, _, _, windows = asyncio.run(pipeline.transcribe_speech(audio))
    rows["ours"] = {"s": time.perf_counter() - t0, "windows": windows, "words": len(words)}

    t0 = time.perf_counter()
    segments, _ = whisper.transcribe(
        audio.samples, language="en", beam_size=1, vad_filter=True
    )
    text = [s.text for s in segments]  # the generator does the work
    rows["plain"] = {"s": time.perf_counter() - t0, "words": len(" ".join(text).split())}

    t0 = time.perf_counter()
    segments, info = BatchedInferencePipeline(whisper).transcribe(
        audio.samples, language="en", beam_size=1, vad_filter=True, word_timestamps=True,
        batch_size=transcriber.options.clip_batch_size,
    )
    text = [s.text for s in segments]
    rows["batched"] = {"s": time.perf_counter() - t0, "words": len(" ".join(text).split()),
                       "speech_after_vad_s": round(info.duration_after_vad, 1)}
    plain = rows["plain"]["s"]
    for row in rows.values():
        row["x_real_time"] = round(duration / row["s"], 1)
        row["time_vs_plain"] = round(row["s"] / plain, 2)
        row["s"] = round(row["s"], 1)
    return {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "audio_s": round(duration, 1),
        "model": model,
        "cpu_threads": transcriber.cpu_threads,
        "clip_batch_size": transcriber.options.clip_batch_size,
        **rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="base", help="meeting Whisper model")
    args = parser.parse_args()
    result = compare(args.model)
    name = "meeting_stt" if args.model == "base" else f"meeting_stt_{args.model}"
    path = write_result(name, result, settings={"stt_model": args.model, "compute_type": "int8"})
    print(path.read_text())


if __name__ == "__main__":
    main()
