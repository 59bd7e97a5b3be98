"""Voice-activity detection: the classifier interface, options and events.

A :class:`SpeechClassifier` scores fixed-size frames of 16 kHz audio; the
:class:`~voice.vad.turns.TurnDetector` turns the scores into speech
started/stopped events. Times are milliseconds from the start of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SpeechClassifier(Protocol):
    """Scores frames of audio for speech. Stateful (recurrent models); not thread-safe."""

    sample_rate: int
    """Hz; 16000 for the shipped backends."""
    frame_samples: int
    """Samples per frame :meth:`probability` takes."""

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability in [0, 1] of the next float32 frame of exactly ``frame_samples``."""
        ...

    def reset(self) -> None:
        """Forget the stream so far (start a new one)."""
        ...


@dataclass(frozen=True, slots=True)
class VadOptions:
    """Turn-detection options.

    ``threshold``: probability (0-1) at which a frame counts as speech; speech
    continues while frames stay at or above :attr:`stay_threshold` (hysteresis).
    ``min_speech_ms``: voiced time needed before speech counts as started
    (shorter clicks are ignored). ``silence_ms``: non-speech time that ends
    speech. ``prefix_padding_ms``: audio before the onset that consumers
    (e.g. the transcriber) should keep; the detector itself does not use it.
    """

    threshold: float = 0.5
    min_speech_ms: float = 200.0
    silence_ms: float = 500.0
    prefix_padding_ms: float = 300.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.min_speech_ms < 0 or self.silence_ms < 0 or self.prefix_padding_ms < 0:
            raise ValueError("min_speech_ms, silence_ms and prefix_padding_ms must be >= 0")

    @property
    def stay_threshold(self) -> float:
        """Probability at or above which a frame keeps speech going once started:
        ``threshold - 0.15``, but never below half of ``threshold``."""
        return max(self.threshold - 0.15, self.threshold / 2)


@dataclass(frozen=True, slots=True)
class FrameProbabilities:
    """A classifier's speech probability (0-1) for each frame of a whole signal.

    ``values[i]`` scores samples ``[i * frame_samples, (i + 1) * frame_samples)``
    of the 16 kHz signal, from its first sample (a trailing partial frame has no
    value); ``model`` names the classifier (its ``model_name``). Kept so that a
    later stage running the same model on the same signal can reuse them.
    """

    model: str
    frame_samples: int
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech began at ``start_ms`` (the start of its first voiced frame)."""

    start_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """Speech ended at ``end_ms`` (the start of the silence that ended it)."""

    end_ms: float


VadEvent = SpeechStarted | SpeechStopped
