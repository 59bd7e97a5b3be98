"""Meeting bench: throughput and memory of the whole meeting pipeline on a long recording,
and DER of diarization on every recording with a reference.

The long recording (about 11 minutes) joins real clips from ../shared/data with
0.8 s pauses: every ``diar`` clip and the longer unreferenced ones. Its
reference turns are the clips' own, shifted, scored only where a clip has a
reference (UEM). Peak RSS is sampled every 20 ms and attributed to the stage
running at the time. The load average after the run is recorded: other work on
the machine slows every figure down.

    .venv/bin/python -m bench.meeting            # → bench/results/meeting.json
    .venv/bin/python -m bench.meeting --llm      # summaries with the embedded LLM
    .venv/bin/python -m bench.meeting --model tiny.en --skip-der   # another meeting model
    .venv/bin/python -m bench.meeting --sequential --skip-der      # no diarize/STT overlap
    .venv/bin/python -m bench.meeting --device cuda --no-summary --skip-der --skip-baseline  # GPU

Speech recall per file: the share of the RTTM's speech time the transcription
stage's segments cover. ``transcribe_vs_faster_whisper``: the transcription stage
alone against plain faster-whisper on the same audio, one after the other in this
process (:mod:`bench.meeting_stt`): compare those ratios, not seconds, across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from pyannote.core import Annotation, Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate

from bench.common import DATA, load_wav16k, peak_rss_mb, write_result
from voice.diarize.base import SpeakerTurn
from voice.diarize.rttm import read_rttm, read_uem

RATE = 16000
PAUSE_S = 0.8
DIAR = [
    "pyannote-audio/sample.wav",
    *[f"pyannote-audio/dev0{i}.wav" for i in range(2)],
    *[f"pyannote-audio/trn0{i}.wav" for i in range(7)],
    "assembled/assembled_meeting.wav",
    "faster-whisper/stereo_diarization.wav",
]
EXTRA = [
    "azure-speech-sdk/katiesteve.wav",
    "azure-speech-sdk/katiesteve_mono.wav",
    "azure-speech-sdk/enrollment_audio_katie.wav",
    "azure-speech-sdk/enrollment_audio_steve.wav",
    "silero-vad/test.wav",
    "azure-speech-sdk/speechService.wav",
    "azure-speech-sdk/aboutSpeechSdk.wav",
    "realpython/harvard.wav",
    "openai-whisper/jfk.wav",
]


def reference(clip: str) -> tuple[list[SpeakerTurn], list[tuple[float, float]]] | None:
    """Reference turns and scored regions of a clip, or None without an RTTM."""
    path = DATA / clip
    rttm = path.with_suffix(".rttm")
    if not rttm.exists():
        return None
    turns = next(iter(read_rttm(rttm).values()))
    uem = path.with_suffix(".uem")
    regions = (
        next(iter(read_uem(uem).values()))
        if uem.exists()
        else [(0.0, len(load_wav16k(clip)) / RATE)]
    )
    return turns, regions


def speech_recall(
    spans: list[tuple[float, float]],
    turns: list[SpeakerTurn],
    regions: list[tuple[float, float]],
) -> float:
    """Share of the reference speech time (the union of ``turns`` within the scored
    ``regions``) that the returned ``spans`` (s) cover; 1.0 when there is none."""
    scored = Timeline([Segment(s, e) for s, e in regions]).support()
    ref = Timeline([Segment(t.start, t.end) for t in turns]).support().crop(scored)
    hyp = Timeline([Segment(s, e) for s, e in spans if e > s]).support()
    total = ref.duration()
    if total <= 0:
        return 1.0
    return sum((r & h).duration for r in ref for h in hyp if r.intersects(h)) / total


def build_long_recording(path: Path, repeat: int = 1) -> tuple[float, Annotation, Timeline]:
    """Write the joined recording (``repeat`` times over: 6 make 67 minutes); return its
    length (s), reference and UEM."""
    pieces, ref, uem, t = [], Annotation(), Timeline(), 0.0
    for clip in (DIAR + EXTRA) * repeat:
        audio = load_wav16k(clip)
        known = reference(clip)
        if known is not None:
            turns, regions = known
            stem = Path(clip).stem
            for turn in turns:  # AMI speaker ids are global; others are per clip
                label = (
                    turn.speaker
                    if clip.startswith("pyannote-audio/dev")
                    or clip.startswith("pyannote-audio/trn")
                    else f"{stem}:{turn.speaker}"
                )
                ref[Segment(t + turn.start, t + turn.end)] = label
            for start, end in regions:
                uem.add(Segment(t + start, t + end))
        pieces += [audio, np.zeros(round(PAUSE_S * RATE), np.float32)]
        t += len(audio) / RATE + PAUSE_S
    joined = np.concatenate(pieces)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((np.clip(joined, -1, 1) * 32767).astype("<i2").tobytes())
    return len(joined) / RATE, ref, uem


class RssSampler:
    """Samples this process's RSS every ``period_s`` and keeps the peak per stage."""

    def __init__(self, period_s: float = 0.02) -> None:
        self.stage = "load"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            rss = _rss_mb()
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def annotation(items: Any) -> Annotation:
    out = Annotation()
    for item in items:
        out[Segment(item.start, item.end)] = item.speaker
    return out


