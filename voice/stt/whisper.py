"""Whisper speech-to-text on faster-whisper (CTranslate2), from local model directories only."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from voice.audio.frames import pcm16_to_float32
from voice.cpu_budget import available_cores
from voice.stt.base import (
    SAMPLE_RATE,
    DecoderStats,
    Segment,
    SegmentSink,
    SttCapabilities,
    Transcription,
    Word,
)
from voice.stt.models import choose_device, resolve_model

if TYPE_CHECKING:
    from voice.settings import Settings

BATCHED_MIN_S = 30.0
"""Audio longer than this (s) uses the batched pipeline when ``batch_size > 1``: shorter
audio fits in one 30 s Whisper window, so there would be nothing to batch."""


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    """How to load and run Whisper.

    ``model``: ``tiny.en``, ``base`` or a CTranslate2 model directory; ``cache_dir``
    where ``base`` is joined; ``device``/``compute_type``: ``auto`` or explicit
    (see :func:`choose_device`); ``cpu_threads``: 0 = min(4, cores) (the server
    passes its CPU budget's share);
    ``language``: default language (None = detect); ``num_workers``: how many
    transcriptions may run in parallel; ``batch_size`` > 1 enables batched decoding
    of long audio (meant for GPUs).
    """

    model: str
    cache_dir: Path
    device: str = "auto"
    compute_type: str = "auto"
    cpu_threads: int = 0
    beam_size: int = 1
    language: str | None = "en"
    num_workers: int = 1
    batch_size: int = 1

    def __post_init__(self) -> None:
        for name in ("beam_size", "num_workers", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"WhisperOptions.{name} must be >= 1")
        if self.cpu_threads < 0:
            raise ValueError("WhisperOptions.cpu_threads must be >= 0")


class WhisperTranscriber:
    """:class:`~voice.stt.base.Transcriber` backed by ``faster_whisper.WhisperModel``.

    Loading is blocking (and may join the base model once). ``transcribe`` is
    blocking and thread-safe: at most ``options.num_workers`` calls run at once
    (that many CTranslate2 workers exist); further callers wait on a semaphore.
    """

    def __init__(self, options: WhisperOptions) -> None:
        self.options = options
        self.model_path = resolve_model(options.model, options.cache_dir)
        self.device, self.compute_type = choose_device(options.device, options.compute_type)
        self.cpu_threads = options.cpu_threads or min(4, available_cores())
        self._model = WhisperModel(
            str(self.model_path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=options.num_workers,
            local_files_only=True,
        )
        self._batched = BatchedInferencePipeline(self._model) if options.batch_size > 1 else None
        self._slots = threading.BoundedSemaphore(options.num_workers)

    @property
    def concurrency(self) -> int:
        """Calls that really run at once (for :func:`voice.workers.run_on`)."""
        return self.options.num_workers

    @classmethod
    def from_settings(
        cls, settings: Settings, realtime: bool, cpu_threads: int | None = None
    ) -> WhisperTranscriber:
        """Build from settings: ``realtime_stt_model`` for live talk, ``stt_model`` otherwise.

        ``cpu_threads``: the CPU budget's share (default ``stt_cpu_threads``). Batching
        is used only for non-realtime work on CUDA (it helps little on CPU).
        """
        device, compute_type = choose_device(settings.stt_device, settings.stt_compute_type)
        batch = settings.stt_batch_size if not realtime and device == "cuda" else 1
        return cls(
            WhisperOptions(
                model=settings.realtime_stt_model if realtime else settings.stt_model,
                cache_dir=settings.cache_dir,
                device=device,
                compute_type=compute_type,
                cpu_threads=settings.stt_cpu_threads if cpu_threads is None else cpu_threads,
                beam_size=settings.stt_beam_size,
                language=settings.stt_language,
                batch_size=batch,
                # Live sessions: a final transcription must not queue behind a partial
                # (or another session's turn), so two inferences may run at once.
                num_workers=2 if realtime else 1,
            )
        )

    @property
    def capabilities(self) -> SttCapabilities:
        return SttCapabilities(
            streaming=False, word_timestamps=True, batched=self._batched is not None
        )

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

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
        """Transcribe mono 16 kHz ``audio`` (float32 in [-1, 1), int16 also accepted).

        Blocking; safe from any thread. ``on_segment`` is told each segment as soon as
        its window is decoded (Whisper decodes 30 s windows one after the other). ``language`` None uses ``options.language``
        (English-only models always use ``en``). Long audio with ``batch_size > 1``
        goes through the batched pipeline, which always splits on Silero VAD.
        """
        samples = _as_float32(audio)
        duration = len(samples) / SAMPLE_RATE
        lang = language or self.options.language
        if not self.multilingual:
            lang = "en"
        batched = self._batched is not None and duration > BATCHED_MIN_S
        used: dict[str, object] = {
            "model": self.options.model,
            "model_path": str(self.model_path),
            "device": self.device,
            "compute_type": self.compute_type,
            "cpu_threads": self.cpu_threads,
            "beam_size": self.options.beam_size,
            "language": lang,
            "word_timestamps": word_timestamps,
            "vad_filter": vad_filter or batched,
            "condition_on_previous_text": False,
            "initial_prompt": prompt,
            "batched": batched,
            "batch_size": self.options.batch_size if batched else 1,
        }
        if len(samples) == 0:
            return Transcription("", (), lang or "", 0.0, MappingProxyType(used))
        kwargs: dict[str, Any] = {
            "language": lang,
            "beam_size": self.options.beam_size,
            "word_timestamps": word_timestamps,
            "vad_filter": vad_filter or batched,
            "condition_on_previous_text": False,
            "initial_prompt": prompt,
        }
        with self._slots:
            if batched and self._batched is not None:
                raw, info = self._batched.transcribe(
                    samples, batch_size=self.options.batch_size, without_timestamps=False, **kwargs
                )
            else:
                raw, info = self._model.transcribe(samples, **kwargs)
            segments = _collect(raw, on_segment)  # the generator does the decoding: consume it here
        text = " ".join(s.text for s in segments if s.text)
        return Transcription(text, segments, info.language, duration, MappingProxyType(used))


def _as_float32(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return pcm16_to_float32(audio)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _collect(raw: Iterable[Any], on_segment: SegmentSink | None = None) -> tuple[Segment, ...]:
    """Our segments from faster-whisper's, with its decoder statistics; ``on_segment``
    is told each as soon as the generator yields it. Word times come from cross-attention alignment
    and segment times from timestamp tokens, so a word can run some tens of ms past its
    segment (``you`` ends at 7.58 s in a segment ending at 7.54 s on jfk.wav): words are
    clamped into their segment, so a segment always contains its words."""
    out: list[Segment] = []
    for seg in raw:
        start, end = float(seg.start), float(seg.end)
        words = tuple(
            Word(w.word.strip(), _within(float(w.start), start, end),
                 _within(float(w.end), start, end), float(w.probability))
            for w in (seg.words or ())
        )
        segment = Segment(len(out), start, end, seg.text.strip(), words, _stats(seg))
        out.append(segment)
        if on_segment is not None:
            on_segment(segment)
    return tuple(out)


def _stats(seg: Any) -> DecoderStats:
    """faster-whisper's per-segment decoder statistics (a ``temperature`` it leaves
    unset means its first, greedy temperature: 0)."""
    return DecoderStats(
        seek=int(seg.seek),
        tokens=tuple(int(t) for t in seg.tokens),
        temperature=float(seg.temperature or 0.0),
        avg_logprob=float(seg.avg_logprob),
        compression_ratio=float(seg.compression_ratio),
        no_speech_prob=float(seg.no_speech_prob),
    )


def _within(t: float, start: float, end: float) -> float:
    return min(max(t, start), end)
