"""Whisper speech-to-text on faster-whisper (CTranslate2), from local model directories only."""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import ctranslate2
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
from voice.stt.models import DeviceError, choose_device, resolve_model
from voice.stt.utterance import decode_utterance

if TYPE_CHECKING:
    from voice.settings import Settings

log = logging.getLogger(__name__)

BATCHED_MIN_S = 30.0
"""Audio longer than this (s) uses the batched pipeline when ``batch_size > 1``: shorter
audio fits in one 30 s Whisper window, so there would be nothing to batch."""
_FRAMES_PER_S = 100
"""Whisper feature frames per second (10 ms hop)."""
CLIP_MAX_S = 30.0
"""Longest clip :meth:`WhisperTranscriber.transcribe_clips` takes (s): one encoder window."""
SILENT_NO_SPEECH = 0.6
"""A clip whose no-speech probability is above this *and* whose mean token
log-probability is under :data:`WEAK_LOGPROB` is silence or noise: no text (Whisper's rule)."""
WEAK_LOGPROB = -1.0
"""Mean token log-probability under which a clip's greedy text is guesswork."""
QUIET_PEAK = 1e-3
"""A clip whose samples all stay under this (|x|, -60 dBFS) holds no speech: not decoded
(Whisper "hears" ``you`` in digital silence)."""
CPU_CLIP_BATCH = 1
"""Meeting clips one CPU worker decodes together (at most). Each clip in flight adds
about 90 MB of resident memory (base int8: +190 MB for one clip, +290 for 2, +460 for
4); batching clips barely helps on a CPU (2 cores: batches of 2 took 0.98x the time of
batches of 4), parallel workers do (:data:`CPU_CLIP_WORKERS`)."""
CPU_CLIP_WORKERS = 2
"""CTranslate2 workers of a meeting (non-realtime) transcriber on a CPU, each with half
the threads: the greedy decoder's small steps keep a second thread of one worker mostly
waiting, so two one-thread workers decoding a clip each finished 8 clips of a meeting
in 0.55-0.7x the time of one two-thread worker decoding them in batches of 2 (AMD EPYC,
2 cores, base int8, load 1.7-2.7; 15 against 17 CPU seconds). The weights are shared."""
LOOP_COMPRESSION = 2.4
"""gzip compression ratio of a clip's text above which it is a repetition loop."""
REDO_BEAM = 5
"""Beam width of a clip's second decoding (at temperature 0: the same clip always
gets the same text; sampling at higher temperatures is kept for repetition loops)."""


