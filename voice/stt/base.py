"""Speech-to-text interface: result records, capabilities and the ``Transcriber`` protocol.

Audio handed to a transcriber is mono float32 in [-1, 1) at :data:`SAMPLE_RATE` Hz.
All times in results are seconds from the start of that audio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voice.workers import Ticket, run_on_at

SAMPLE_RATE = 16000
"""The only input rate transcribers accept (Hz)."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; ``start``/``end`` in seconds, ``probability`` in [0, 1]."""

    text: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True, slots=True)
class DecoderStats:
    """What the decoder reported for a segment (Whisper's own statistics).

    ``seek``: start of the decoded window in 10 ms frames; ``tokens``: the segment's
    token ids; ``temperature``: the sampling temperature that produced it (0 unless a
    fallback retried); ``avg_logprob``: mean token log-probability of the window (nats,
    <= 0); ``compression_ratio``: the window text's length over its zlib-compressed
    length (high = repetitive); ``no_speech_prob``: probability in [0, 1] that the
    window holds no speech. Segments decoded in one 30 s window share the last three.
    """

    seek: int
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of recognised text; ``id`` is its index in the transcription, times in seconds.

    ``stats`` holds the decoder's statistics where the backend reports them (Whisper does).
    """

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    stats: DecoderStats | None = None


SegmentSink = Callable[[Segment], None]
"""Told each segment as soon as it is decoded, in the transcribing (worker) thread;
it must be cheap and thread-safe. An exception it raises stops the transcription
and comes out of ``transcribe``."""


@dataclass(frozen=True, slots=True)
class Transcription:
    """A finished transcription.

    ``text`` is the segments' texts joined by single spaces; ``language`` the language
    used or detected; ``duration`` the input length (s); ``options`` echoes what was
    actually used (model, device, compute_type, beam_size, ...).
    """

    text: str
    segments: tuple[Segment, ...]
    language: str
    duration: float
    options: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class SttCapabilities:
    """What a backend can do: incremental results, word timings, batched decoding."""

    streaming: bool
    word_timestamps: bool
    batched: bool


class Transcriber(Protocol):
    """A batch speech-to-text backend."""

    @property
    def capabilities(self) -> SttCapabilities: ...

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
        """Transcribe float32 mono 16 kHz ``audio``. Blocking; safe to call from worker threads.

        ``language`` None means the backend's configured default; ``prompt`` is prior
        text that biases spelling and style; ``vad_filter`` drops non-speech first;
        ``on_segment`` is told each segment as it is decoded (:data:`SegmentSink`).
        """
        ...


async def transcribe_async(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    word_timestamps: bool = False,
    language: str | None = None,
    prompt: str | None = None,
    vad_filter: bool = False,
    priority: int | None = None,
    on_segment: SegmentSink | None = None,
    ticket: Ticket | None = None,
) -> Transcription:
    """Run ``transcriber.transcribe`` in the transcriber's own worker threads
    (:func:`voice.workers.run_on`, as many as its ``concurrency``); ``priority`` in
    the process CPU budget (:mod:`voice.cpu_budget`; None = the transcriber's).
    ``ticket``: withdrawn before the call gets the cores, it raises
    :class:`voice.workers.Withdrawn` instead of transcribing.

    Safe to cancel: the awaiting stops at once, the thread finishes its inference in
    the background and its result is dropped.
    """
    return await run_on_at(
        priority,
        transcriber,
        getattr(transcriber, "concurrency", 2),
        transcriber.transcribe,
        audio,
        ticket=ticket,
        word_timestamps=word_timestamps,
        language=language,
        prompt=prompt,
        vad_filter=vad_filter,
        on_segment=on_segment,
    )


def transcribe_utterance(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    language: str | None = None,
    prompt: str | None = None,
) -> Transcription:
    """One live utterance's text: the transcriber's ``transcribe_utterance`` (a faster
    path for short audio, text only) when it has one, else ``transcribe``. Blocking."""
    short = getattr(transcriber, "transcribe_utterance", None)
    if short is not None:
        result: Transcription = short(audio, language=language, prompt=prompt)
        return result
    return transcriber.transcribe(audio, language=language, prompt=prompt)


async def transcribe_utterance_async(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    language: str | None = None,
    prompt: str | None = None,
    priority: int | None = None,
    ticket: Ticket | None = None,
) -> Transcription:
    """:func:`transcribe_utterance` in the transcriber's worker threads, like
    :func:`transcribe_async` (same priority and ``ticket`` rules, safe to cancel the
    same way)."""
    return await run_on_at(
        priority,
        transcriber,
        getattr(transcriber, "concurrency", 2),
        transcribe_utterance,
        transcriber,
        audio,
        ticket=ticket,
        language=language,
        prompt=prompt,
    )


def transcribe_clips(
    transcriber: Transcriber,
    clips: Sequence[np.ndarray],
    *,
    word_timestamps: bool = False,
    language: str | None = None,
) -> list[Transcription]:
    """One transcription per clip (each at most 30 s, times from its own start): the
    transcriber's batched ``transcribe_clips`` when it has one, else ``transcribe``
    clip by clip (no VAD filter: the clips are speech already). Blocking."""
    batched = getattr(transcriber, "transcribe_clips", None)
    if batched is not None:
        return list(batched(clips, word_timestamps=word_timestamps, language=language))
    return [
        transcriber.transcribe(clip, word_timestamps=word_timestamps, language=language)
        for clip in clips
    ]


async def transcribe_clips_async(
    transcriber: Transcriber,
    clips: Sequence[np.ndarray],
    *,
    word_timestamps: bool = False,
    language: str | None = None,
    priority: int | None = None,
) -> list[Transcription]:
    """:func:`transcribe_clips` in the transcriber's worker threads, like
    :func:`transcribe_async` (same priority rule). Safe to cancel the same way."""
    return await run_on_at(
        priority,
        transcriber,
        getattr(transcriber, "concurrency", 2),
        transcribe_clips,
        transcriber,
        clips,
        word_timestamps=word_timestamps,
        language=language,
    )
