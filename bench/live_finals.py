"""Live final transcripts of long turns: settled pauses against whole-utterance decoding.

Every ``wer`` reference clip of ``../shared/data`` up to 20 s is fed to a
:class:`voice.stt.streaming.StreamingRecognizer` (the realtime model, as the server
builds it) the way a session does: a final at the start of every pause of at
least 300 ms (20 ms frames under max(peak - 35 dB, floor + 10 dB)), the pause
reported to the recogniser when speech resumes, and the last final at the end of
speech. Once with settling (the default) and once with it off (every final
decodes the whole utterance), in the same run. Reported: WER of the last finals
against the references (jiwer, lower case, punctuation removed) and the time of
the last final per clip (ms, the wait a turn's end has after its final starts).

    .venv/bin/python -m bench.live_finals
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import jiwer
import numpy as np

from bench.common import DATA, load_wav16k, percentiles, write_result
from voice.settings import load_settings
from voice.stt import streaming
from voice.stt.whisper import WhisperTranscriber

MIN_PAUSE_MS = 300


def normalise(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


def reference_clips() -> list[tuple[str, str]]:
    """(relative path of the 16 kHz wav, reference text) of the wer clips up to 20 s."""
    clips = []
    for line in (DATA / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("category") == "wer" and row.get("duration_s", 99) <= 20:
            clips.append((row["wav16k"].replace("/wav16k/", "/"), row["reference"]))
    return clips


def pauses(audio: np.ndarray) -> list[tuple[int, int]]:
    """(sample where a pause begins, its length in ms) for pauses of MIN_PAUSE_MS or more."""
    frame = 320
    n = len(audio) // frame
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    db = 20 * np.log10(rms + 1e-9)
    voiced = np.where(db > max(db.max() - 35, np.percentile(db, 10) + 10))[0]
    return [
        ((int(a) + 1) * frame, int(b - a - 1) * 20)
        for a, b in zip(voiced[:-1], voiced[1:], strict=True)
        if (b - a) * 20 >= MIN_PAUSE_MS
    ]


async def last_final(
    transcriber: WhisperTranscriber, audio: np.ndarray, settle: bool
) -> tuple[str, float]:
    """The turn's last final text and the time it took (ms)."""
    streaming.SETTLE_MIN_MS = 4000 if settle else 10**9
    recogniser = streaming.StreamingRecognizer(transcriber)
    position, took_ms, text = 0, 0.0, ""
    for end, pause_ms in [*pauses(audio), (len(audio), 0)]:
        recogniser.append(audio[position:end])
        position = end
        started = time.perf_counter()
        text = (await recogniser.finalize(1000 * end / 16000)).text
        took_ms = 1000 * (time.perf_counter() - started)
        if pause_ms:
            recogniser.paused(1000 * end / 16000, pause_ms)
    return text, took_ms


async def run() -> dict[str, Any]:
    transcriber = WhisperTranscriber.from_settings(load_settings(), realtime=True)
    rows: list[dict[str, Any]] = []
    for relative, reference in reference_clips():
        audio = load_wav16k(relative)
        whole, whole_ms = await last_final(transcriber, audio, settle=False)
        settled, settled_ms = await last_final(transcriber, audio, settle=True)
        rows.append({
            "clip": relative, "seconds": round(len(audio) / 16000, 2), "reference": reference,
            "whole": whole, "whole_ms": round(whole_ms), "settled": settled,
            "settled_ms": round(settled_ms),
        })
        print(rows[-1]["clip"], rows[-1]["whole_ms"], rows[-1]["settled_ms"], flush=True)
    refs = [normalise(r["reference"]) for r in rows]
    long_rows = [r for r in rows if r["seconds"] >= 6]
    return {
        "clips": rows,
        "wer_whole": round(float(jiwer.wer(refs, [normalise(r["whole"]) for r in rows])), 4),
        "wer_settled": round(float(jiwer.wer(refs, [normalise(r["settled"]) for r in rows])), 4),
        "last_final_ms_6s_and_longer": {
            "whole": percentiles([r["whole_ms"] for r in long_rows]),
            "settled": percentiles([r["settled_ms"] for r in long_rows]),
        },
    }


def main() -> None:
    load_before = os.getloadavg()[0]
    results = asyncio.run(run())
    path = write_result("live_finals", results, model=load_settings().realtime_stt_model,
                        load_average_1m={"before": round(load_before, 2),
                                         "after": round(os.getloadavg()[0], 2)})
    print(f"WER whole {results['wer_whole']:.2%} settled {results['wer_settled']:.2%}; "
          f"last final (>= 6 s) {results['last_final_ms_6s_and_longer']} -> {path}")


if __name__ == "__main__":
    main()
