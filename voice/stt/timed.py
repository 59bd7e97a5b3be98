"""A :class:`~voice.stt.base.Transcriber` that reports how long each call took.

:class:`TimedTranscriber` wraps another transcriber and, after every successful
``transcribe``, calls ``observe(audio_s, compute_s)``: the input length and the
wall time spent, both in seconds (their ratio is the real-time factor). The
callback runs in the calling (worker) thread and must be cheap and thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from voice.stt.base import (
    SAMPLE_RATE,
    SegmentSink,
    SttCapabilities,
    Transcriber,
    Transcription,
    transcribe_clips,
    transcribe_utterance,
)

SttObserver = Callable[[float, float], None]


class TimedTranscriber:
    """``inner`` with every ``transcribe`` call timed; otherwise identical."""

    def __init__(self, inner: Transcriber, observe: SttObserver) -> None:
        self.inner = inner
        self._observe = observe

    @property
    def capabilities(self) -> SttCapabilities:
        return self.inner.capabilities

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        word_timestamps: bool = False,
        language: str | None = None,
        prompt: str | None = None,
        vad_filter: bool = False,
        on_segment: SegmentSink | None = None,
    ) -> Transcription:
        start = time.perf_counter()
        result = self.inner.transcribe(
            audio,
            word_timestamps=word_timestamps,
            language=language,
            prompt=prompt,
            vad_filter=vad_filter,
            on_segment=on_segment,
        )
        self._observe(len(audio) / SAMPLE_RATE, time.perf_counter() - start)
        return result

    def transcribe_clips(
        self,
        clips: Sequence[np.ndarray],
        *,
        word_timestamps: bool = False,
        language: str | None = None,
    ) -> list[Transcription]:
        """``inner``'s clips transcribed (:func:`~voice.stt.base.transcribe_clips`), the
        call timed as one: its audio is the clips' total length."""
        start = time.perf_counter()
        results = transcribe_clips(
            self.inner, clips, word_timestamps=word_timestamps, language=language
        )
        audio_s = sum(len(clip) for clip in clips) / SAMPLE_RATE
        self._observe(audio_s, time.perf_counter() - start)
        return results

    def transcribe_utterance(
        self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None
    ) -> Transcription:
        """``inner``'s live-utterance path (:func:`~voice.stt.base.transcribe_utterance`), timed."""
        start = time.perf_counter()
        result = transcribe_utterance(self.inner, audio, language=language, prompt=prompt)
        self._observe(len(audio) / SAMPLE_RATE, time.perf_counter() - start)
        return result

    def __getattr__(self, name: str) -> object:
        """Other attributes (``multilingual``, ``options``) come from ``inner``."""
        return getattr(self.inner, name)