def _threads(cpu_threads: int) -> int:
    """CTranslate2 threads for ``cpu_threads`` (0 = min(4, cores))."""
    return cpu_threads or min(4, available_cores())


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    """How to load and run Whisper.

    ``model``: ``tiny.en``, ``base`` or a CTranslate2 model directory; ``cache_dir``
    where ``base`` is joined; ``device``/``compute_type``: ``auto`` or explicit
    (see :func:`choose_device`); ``cpu_threads``: 0 = min(4, cores) (the server
    passes its CPU budget's share);
    ``language``: default language (None = detect); ``num_workers``: how many
    transcriptions may run in parallel; ``batch_size`` > 1 enables batched decoding
    of long audio (meant for GPUs); ``clip_batch_size``: clips that
    :meth:`WhisperTranscriber.transcribe_clips` decodes together (CPU or GPU).
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
    clip_batch_size: int = CPU_CLIP_BATCH

    def __post_init__(self) -> None:
        for name in ("beam_size", "num_workers", "batch_size", "clip_batch_size"):
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
        self.cpu_threads = _threads(options.cpu_threads)
        try:
            self._model = WhisperModel(
                str(self.model_path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=options.num_workers,
                local_files_only=True,
            )
        except RuntimeError as exc:  # out of GPU memory, a driver too old, ...
            if self.device != "cuda":
                raise
            raise DeviceError(f"Whisper does not load on the GPU: {exc}") from exc
        if self.device == "cuda":
            check_runs_on_cuda(self._model)
        self._batched = BatchedInferencePipeline(self._model) if options.batch_size > 1 else None
        self._clips = BatchedInferencePipeline(self._model)
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

        ``cpu_threads``: the CPU budget's share (default ``stt_cpu_threads``); on a CPU a
        non-realtime transcriber splits it between :data:`CPU_CLIP_WORKERS` workers (at
        least one thread each). Batching of long audio is used only for non-realtime work
        on CUDA; meeting clips (:meth:`transcribe_clips`) are batched by
        ``stt_batch_size``, at most :data:`CPU_CLIP_BATCH` on CPU. With ``stt_device``
        ``auto``, a GPU Whisper cannot use (no float16, a model that does not load, a
        failed :func:`check_runs_on_cuda`) leaves it on the CPU (logged); an explicit
        ``cuda`` raises :class:`DeviceError` instead.
        """
        device, compute_type = settings.stt_device, settings.stt_compute_type
        if device == "auto" and ctranslate2.get_cuda_device_count() > 0:
            try:
                on_gpu = choose_device("cuda", compute_type)
                return cls._from_settings_on(settings, realtime, cpu_threads, *on_gpu)
            except DeviceError as exc:
                log.warning("Whisper on the GPU is not usable, using the CPU instead: %s", exc)
                device, compute_type = "cpu", "auto"
        chosen = choose_device(device, compute_type)
        return cls._from_settings_on(settings, realtime, cpu_threads, *chosen)

    @classmethod
    def _from_settings_on(
        cls, settings: Settings, realtime: bool, cpu_threads: int | None, device: str,
        compute_type: str,
    ) -> WhisperTranscriber:
        batch = settings.stt_batch_size if not realtime and device == "cuda" else 1
        clips = (
            settings.stt_batch_size if device == "cuda"
            else min(CPU_CLIP_BATCH, settings.stt_batch_size)
        )
        threads = settings.stt_cpu_threads if cpu_threads is None else cpu_threads
        # Live sessions: a final transcription must not queue behind a partial
        # (or another session's turn), so two inferences may run at once.
        workers = 2 if realtime else 1
        if not realtime and device == "cpu":  # meeting clips: parallel one-thread workers
            workers = CPU_CLIP_WORKERS
            threads = max(1, _threads(threads) // CPU_CLIP_WORKERS)
        return cls(
            WhisperOptions(
                model=settings.realtime_stt_model if realtime else settings.stt_model,
                cache_dir=settings.cache_dir,
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                beam_size=settings.stt_beam_size,
                language=settings.stt_language,
                batch_size=batch,
                clip_batch_size=clips,
                num_workers=workers,
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

    def _echo(self, language: str | None, word_timestamps: bool) -> dict[str, object]:
        """The options every result echoes."""
        return {
            "model": self.options.model,
            "model_path": str(self.model_path),
            "device": self.device,
            "compute_type": self.compute_type,
            "cpu_threads": self.cpu_threads,
            "beam_size": self.options.beam_size,
            "language": language,
            "word_timestamps": word_timestamps,
            "condition_on_previous_text": False,
        }

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
        used = self._echo(lang, word_timestamps)
        used.update(
            vad_filter=vad_filter or batched,
            initial_prompt=prompt,
            batched=batched,
            batch_size=self.options.batch_size if batched else 1,
        )
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
            segments = _collect(raw, on_segment=on_segment)  # the generator does the decoding: consume it here
        text = " ".join(s.text for s in segments if s.text)
        return Transcription(text, segments, info.language, duration, MappingProxyType(used))


    def transcribe_utterance(
        self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None
    ) -> Transcription:
        """A live turn's text: mono 16 kHz ``audio`` decoded over a window of its own
        length plus 10 s (:mod:`voice.stt.utterance`), about 3x faster than the 30 s
        window on a CPU. One segment with the decoder's statistics and no timestamps
        inside; silence gives none (Whisper's no-speech rule). Audio over 20 s, an
        undetermined language, or text that loops or is guesswork go through
        :meth:`transcribe`. Blocking; thread-safe."""
        samples = _as_float32(audio)
        lang = "en" if not self.multilingual else (language or self.options.language)
        if lang is None:
            return self.transcribe(samples, language=language, prompt=prompt)
        with self._slots:
            heard = decode_utterance(self._model, samples, language=lang, prompt=prompt)
        if heard is None or not heard.complete or heard.compression_ratio > LOOP_COMPRESSION:
            return self.transcribe(samples, language=lang, prompt=prompt)
        verdict = _verdict(heard.no_speech_prob, heard.avg_logprob, loop=False)
        if verdict == "redo":
            return self.transcribe(samples, language=lang, prompt=prompt)
        used = self._echo(lang, False)
        used.update(vad_filter=False, initial_prompt=prompt, batched=False, short_window=True)
        duration = len(samples) / SAMPLE_RATE
        if not heard.text or verdict == "silent":
            return Transcription("", (), lang, duration, MappingProxyType(used))
        stats = DecoderStats(
            0, heard.tokens, 0.0, heard.avg_logprob, heard.compression_ratio, heard.no_speech_prob
        )
        segment = Segment(0, 0.0, duration, heard.text, (), stats)
        return Transcription(heard.text, (segment,), lang, duration, MappingProxyType(used))

    def transcribe_clips(
        self,
        clips: Sequence[np.ndarray],
        *,
        word_timestamps: bool = False,
        language: str | None = None,
    ) -> list[Transcription]:
        """Transcribe each clip (mono 16 kHz, at most :data:`CLIP_MAX_S` s) whole, with
        no VAD: one encoder pass per clip, ``options.clip_batch_size`` clips decoded
        together, greedy at temperature 0 (no fallback re-decodes).

        Hallucination filtering: a digitally silent clip (:data:`QUIET_PEAK`) is not
        decoded; a clip Whisper judges silent (no-speech probability
        over :data:`SILENT_NO_SPEECH` with mean log-probability under
        :data:`WEAK_LOGPROB`) gives no segments; a clip whose text loops (compression
        ratio over :data:`LOOP_COMPRESSION`) or is guesswork (mean log-probability
        under :data:`WEAK_LOGPROB`) is decoded again alone by beam search at temperature 0
        with the no-speech rule, and only if that still loops with the usual temperature
        fallback (``options["redecoded"]`` says so). Times in each
        result are seconds from the start of its clip. Blocking; thread-safe (as
        :meth:`transcribe`).
        """
        audios = [_as_float32(clip) for clip in clips]
        for audio in audios:
            if len(audio) > CLIP_MAX_S * SAMPLE_RATE:
                raise ValueError(f"a clip is {len(audio) / SAMPLE_RATE:.1f} s, over {CLIP_MAX_S} s")
        lang = "en" if not self.multilingual else (language or self.options.language)
        used = self._echo(lang, word_timestamps)
        used.update(vad_filter=False, batched=True, batch_size=self.options.clip_batch_size)
        kept = [i for i, audio in enumerate(audios) if len(audio) and np.abs(audio).max() >= QUIET_PEAK]
        if not kept:
            return [_empty(lang or "", audio, used) for audio in audios]
        # Each clip starts on a 10 ms feature frame (zero-padded up to one): the batched
        # pipeline places a clip's words from its start frame (``seek``).
        hop = SAMPLE_RATE // _FRAMES_PER_S
        sizes = [-(-len(audios[i]) // hop) * hop for i in kept]
        starts = np.cumsum([0, *sizes[:-1]])
        joined = np.zeros(sum(sizes), dtype=np.float32)
        for i, at in zip(kept, starts, strict=True):
            joined[at : at + len(audios[i])] = audios[i]
        frames = [int(at) // hop for at in starts]
        with self._slots:
            raw, info = self._clips.transcribe(
                joined,
                language=lang,
                beam_size=self.options.beam_size,
                batch_size=self.options.clip_batch_size,
                without_timestamps=True,
                word_timestamps=word_timestamps,
                clip_timestamps=[  # seconds; +0.5 sample: the pipeline truncates s * rate
                    {"start": (at + 0.5) / SAMPLE_RATE, "end": (at + len(audios[i]) + 0.5) / SAMPLE_RATE}
                    for i, at in zip(kept, starts, strict=True)
                ],
            )
            by_clip: list[list[Any]] = [[] for _ in kept]
            for seg in raw:  # the generator does the decoding: consume it here
                # seek is the clip's start frame, or one less (float truncation)
                by_clip[bisect.bisect_right(frames, int(seg.seek) + 1) - 1].append(seg)
        results = [_empty(info.language, audio, used) for audio in audios]
        for n, (index, raw_segments) in enumerate(zip(kept, by_clip, strict=True)):
            verdict = _judge(raw_segments)
            if verdict == "silent":
                continue
            if verdict == "redo":
                redo = self._redecode(audios[index], word_timestamps, lang)
                results[index] = replace(redo, options=MappingProxyType({**used, "redecoded": True}))
                continue
            segments = _collect(raw_segments, frames[n] / _FRAMES_PER_S, seek_words=True)
            results[index] = Transcription(
                " ".join(s.text for s in segments if s.text),
                segments,
                info.language,
                len(audios[index]) / SAMPLE_RATE,
                MappingProxyType(used),
            )
        return results


    def _redecode(
        self, audio: np.ndarray, word_timestamps: bool, language: str | None
    ) -> Transcription:
        """A clip decoded again alone: beam search at temperature 0 with Whisper's
        no-speech rule (deterministic); only when that text still loops, the usual
        temperature fallback (:meth:`transcribe`). Blocking."""
        with self._slots:
            raw, info = self._model.transcribe(
                audio,
                language=language,
                beam_size=max(REDO_BEAM, self.options.beam_size),
                temperature=0.0,
                word_timestamps=word_timestamps,
                condition_on_previous_text=False,
            )
            segments = _collect(raw)
        if any(s.stats.compression_ratio > LOOP_COMPRESSION for s in segments if s.stats):
            return self.transcribe(audio, word_timestamps=word_timestamps, language=language)
        text = " ".join(s.text for s in segments if s.text)
        used = self._echo(language, word_timestamps)
        return Transcription(text, segments, info.language, len(audio) / SAMPLE_RATE,
                             MappingProxyType(used))


def _empty(language: str, audio: np.ndarray, used: dict[str, object]) -> Transcription:
    return Transcription("", (), language, len(audio) / SAMPLE_RATE, MappingProxyType(used))


def _judge(segments: Sequence[Any]) -> str:
    """``silent``, ``redo`` or ``ok`` for one clip's batched output (module constants)."""
    if not segments:
        return "silent"
    return _verdict(
        max(float(s.no_speech_prob) for s in segments),
        min(float(s.avg_logprob) for s in segments),
        loop=max(float(s.compression_ratio) for s in segments) > LOOP_COMPRESSION,
    )


def _verdict(no_speech: float, logprob: float, *, loop: bool) -> str:
    """``silent`` (Whisper's no-speech rule), ``redo`` (a loop or guesswork) or ``ok``."""
    if no_speech > SILENT_NO_SPEECH and logprob < WEAK_LOGPROB:
        return "silent"
    return "redo" if loop or logprob < WEAK_LOGPROB else "ok"


def _as_float32(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {audio.shape}")
    if audio.dtype == np.int16:
        return pcm16_to_float32(audio)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _collect(
    raw: Iterable[Any],
    offset: float = 0.0,
    seek_words: bool = False,
    on_segment: SegmentSink | None = None,
) -> tuple[Segment, ...]:
    """Our segments from faster-whisper's, with its decoder statistics; ``on_segment``
    is told each as soon as the generator yields it. Word times come from cross-attention alignment
    and segment times from timestamp tokens, so a word can run some tens of ms past its
    segment (``you`` ends at 7.58 s in a segment ending at 7.54 s on jfk.wav): words are
    clamped into their segment, so a segment always contains its words. ``offset`` (s)
    is subtracted from every time; with ``seek_words``, word times (which the batched
    pipeline counts from the segment's ``seek`` frame) have that frame's time subtracted."""
    out: list[Segment] = []
    for seg in raw:
        start, end = max(0.0, float(seg.start) - offset), float(seg.end) - offset
        shift = seg.seek / _FRAMES_PER_S if seek_words else offset
        words = tuple(
            Word(w.word.strip(), _within(float(w.start) - shift, start, end),
                 _within(float(w.end) - shift, start, end), float(w.probability))
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


def check_runs_on_cuda(model: WhisperModel) -> None:
    """One encoder pass over 30 s of silence on the GPU (milliseconds there): CTranslate2
    loads cuBLAS on first use, so a missing CUDA library fails here, when the model is
    loaded, instead of on the first request. Raises :class:`DeviceError` saying so."""
    extractor = model.feature_extractor
    silence = np.zeros((extractor.mel_filters.shape[0], extractor.nb_max_frames), np.float32)
    try:
        model.encode(silence)
    except RuntimeError as exc:  # "Library libcublas.so.12 is not found or cannot be loaded"
        hint = (
            f"CTranslate2 {ctranslate2.__version__} needs the cuBLAS it was built for (its "
            "PyPI wheels: CUDA 12's, pip install nvidia-cublas-cu12), or "
            if "cublas" in str(exc).lower() else ""
        )
        raise DeviceError(
            f"Whisper does not run on the GPU: {exc}. {hint}set VOICE_STT_DEVICE=cpu"
        ) from exc