async def bench_long(
    llm: bool, model: str, overlap: bool, device: str = "cpu", summarize: bool = True,
    repeat: int = 1,
) -> dict[str, Any]:
    """``device``: ``cpu`` (Whisper int8) or ``cuda`` (Whisper float16, batched, and the
    diarizer on the GPU); ``repeat``: the recording joined that many times (memory on
    long meetings)."""
    from pipelines.meeting.local import local_pipeline
    from pipelines.meeting.pipeline import MeetingOptions
    from voice.settings import load_settings

    settings = load_settings(
        stt_model=model,
        stt_compute_type="int8" if device == "cpu" else "auto",
        stt_device=device,
        diarize_device=device,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long_meeting.wav"
        duration, ref, uem = build_long_recording(path, repeat)
        with RssSampler() as rss:
            t0 = time.perf_counter()
            async with local_pipeline(settings, use_llm=llm) as pipeline:
                pipeline.overlap = overlap
                load_s = time.perf_counter() - t0
                rss.stage = "decode"
                t0 = time.perf_counter()

                def progress(stage: str, fraction: float) -> None:
                    if stage != "done":
                        rss.stage = stage

                result = await pipeline.run(path, MeetingOptions(summarize=summarize), progress)
                wall = time.perf_counter() - t0
    doc = result.document
    hyp = annotation(doc.segments)
    der = DiarizationErrorRate(collar=0.0)(ref, hyp, uem=uem)
    der_collar = DiarizationErrorRate(collar=0.5)(ref, hyp, uem=uem)
    timings = doc.meta["timings_s"]
    return {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "audio_s": round(duration, 1),
        "model_load_s": round(load_s, 2),
        "wall_s": round(wall, 1),
        "x_real_time": round(duration / wall, 2),
        "x_real_time_decode_transcribe_diarize": round(
            duration / sum(timings[k] for k in ("decode", "transcribe", "diarize")), 2
        ),
        "diarize_overlapped_with_transcribe": overlap,
        "stage_s": timings,
        "diarizer_s": doc.meta["diarizer_s"],
        "stage_x_real_time": {k: round(duration / v, 1) for k, v in timings.items() if v > 0},
        "peak_rss_mb_by_stage": {k: round(v) for k, v in rss.peaks.items()},
        "peak_rss_mb_process": peak_rss_mb(),
        "windows": doc.meta["windows"],
        "segments": len(doc.segments),
        "speakers_found": len(doc.speakers),
        "speakers_in_reference": len(ref.labels()),
        "der_pipeline_segments": round(float(der), 3),
        "der_pipeline_segments_collar_0.5": round(float(der_collar), 3),
        "summary_method": dict(result.summary.method) if result.summary else None,
        "stt": {
            k: doc.meta["stt"].get(k)
            for k in ("model", "device", "compute_type", "beam_size", "batch_size",
                      "redecoded_clips", "second_pass_clips")
        },
    }


def bench_der() -> dict[str, Any]:
    """DER of the diarizer alone on each reference clip (collar 0 and 0.5 s), and over
    all clips together (errors summed, then divided by the total reference speech)."""
    from voice.diarize import make_diarizer
    from voice.settings import load_settings

    diarizer = make_diarizer(load_settings())
    totals = {
        "der": DiarizationErrorRate(collar=0.0),
        "der_collar_0.5": DiarizationErrorRate(collar=0.5),
    }
    rows: dict[str, Any] = {}
    for clip in DIAR:
        turns, regions = reference(clip) or ([], [])
        uem = Timeline([Segment(s, e) for s, e in regions])
        t0 = time.perf_counter()
        hyp = diarizer.diarize(load_wav16k(clip))
        took = time.perf_counter() - t0
        ref = annotation(turns)
        row: dict[str, Any] = {
            "speakers": len(ref.labels()),
            "found": len({t.speaker for t in hyp}),
        }
        for name, metric in totals.items():
            row[name] = round(float(metric(ref, annotation(hyp), uem=uem)), 3)
        rows[clip] = {**row, "seconds": round(took, 2)}
    rows["all clips"] = {name: round(float(abs(metric)), 3) for name, metric in totals.items()}
    return rows


def bench_recall(model: str) -> dict[str, Any]:
    """Speech recall (:func:`speech_recall`) of the transcription stage's segments on
    every recording with an RTTM, and the stage's real-time factor per file."""
    from pipelines.meeting.align import align
    from pipelines.meeting.pipeline import PLANNING_VAD, MeetingPipeline
    from pipelines.meeting.stages import decode_with_vad
    from voice.settings import load_settings
    from voice.stt import WhisperTranscriber
    from voice.vad import make_classifier

    transcriber = WhisperTranscriber.from_settings(load_settings(stt_model=model), False)
    pipeline = MeetingPipeline(transcriber, diarizer=None)  # type: ignore[arg-type]
    rows: dict[str, Any] = {}
    for clip in DIAR:
        turns, regions = reference(clip) or ([], [])
        t0 = time.perf_counter()
        audio = decode_with_vad(
            DATA / clip, make_classifier("silero"), PLANNING_VAD, lambda f: None,
            threading.Event(),
        )
        words, *_ = asyncio.run(pipeline.transcribe_speech(audio))
        took = time.perf_counter() - t0
        spans = [(s.start, s.end) for s in align(words, [])]
        rows[clip] = {
            "recall": round(speech_recall(spans, turns, regions), 3),
            "words": len(words),
            "x_real_time": round(audio.duration / took, 1),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llm", action="store_true", help="summarise with the embedded/configured LLM"
    )
    parser.add_argument("--model", default="base", help="meeting Whisper model")
    parser.add_argument(
        "--sequential", action="store_true", help="diarize after transcribing, not alongside"
    )
    parser.add_argument("--skip-der", action="store_true", help="only the long recording")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu",
        help="cuda: Whisper float16 (batched) and diarization on the GPU (long recording only)",
    )
    parser.add_argument("--no-summary", action="store_true", help="transcript only")
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="the long recording joined N times (6: 67 minutes), for memory on long meetings",
    )
    parser.add_argument(
        "--skip-baseline", action="store_true",
        help="no transcribe-stage comparison with plain faster-whisper",
    )
    args = parser.parse_args()
    from web.operations.memory import limit_arenas

    arenas = "2" if limit_arenas() else os.environ.get("MALLOC_ARENA_MAX", "glibc default")
    long_run = asyncio.run(
        bench_long(
            args.llm, args.model, not args.sequential, args.device, not args.no_summary,
            args.repeat,
        )
    )
    results: dict[str, Any] = {"long_recording": long_run}
    if not args.skip_baseline:
        from bench.meeting_stt import compare

        results["transcribe_vs_faster_whisper"] = compare(args.model)
    if not args.skip_der:
        results["speech_recall_by_file"] = bench_recall(args.model)
        results["der_by_file"] = bench_der()
    variant = (
        ("_sequential" if args.sequential else "")
        + ("" if args.device == "cpu" else f"_{args.device}")
        + ("" if args.repeat == 1 else f"_x{args.repeat}")
    )
    path = write_result(
        "meeting" if args.model == "base" and not variant else f"meeting_{args.model}{variant}",
        results,
        settings={
            "stt_model": args.model, "device": args.device,
            "compute_type": "int8" if args.device == "cpu" else "float16", "llm": args.llm,
            "malloc_arena_max": arenas,  # as `voice serve` and `voice worker` run meetings
        },
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
