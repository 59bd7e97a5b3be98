"""Shared bench helpers: machine facts, percentiles, result files.

Benchmarks report figures; they never fail on timing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"

QUESTIONS = (
    "azure-speech-sdk/whatstheweatherlike.wav",
    "deepspeech/LDC93S1.wav",
    "speechbrain/spk1_snt1.wav",
    "lhotse/LJ002-0020.wav",
)
"""Short real questions the realtime benches speak, one per turn."""
INTERRUPTION = "lhotse/2412-153948-0000.wav"
"""Real speech used to interrupt the agent in the barge-in measurements."""


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    facts = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    gpus = nvidia_gpus()
    return {**facts, "gpus": gpus} if gpus else facts


def nvidia_gpus() -> list[str]:
    """Names and memory of the NVIDIA GPUs ``nvidia-smi`` lists; empty without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def commit() -> str:
    """HEAD of the checkout (``-dirty`` with changes); ``BENCH_COMMIT`` where the run
    happens on a copy of the tree without git (a GPU machine, say)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return out.stdout.strip() + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "min": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 1),
        "p95": round(float(np.percentile(arr, 95)), 1),
        "min": round(float(arr.min()), 1),
        "max": round(float(arr.max()), 1),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def load_wav16k(relative: str) -> np.ndarray:
    """A 16 kHz mono 16-bit clip from ../shared/data as float32."""
    with wave.open(str(DATA / relative), "rb") as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def write_result(name: str, results: dict[str, Any], **extra: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "bench": name,
        "machine": machine(),
        "commit": commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
        "results": results,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def speech_clip(
    relative: str, rate: int, *, max_s: float | None = None, pad_s: float = 1.0
) -> tuple[np.ndarray, float, float]:
    """A clip at ``rate`` Hz as int16 followed by ``pad_s`` of silence, with the start
    and end of its speech (ms, found by the Silero VAD)."""
    from voice.audio.resample import resample
    from voice.vad import VadOptions, make_classifier, speech_regions

    audio = load_wav16k(relative)
    if max_s is not None:
        audio = audio[: int(max_s * 16000)]
    regions = speech_regions(audio, make_classifier("silero"), VadOptions())
    pcm = np.clip(resample(audio, 16000, rate), -1, 1)
    pcm = np.concatenate([pcm, np.zeros(int(pad_s * rate), dtype=np.float32)])
    start, end = (regions[0][0], regions[-1][1]) if regions else (0.0, 1000 * len(audio) / 16000)
    return (pcm * 32767).astype(np.int16), start, end
