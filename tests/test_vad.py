"""VAD: turn detection on scripted timelines, both classifiers on real speech."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from tests.conftest import data_path, load_clip
from voice.audio import float32_to_pcm16, rms_dbfs
from voice.vad import (
    SpeechClassifier,
    SpeechStarted,
    SpeechStopped,
    StreamingVad,
    TurnDetector,
    VadEvent,
    VadOptions,
    make_classifier,
    speech_regions,
)
from voice.vad.silero import SileroClassifier, find_silero_model
from voice.vad.webrtc import WebRtcClassifier

Backend = Literal["silero", "webrtc"]

# --- TurnDetector on scripted probability timelines (10 ms frames) ----------------

OPTS = VadOptions(threshold=0.5, min_speech_ms=200, silence_ms=500)


def _timeline(*spans: tuple[int, float]) -> list[float]:
    """Per-10-ms probabilities from (duration ms, probability) spans."""
    return [p for ms, p in spans for _ in range(ms // 10)]


def _run(probs: Sequence[float], detector: TurnDetector) -> list[tuple[float, VadEvent]]:
    """(time at the end of the frame that produced it, event) for each event."""
    out = []
    for i, p in enumerate(probs):
        event = detector.update(p, i * 10.0, 10.0)
        if event is not None:
            out.append(((i + 1) * 10.0, event))
    return out


def test_onset_and_end_times() -> None:
    probs = _timeline((1000, 0.05), (1500, 0.9), (1000, 0.1))
    events = _run(probs, TurnDetector(OPTS))
    assert events == [(1200.0, SpeechStarted(1000.0)), (3000.0, SpeechStopped(2500.0))]


def test_short_click_is_ignored() -> None:
    probs = _timeline((500, 0.0), (150, 0.95), (500, 0.0), (60, 1.0), (1000, 0.0))
    detector = TurnDetector(OPTS)
    assert _run(probs, detector) == []
    assert not detector.in_speech


def test_pause_shorter_than_silence_ms_does_not_stop() -> None:
    probs = _timeline((300, 0.0), (800, 0.8), (450, 0.1), (800, 0.8), (600, 0.0))
    events = _run(probs, TurnDetector(OPTS))
    assert [e for _, e in events] == [SpeechStarted(300.0), SpeechStopped(2350.0)]


def test_hysteresis_keeps_but_does_not_start_speech() -> None:
    detector = TurnDetector(OPTS)
    assert OPTS.stay_threshold == pytest.approx(0.35)
    assert _run(_timeline((1000, 0.45)), detector) == []  # below threshold: never starts
    probs = _timeline((300, 0.9), (2000, 0.4), (600, 0.2))  # 0.4 is above 0.35: speech holds
    events = _run(probs, TurnDetector(OPTS))
    assert [e for _, e in events] == [SpeechStarted(0.0), SpeechStopped(2300.0)]


def test_pending_end_ms_tracks_the_current_silence() -> None:
    detector = TurnDetector(OPTS)
    seen: list[float | None] = []
    probs = _timeline((300, 0.9), (200, 0.0), (100, 0.9), (600, 0.0))
    for i, p in enumerate(probs):
        detector.update(p, i * 10.0, 10.0)
        seen.append(detector.pending_end_ms)
    assert seen[25] is None  # voiced
    assert seen[30] == 300.0 and seen[49] == 300.0  # silence from 300 ms, not yet confirmed
    assert seen[55] is None  # voice came back
    assert seen[65] == 600.0
    assert seen[-1] is None and not detector.in_speech  # stopped at 1100 ms

    detector = TurnDetector(OPTS)
    _run(_timeline((300, 0.9), (100, 0.0)), detector)
    assert detector.in_speech and detector.pending_end_ms == 300.0
    detector.reset()
    assert not detector.in_speech and detector.pending_end_ms is None


def test_zero_min_speech_starts_on_first_voiced_frame() -> None:
    detector = TurnDetector(VadOptions(min_speech_ms=0, silence_ms=30))
    events = _run(_timeline((20, 0.0), (10, 0.6), (30, 0.0)), detector)
    assert events == [(30.0, SpeechStarted(20.0)), (60.0, SpeechStopped(30.0))]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError):
        VadOptions(silence_ms=-1)


# --- classifiers on real speech ---------------------------------------------------

DIALOGUE = "pyannote-audio/sample.wav"


def _reference_mask(n_cells: int) -> np.ndarray:
    """Speech (union of RTTM turns) on a 10 ms grid."""
    mask = np.zeros(n_cells, dtype=bool)
    for line in data_path(DIALOGUE).with_suffix(".rttm").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "SPEAKER":
            start, duration = float(fields[3]), float(fields[4])
            mask[round(start * 100) : round((start + duration) * 100)] = True
    return mask


def _mask(regions: Sequence[tuple[float, float]], n_cells: int) -> np.ndarray:
    mask = np.zeros(n_cells, dtype=bool)
    for start_ms, end_ms in regions:
        mask[round(start_ms / 10) : round(end_ms / 10)] = True
    return mask


def _frame_regions(samples: np.ndarray, classifier: SpeechClassifier) -> list[tuple[float, float]]:
    """Raw per-frame decisions (probability >= 0.5) as (start, end) ms intervals."""
    n, frame_ms = classifier.frame_samples, 1000 * classifier.frame_samples / 16000
    regions = []
    for i in range(len(samples) // n):
        if classifier.probability(samples[i * n : (i + 1) * n]) >= 0.5:
            regions.append((i * frame_ms, (i + 1) * frame_ms))
    return regions


@pytest.mark.parametrize("backend", ["silero", "webrtc"])
def test_precision_and_recall_against_reference_turns(backend: Backend) -> None:
    samples = load_clip(DIALOGUE)
    cells = len(samples) // 160
    reference = _reference_mask(cells)
    classifier = make_classifier(backend)
    started = time.perf_counter()
    raw = _mask(_frame_regions(samples, classifier), cells)
    took = time.perf_counter() - started
    turns = _mask(speech_regions(samples, classifier, VadOptions()), cells)
    for name, hyp in (("frames", raw), ("turns", turns)):
        precision = (hyp & reference).sum() / hyp.sum()
        recall = (hyp & reference).sum() / reference.sum()
        print(f"{backend} {name}: precision {precision:.3f} recall {recall:.3f}")
        assert precision >= 0.85 and recall >= 0.85
    frames = len(samples) // classifier.frame_samples
    print(f"{backend}: {1000 * took / frames:.3f} ms per {classifier.frame_samples}-sample frame")


def test_both_silero_exports_agree() -> None:
    samples = load_clip(DIALOGUE)[: 16000 * 12]
    bundled = find_silero_model().resolve()
    site = bundled.parents[2]
    exports = (
        site / "silero_vad" / "data" / "silero_vad.onnx",  # inputs: input, state, sr
        site / "faster_whisper" / "assets" / "silero_vad_v6.onnx",  # inputs: input, h, c
    )
    assert bundled in exports
    other = next(p for p in exports if p != bundled)
    a, b = SileroClassifier(bundled), SileroClassifier(other)
    frames = samples[: len(samples) // 512 * 512].reshape(-1, 512)
    pa = np.array([a.probability(f) for f in frames])
    pb = np.array([b.probability(f) for f in frames])
    agreement = np.mean((pa >= 0.5) == (pb >= 0.5))
    print(f"silero exports agree on {agreement:.3f} of frames")
    assert agreement >= 0.9 and pa.max() > 0.9 and pa.min() < 0.1


def test_silero_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from voice.vad.silero import SileroClassifier\n"
        "c = SileroClassifier()\n"
        "c.probability(np.zeros(512, np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_classifiers_reject_wrong_frame_sizes() -> None:
    with pytest.raises(ValueError):
        SileroClassifier().probability(np.zeros(480, np.float32))
    with pytest.raises(ValueError):
        WebRtcClassifier(frame_ms=25)
    with pytest.raises(ValueError):
        make_classifier("other")  # type: ignore[arg-type]


# --- StreamingVad on a real clip -----------------------------------------------------

CLIP = "picovoice-leopard/test.wav"


def _energy_extent_ms(samples: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms cell within 35 dB of the loudest: a model-free speech extent."""
    levels = np.array([rms_dbfs(samples[i : i + 160]) for i in range(0, len(samples) - 159, 160)])
    active = np.flatnonzero(levels > levels.max() - 35)
    return active[0] * 10.0, (active[-1] + 1) * 10.0


