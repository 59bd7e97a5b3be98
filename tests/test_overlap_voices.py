"""Runs of words said where speakers' turns overlap, and each speaker's own speech
(pure parts of pipelines/meeting/overlap_voices.py; the voice comparison itself is
tested on AMI trn00 in tests/test_speech_recall.py)."""

from __future__ import annotations

import numpy as np

from pipelines.meeting.overlap_voices import exclusive_spans, overlapped_runs, voice_labels
from voice.diarize.base import SpeakerTurn
from voice.stt.base import Word

TURNS = [SpeakerTurn(0.0, 10.0, "A"), SpeakerTurn(4.0, 6.5, "B"), SpeakerTurn(8.0, 8.4, "C")]


def _words(*spans: tuple[float, float]) -> list[Word]:
    return [Word(f"w{i}", start, end, 0.9) for i, (start, end) in enumerate(spans)]


def test_exclusive_spans_leave_out_everyone_elses_turns() -> None:
    assert exclusive_spans(TURNS, "A") == [(0.0, 4.0), (6.5, 8.0), (8.4, 10.0)]
    assert exclusive_spans(TURNS, "B") == []
    assert exclusive_spans(TURNS, "nobody") == []


def test_overlapped_runs_are_long_enough_runs_under_two_speakers() -> None:
    words = _words((3.0, 3.9), (4.1, 4.6), (4.6, 5.3), (5.3, 6.0), (6.6, 7.0), (8.0, 8.3))
    # 4.1-6.0 lies under A and B (1.9 s); 8.0-8.3 under A and C, but only 0.3 s long
    assert overlapped_runs(words, TURNS, min_run_s=1.0) == [(1, 4, frozenset({"A", "B"}))]
    assert overlapped_runs(words, TURNS, min_run_s=0.2)[-1] == (5, 6, frozenset({"A", "C"}))
    assert overlapped_runs(words, [SpeakerTurn(0.0, 10.0, "A")]) == []


class _ByLoudness:
    """A stand-in embedder whose 'voice' is the audio's level: enough to check which
    speaker a run goes to and that unclear runs keep their labels."""

    dimension = 2

    def embed(self, audio: np.ndarray) -> np.ndarray:
        level = float(np.sqrt(np.mean(audio**2)))
        vector = np.array([level, 0.1], np.float32)
        return vector / np.linalg.norm(vector)


def test_a_run_goes_to_the_speaker_whose_voice_it_matches_clearly() -> None:
    rate = 16000
    samples = np.full(10 * rate, 0.02, np.float32)  # A is quiet on its own...
    samples[round(4.0 * rate) : round(6.5 * rate)] = 0.5  # ...the overlap is loud, as B
    turns = [SpeakerTurn(0.0, 6.5, "A"), SpeakerTurn(4.0, 7.5, "B"), SpeakerTurn(7.5, 10.0, "A")]
    samples[round(6.5 * rate) : round(7.5 * rate)] = 0.5  # B alone: its print is loud
    words = _words((3.0, 3.9), (4.1, 5.0), (5.0, 6.0), (8.0, 9.0))
    assert voice_labels(words, turns, samples, _ByLoudness()) == {1: "B", 2: "B"}
    samples[round(4.0 * rate) : round(6.5 * rate)] = 0.02  # now it sounds like A
    assert voice_labels(words, turns, samples, _ByLoudness()) == {1: "A", 2: "A"}
    unclear = voice_labels(words, turns, samples, _ByLoudness(), min_margin=2.0)
    assert unclear == {}


def test_speaker_segments_give_an_overlapped_run_to_its_voice_whatever_the_word_order() -> None:
    """Through :func:`pipelines.meeting.pipeline.speaker_segments` (words given out of
    order): by the turns alone the overlapped words would stay with A, who was talking."""
    from pipelines.meeting.pipeline import speaker_segments

    rate = 16000
    samples = np.full(10 * rate, 0.02, np.float32)
    samples[round(4.0 * rate) : round(7.5 * rate)] = 0.5  # B's voice, over A's turn and alone
    turns = [SpeakerTurn(0.0, 6.5, "A"), SpeakerTurn(4.0, 7.5, "B"), SpeakerTurn(7.5, 10.0, "A")]
    words = _words((5.0, 6.0), (1.0, 2.0), (4.1, 5.0), (8.0, 9.0))
    plain = speaker_segments(words, turns, None)
    assert {s.speaker for s in plain if s.words} == {"SPEAKER_00"}  # every word with A
    assert [(s.speaker, s.text, s.start, s.end) for s in plain if not s.words] == [
        ("SPEAKER_01", "", 4.1, 6.0),  # B's wordless turn over A's words (4.1-6 s)
    ]
    voiced = speaker_segments(words, turns, None, samples=samples, embedder=_ByLoudness())
    assert [(s.speaker, s.text) for s in voiced] == [
        ("SPEAKER_00", "w1"), ("SPEAKER_01", "w2 w0"), ("SPEAKER_00", "w3"),
    ]
