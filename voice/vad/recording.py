"""A speech classifier that keeps every probability it gives, so that one VAD pass
over a recording can serve every stage that needs the same model's scores."""

from __future__ import annotations

from array import array

import numpy as np

from voice.vad.base import FrameProbabilities, SpeechClassifier


class RecordingClassifier:
    """:class:`~voice.vad.base.SpeechClassifier` wrapping ``inner`` and recording its
    probabilities in order (4 bytes a frame: an hour of 32 ms frames is 450 kB).
    ``reset`` starts a new recording. Not thread-safe (as the classifier)."""

    def __init__(self, inner: SpeechClassifier) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.frame_samples = inner.frame_samples
        self.model_name: str = getattr(inner, "model_name", type(inner).__name__)
        self._values = array("f")

    def probability(self, frame: np.ndarray) -> float:
        value = self.inner.probability(frame)
        self._values.append(value)
        return value

    def reset(self) -> None:
        self.inner.reset()
        self._values = array("f")

    def recorded(self) -> FrameProbabilities:
        """The probabilities so far (a copy), frame by frame from the last reset."""
        values = np.frombuffer(self._values, dtype=np.float32).copy()
        return FrameProbabilities(self.model_name, self.frame_samples, values)
