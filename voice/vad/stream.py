"""Streaming VAD: arbitrary chunks of 16 kHz audio in, turn events out."""

from __future__ import annotations

import numpy as np

from voice.audio.frames import pcm16_to_float32
from voice.vad.base import SpeechClassifier, SpeechStopped, VadEvent, VadOptions
from voice.vad.lanes import score_signal
from voice.vad.turns import TurnDetector, regions_of


def _as_float32(samples: np.ndarray) -> np.ndarray:
    if samples.ndim != 1:
        raise ValueError("StreamingVad takes 1-D mono samples")
    if samples.dtype == np.int16:
        return pcm16_to_float32(samples)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32, copy=False)
    raise TypeError(f"expected int16 or float samples, got {samples.dtype}")


class StreamingVad:
    """Buffers pushed audio into classifier frames and runs a :class:`TurnDetector`.

    Audio must be mono at the classifier's rate (16 kHz). Positions are ms
    from the first sample pushed since construction or :meth:`reset`. Not
    thread-safe; :meth:`push` runs the model inline, so from async code call
    it in a worker thread or with chunks small enough to keep the loop responsive
    (Silero: about 0.1 ms per 32 ms frame).
    """

    def __init__(self, classifier: SpeechClassifier, options: VadOptions | None = None) -> None:
        self.classifier = classifier
        self.detector = TurnDetector(options)
        self._frame = classifier.frame_samples
        self._frame_ms = 1000.0 * self._frame / classifier.sample_rate
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        self._samples_pushed = 0
        self.last_probability = 0.0
        """Speech probability of the most recent frame."""

    @property
    def options(self) -> VadOptions:
        return self.detector.options

    @property
    def position_ms(self) -> float:
        """Stream time of the end of the audio pushed so far (ms)."""
        return 1000.0 * self._samples_pushed / self.classifier.sample_rate

    @property
    def in_speech(self) -> bool:
        return self.detector.in_speech

    @property
    def pending_end_ms(self) -> float | None:
        """See :attr:`TurnDetector.pending_end_ms`."""
        return self.detector.pending_end_ms

    @property
    def classified_ms(self) -> float:
        """Stream time of the end of the last classified frame (ms)."""
        return self._frames_done * self._frame_ms

    def end_turn(self) -> SpeechStopped | None:
        """See :meth:`TurnDetector.end_turn`."""
        return self.detector.end_turn()

    def reset(self) -> None:
        """Start a new stream at position 0."""
        self.classifier.reset()
        self.detector.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        self._samples_pushed = 0
        self.last_probability = 0.0

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Add int16 or float32 samples of any length; returns the events they complete."""
        audio = _as_float32(samples)
        self._samples_pushed += len(audio)
        buffered = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        events: list[VadEvent] = []
        whole = len(buffered) - len(buffered) % self._frame
        for offset in range(0, whole, self._frame):
            frame = buffered[offset : offset + self._frame]
            self.last_probability = self.classifier.probability(frame)
            start_ms = self._frames_done * self._frame_ms
            self._frames_done += 1
            event = self.detector.update(self.last_probability, start_ms, self._frame_ms)
            if event is not None:
                events.append(event)
        self._pending = buffered[whole:].copy()
        return events


def speech_regions(
    samples16k: np.ndarray, classifier: SpeechClassifier, options: VadOptions | None = None
) -> list[tuple[float, float]]:
    """Speech regions ``(start_ms, end_ms)`` of a whole 16 kHz signal, in order.

    Scores from a fresh state (:func:`~voice.vad.lanes.score_signal`: in lanes for a
    long signal). Speech still going at the end of the signal is closed at the start
    of its trailing silence, or at the end of the signal. No padding is added (see
    ``VadOptions.prefix_padding_ms``). Blocking.
    """
    audio = _as_float32(samples16k)
    scores = score_signal(classifier, audio)
    frame_ms = 1000.0 * classifier.frame_samples / classifier.sample_rate
    end_ms = 1000.0 * len(audio) / classifier.sample_rate
    return regions_of(scores.values, frame_ms, options or VadOptions(), end_ms)