@pytest.mark.parametrize("backend", ["silero", "webrtc"])
def test_streaming_vad_one_turn_whatever_the_chunk_size(backend: Backend) -> None:
    clip = load_clip(CLIP)
    first, last = _energy_extent_ms(clip)
    padded = np.concatenate([np.zeros(16000, np.float32), clip, np.zeros(16000, np.float32)])
    vad = StreamingVad(make_classifier(backend), VadOptions())
    outcomes = []
    for chunk, as_int16 in ((160, False), (480, True), (777, False)):
        vad.reset()
        audio = float32_to_pcm16(padded) if as_int16 else padded
        timeline: list[tuple[float, VadEvent]] = []
        for i in range(0, len(audio), chunk):
            timeline += [(vad.position_ms, e) for e in vad.push(audio[i : i + chunk])]
        assert vad.position_ms == pytest.approx(1000 * len(padded) / 16000)
        outcomes.append([e for _, e in timeline])
        (t_start, started), (t_stop, stopped) = timeline  # exactly one start, one stop
        assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
        print(f"{backend} chunk {chunk}: {started}, {stopped}; energy {first}-{last} ms")
        assert abs(started.start_ms - (1000 + first)) <= 150
        assert abs(stopped.end_ms - (1000 + last)) <= 250
        # Emitted once min_speech_ms / silence_ms had passed, within a chunk and a frame.
        slack = 1000 * (chunk + vad.classifier.frame_samples) / 16000
        assert 0 <= t_start - (started.start_ms + 200) <= slack
        assert 0 <= t_stop - (stopped.end_ms + 500) <= slack
        assert not vad.in_speech
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_silero_names_its_model() -> None:
    assert SileroClassifier().model_name == "silero-v6"
    assert SileroClassifier(find_silero_model()).model_name.startswith("silero:")
