"""WebRTC's VAD (package ``webrtcvad-wheels``): a fast GMM classifier, 0/1 decisions."""

from __future__ import annotations

import numpy as np
import webrtcvad

from voice.audio.frames import float32_to_pcm16

DEFAULT_MODE = 3
"""Aggressiveness 0-3; 3 filters out the most non-speech (best precision on real speech)."""


class WebRtcClassifier:
    """:class:`~voice.vad.base.SpeechClassifier` over ``webrtcvad`` at 16 kHz.

    ``mode``: aggressiveness 0 (least) to 3 (most), None for :data:`DEFAULT_MODE`.
    ``frame_ms``: 10, 20 or 30. Probabilities are exactly 0.0 or 1.0. About
    3 µs per frame, so it is safe to call from the event loop.
    """

    sample_rate = 16000
    model_name = "webrtc"
    """Names the model in :class:`~voice.vad.base.FrameProbabilities`."""

    def __init__(self, mode: int | None = None, frame_ms: int = 30) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtcvad frames are 10, 20 or 30 ms, got {frame_ms}")
        self.mode = DEFAULT_MODE if mode is None else mode
        if not 0 <= self.mode <= 3:
            raise ValueError(f"webrtcvad mode must be 0-3, got {self.mode}")
        self.frame_ms = frame_ms
        self.frame_samples = self.sample_rate * frame_ms // 1000
        self._vad = webrtcvad.Vad(self.mode)

    def probability(self, frame: np.ndarray) -> float:
        if len(frame) != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} samples, got {len(frame)}")
        pcm = frame if frame.dtype == np.int16 else float32_to_pcm16(frame)
        voiced = self._vad.is_speech(pcm.astype("<i2", copy=False).tobytes(), self.sample_rate)
        return 1.0 if voiced else 0.0

    def reset(self) -> None:
        # The C state adapts its noise model over time; a new stream starts afresh.
        self._vad = webrtcvad.Vad(self.mode)
