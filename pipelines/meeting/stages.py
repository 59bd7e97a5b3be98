"""Blocking building blocks of the meeting pipeline, meant for worker threads.

:func:`decode_with_vad` decodes a file once, chunk by chunk, into one 16 kHz
float32 array (an hour is about 230 MB) and runs the VAD over it once; the speech
regions decide the transcription windows, and the VAD's frame probabilities are
kept for the diarizer, which needs the same model's scores (with its own
thresholds). :func:`clip_words` turns one clip's transcription into words on the
recording's time line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.meeting.windows import Clip
from voice.audio.decode import iter_decode, probe
from voice.stt.base import SAMPLE_RATE, Transcription, Word
from voice.vad import VadOptions
from voice.vad.base import FrameProbabilities, SpeechClassifier
from voice.vad.lanes import StageStopped, score_signal
from voice.vad.turns import regions_of

DECODE_CHUNK_S = 30.0
"""Seconds decoded per step; also how often progress is reported while decoding."""
DECODE_SHARE = 0.2
"""Share of the decode stage's progress given to decoding (the rest is the VAD)."""


class StageCancelled(Exception):
    """Raised inside a worker thread when its owner asked it to stop."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A whole recording: float32 mono ``samples`` at 16 kHz and its ``speech``
    regions ``(start_s, end_s)`` as the VAD found them, in order; the VAD's
    probability of every frame, when kept (the diarizer may reuse them)."""

    samples: np.ndarray
    speech: tuple[tuple[float, float], ...]
    frame_probabilities: FrameProbabilities | None = None

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / SAMPLE_RATE


class _Buffer:
    """A growing float32 array: capacity from the container's claimed duration."""

    def __init__(self, expected_s: float | None) -> None:
        chunk = round(DECODE_CHUNK_S * SAMPLE_RATE)
        self.data = np.empty(round((expected_s or 0.0) * SAMPLE_RATE * 1.01) + chunk, np.float32)
        self.size = 0

    def append(self, piece: np.ndarray) -> None:
        need = self.size + len(piece)
        if need > len(self.data):
            grown = np.empty(max(need, int(len(self.data) * 1.5)), np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = piece
        self.size = need

    def result(self) -> np.ndarray:
        if len(self.data) > 1.1 * self.size:  # a poor estimate: give the slack back
            return self.data[: self.size].copy()
        return self.data[: self.size]


def decode_with_vad(
    source: Path,
    classifier: SpeechClassifier,
    vad_options: VadOptions,
    report: Callable[[float], None],
    stop: threading.Event,
    max_s: float | None = None,
) -> DecodedAudio:
    """Decode ``source`` to 16 kHz float32 and find its speech. Blocking.

    The file is decoded :data:`DECODE_CHUNK_S` at a time into one array, then the
    VAD scores the whole array (:func:`~voice.vad.lanes.score_signal`: long
    recordings in lanes, one model call for a frame of each) and its turn detector
    finds the speech. ``report(fraction)`` is called after each chunk and each
    stretch of scoring (decoding counts for :data:`DECODE_SHARE` of the stage,
    estimated from the container's claimed duration). Setting ``stop`` ends the
    work within a chunk or a stretch of scoring with :class:`StageCancelled`.
    Raises :class:`~voice.audio.decode.AudioDecodeError` for an undecodable file,
    and :class:`~voice.audio.decode.AudioTooLongError` once more than ``max_s``
    seconds decoded (memory stays bounded by ``max_s``, whatever the file holds).
    """
    expected = probe(source).duration_s
    if expected is not None and max_s is not None:
        expected = min(expected, max_s)  # a header may lie: never reserve past the limit
    buffer = _Buffer(expected)
    chunks = iter_decode(source, SAMPLE_RATE, DECODE_CHUNK_S, max_s=max_s)
    try:
        for chunk in chunks:
            if stop.is_set():
                raise StageCancelled
            buffer.append(chunk)
            if expected:
                report(DECODE_SHARE * min(1.0, buffer.size / SAMPLE_RATE / expected))
    finally:
        close = getattr(chunks, "close", None)  # a generator: closes the file now
        if close is not None:
            close()
    samples = buffer.result()
    try:
        scores = score_signal(
            classifier, samples, stop, lambda f: report(DECODE_SHARE + (1 - DECODE_SHARE) * f)
        )
    except StageStopped:
        raise StageCancelled from None
    frame_ms = 1000.0 * classifier.frame_samples / SAMPLE_RATE
    regions = regions_of(scores.values, frame_ms, vad_options, 1000.0 * len(samples) / SAMPLE_RATE)
    report(1.0)
    return DecodedAudio(samples, tuple((a / 1000, b / 1000) for a, b in regions), scores)


def clip_words(result: Transcription, clip: Clip) -> list[Word]:
    """Words of one clip's transcription moved onto the recording's time line.

    Times are mapped through the clip's pieces (:meth:`Clip.to_recording`); a word
    that runs past the end of its piece ends there (it never spans the silence
    the clip left out). A backend without word timings yields one pseudo-word per
    segment (its whole text), so alignment still works at segment granularity.
    """
    words: list[Word] = []
    for seg in result.segments:
        items = seg.words or (Word(seg.text, seg.start, seg.end, 1.0),)
        for w in items:
            text = w.text.strip()
            if not text:
                continue
            start = clip.to_recording(max(0.0, w.start))
            end = max(start, min(clip.to_recording(max(w.start, w.end)), clip.piece_end(start)))
            words.append(Word(text, start, end, w.probability))
    return words
