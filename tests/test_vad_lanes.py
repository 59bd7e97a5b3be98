"""Scoring a whole recording in lanes (voice.vad.lanes): the same scores as one frame
at a time where it must be exact, close speech regions where it cannot be, lane cuts in
quiet, and a stop that is honoured. Real audio: the AMI excerpts joined end to end."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pipelines.meeting.pipeline import PLANNING_VAD
from pipelines.meeting.stages import StageCancelled, decode_with_vad
from tests.conftest import load_clip
from voice.audio.wav import write_wav
from voice.vad.lanes import (
    CUT_SEARCH_S,
    WARMUP_FRAMES,
    StageStopped,
    lane_starts,
    score_signal,
)
from voice.vad.silero import SileroClassifier
from voice.vad.turns import regions_of
from voice.vad.webrtc import WebRtcClassifier

AMI = [f"pyannote-audio/{name}.wav" for name in ("dev00", "dev01", *(f"trn0{i}" for i in range(7)))]
FRAME = 512


@pytest.fixture(scope="module")
def joined() -> np.ndarray:
    """4.5 minutes of far-field meeting audio (nine 30 s AMI excerpts)."""
    return np.concatenate([load_clip(clip) for clip in AMI])


@pytest.fixture(scope="module")
def one_at_a_time(joined: np.ndarray) -> np.ndarray:
    silero = SileroClassifier()
    frames = joined[: len(joined) // FRAME * FRAME].reshape(-1, FRAME)
    return np.array([silero.probability(f) for f in frames], np.float32)


def test_a_recording_under_two_lanes_is_scored_exactly(
    joined: np.ndarray, one_at_a_time: np.ndarray
) -> None:
    first = joined[: 16000 * 100]
    scored = score_signal(SileroClassifier(), first)
    assert scored.model == "silero-v6" and scored.frame_samples == FRAME
    assert np.array_equal(scored.values, one_at_a_time[: len(first) // FRAME])


def test_lanes_are_cut_in_quiet_and_batching_changes_no_score(joined: np.ndarray) -> None:
    frames = len(joined) // FRAME
    starts = lane_starts(joined, FRAME, frames)
    assert len(starts) == 4 and starts[0] == 0 and starts == sorted(starts)
    energy = np.square(joined[: frames * FRAME].reshape(frames, FRAME)).sum(axis=1)
    reach = int(CUT_SEARCH_S * 16000 / FRAME)
    for lane, start in enumerate(starts[1:], 1):
        nominal = lane * frames // len(starts)  # even cuts, each moved to the quietest frame
        assert abs(start - nominal) <= reach
        assert energy[start] == energy[nominal - reach : nominal + reach + 1].min()
    scored = score_signal(SileroClassifier(), joined).values
    silero = SileroClassifier()  # each lane alone, one frame at a time from its warm-up
    for lane, start in enumerate(starts[1:], 1):
        end = starts[lane + 1] if lane + 1 < len(starts) else frames
        silero.reset()
        alone = [
            silero.probability(joined[i * FRAME : (i + 1) * FRAME])
            for i in range(start - WARMUP_FRAMES, end)
        ][WARMUP_FRAMES:]
        assert np.allclose(scored[start:end], alone, atol=1e-6)


def test_lanes_find_the_speech_that_one_stream_finds(
    joined: np.ndarray, one_at_a_time: np.ndarray
) -> None:
    """The planning VAD's regions from lanes against one stream: each lane restarts the
    model's memory, so a few edges move, but the speech found is the same to within 1 %."""
    end_ms = 1000 * len(joined) / 16000
    lanes = regions_of(score_signal(SileroClassifier(), joined).values, 32.0, PLANNING_VAD, end_ms)
    stream = regions_of(one_at_a_time, 32.0, PLANNING_VAD, end_ms)

    def mask(regions: list[tuple[float, float]]) -> np.ndarray:
        cells = np.zeros(int(end_ms // 10) + 1, bool)
        for start, end in regions:
            cells[int(start // 10) : int(end // 10)] = True
        return cells

    a, b = mask(lanes), mask(stream)
    print(f"\nlanes {a.sum() / 100:.1f} s of speech, one stream {b.sum() / 100:.1f} s, "
          f"differing {(a ^ b).sum() / 100:.2f} s; regions {len(lanes)} / {len(stream)}")
    assert (a ^ b).sum() <= 0.01 * b.sum()
    assert abs(len(lanes) - len(stream)) <= 2


def test_a_classifier_without_lanes_is_scored_frame_by_frame(joined: np.ndarray) -> None:
    webrtc = WebRtcClassifier()
    audio = joined[: 16000 * 20]
    size = webrtc.frame_samples
    scored = score_signal(webrtc, audio).values
    webrtc.reset()
    expected = [webrtc.probability(audio[i * size : (i + 1) * size]) for i in range(len(audio) // size)]
    assert np.array_equal(scored, np.array(expected, np.float32))


def test_scoring_stops_when_asked(joined: np.ndarray, tmp_path: Path) -> None:
    stop = threading.Event()
    seen: list[float] = []

    def progress(fraction: float) -> None:
        seen.append(fraction)
        if fraction > 0.3:
            stop.set()

    with pytest.raises(StageStopped):
        score_signal(SileroClassifier(), joined, stop, progress)
    assert seen == sorted(seen) and 0.3 < seen[-1] < 0.5


def test_the_decode_stage_reports_progress_and_can_be_cancelled(
    joined: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "joined.wav"
    write_wav(path, joined, 16000)
    seen: list[float] = []
    decoded = decode_with_vad(path, SileroClassifier(), PLANNING_VAD, seen.append, threading.Event())
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 20
    assert decoded.frame_probabilities is not None
    assert decoded.speech and decoded.duration == pytest.approx(len(joined) / 16000, abs=0.01)
    stop = threading.Event()

    def stop_while_scoring(fraction: float) -> None:
        if fraction > 0.5:
            stop.set()

    with pytest.raises(StageCancelled):
        decode_with_vad(path, SileroClassifier(), PLANNING_VAD, stop_while_scoring, stop)
