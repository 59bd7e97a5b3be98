"""Voice-activity detection: classifiers (Silero, WebRTC), turn detection, streaming."""

from __future__ import annotations

from typing import Literal

from voice.vad.base import SpeechClassifier, SpeechStarted, SpeechStopped, VadEvent, VadOptions
from voice.vad.stream import StreamingVad, speech_regions
from voice.vad.turns import TurnDetector


def make_classifier(backend: Literal["silero", "webrtc"]) -> SpeechClassifier:
    """A fresh classifier of the named backend with its default settings."""
    if backend == "silero":
        from voice.vad.silero import SileroClassifier

        return SileroClassifier()
    if backend == "webrtc":
        from voice.vad.webrtc import WebRtcClassifier

        return WebRtcClassifier()
    raise ValueError(f"unknown VAD backend {backend!r}; use 'silero' or 'webrtc'")


__all__ = [
    "SpeechClassifier",
    "SpeechStarted",
    "SpeechStopped",
    "StreamingVad",
    "TurnDetector",
    "VadEvent",
    "VadOptions",
    "make_classifier",
    "speech_regions",
]
