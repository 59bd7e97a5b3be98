"""Partial and final transcripts of live speech from a batch :class:`Transcriber`.

The recogniser keeps the current utterance and re-transcribes it in a worker thread:
periodically for partial hypotheses, and once for the final. The final can start
early (:meth:`StreamingRecognizer.speculate`, called when trailing silence begins)
so that its latency hides behind the end-of-speech silence wait. A final never
queues behind a partial of its utterance: when the audio the partial left out is
silence, the partial's result is the final (adopted, not recomputed); otherwise
the final starts at once beside it.

A long utterance is not decoded whole for every final: once a final's point is
followed by :data:`SETTLE_SILENCE_MS` of silence (a pause the speaker went on
from: quiet audio, or a pause the caller's VAD reports, :meth:`~StreamingRecognizer.paused`),
its text is settled and later finals decode only the audio after it and join
the two, so the cost of the last final stays that of the last stretch of speech
however long the turn. (With the settled text as Whisper's prompt, tiny.en copied
its missing punctuation and left the turn's end unpunctuated; without it, WER on the
reference clips is unchanged.)

Positions are milliseconds from the start of the utterance; audio is mono 16 kHz.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace

import numpy as np

from voice.audio.frames import pcm16_to_float32, rms_dbfs
from voice.cpu_budget import LIVE_AUX
from voice.stt.base import SAMPLE_RATE, Transcriber, Transcription, transcribe_utterance_async
from voice.workers import Ticket, queued, spare_for

_SILENCE_WINDOW = SAMPLE_RATE // 50  # 20 ms, in samples
SETTLE_SILENCE_MS = 400
"""Silence (ms) after a final's point that settles its text (a pause within the turn)."""
SETTLE_MIN_MS = 4000
"""Audio (ms) a settled text must add to the one before: Whisper decodes a short
stretch alone worse (jfk's "ask not" became "Ask the."), so shorter ones are decoded
with what follows."""


@dataclass(frozen=True, slots=True)
class _Final:
    """A final transcription of the first ``upto`` samples, running or done."""

    upto: int
    task: asyncio.Task[Transcription]
    ticket: Ticket | None = None
    """Its own inference's claim on the cores (None: it adopted a partial's)."""

    def drop(self) -> None:
        """Cancel it; its inference is skipped if it has not got the cores yet."""
        self.task.cancel()
        if self.ticket is not None:
            self.ticket.withdraw()


class StreamingRecognizer:
    """Partial and final transcripts for one utterance at a time.

    Use from a single event loop. At most one partial and one final inference run per
    recogniser, also across cancellations: a cancelled call abandons its thread, which
    finishes in the background with its result dropped, and the next inference of its
    kind waits for it (a partial waits for any).
    ``silence_dbfs``: audio appended after a speculation point counts as silence when
    every 20 ms window is quieter than this (dBFS). ``prompt``: prior text passed to
    every inference (Whisper's initial prompt: spellings, names, style).
    """

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        sample_rate: int = SAMPLE_RATE,
        partial_interval_ms: float = 400,
        min_partial_ms: float = 300,
        language: str | None = None,
        silence_dbfs: float = -40.0,
        prompt: str | None = None,
    ) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"StreamingRecognizer needs {SAMPLE_RATE} Hz audio; resample first")
        self._transcriber = transcriber
        self._language = language
        self._prompt = prompt or None
        self._interval = int(partial_interval_ms * SAMPLE_RATE / 1000)
        self._min_partial = int(min_partial_ms * SAMPLE_RATE / 1000)
        self._silence_dbfs = silence_dbfs
        self._buf = np.zeros(SAMPLE_RATE * 8, dtype=np.float32)
        self._len = 0
        self._generation = 0
        self._partial_from = 0
        self._partial_running = False
        self._last_partial: str | None = None
        self._worker: asyncio.Future[Transcription] | None = None
        """The latest final inference (its thread may outlive a cancelled caller)."""
        self._partial_job: _Final | None = None
        """The latest partial inference of this utterance and the samples it covers."""
        self._final: _Final | None = None
        self._settled: tuple[int, Transcription] | None = None
        """The final transcription of the first samples up to a pause, and that count."""
        self._pause_at: int | None = None
        """Where the last pause the caller reported (:meth:`paused`) began (samples)."""

    @property
    def duration_ms(self) -> float:
        """Length of the current utterance (ms)."""
        return 1000.0 * self._len / SAMPLE_RATE

    @property
    def last_partial(self) -> str | None:
        """The latest partial hypothesis of this utterance, if any."""
        return self._last_partial

    @property
    def busy(self) -> bool:
        """True while an inference (or a pending final) is under way."""
        workers = (self._worker, self._partial_job.task if self._partial_job else None)
        worker_busy = any(w is not None and not w.done() for w in workers)
        final_busy = self._final is not None and not self._final.task.done()
        return worker_busy or final_busy

    def append(self, samples: np.ndarray) -> None:
        """Add mono 16 kHz audio (float32 in [-1, 1) or int16) to the utterance."""
        if samples.ndim != 1:
            raise ValueError(f"samples must be mono (1-D), got shape {samples.shape}")
        chunk = pcm16_to_float32(samples) if samples.dtype == np.int16 else samples
        end = self._len + len(chunk)
        if end > len(self._buf):
            grown = np.zeros(max(end, 2 * len(self._buf)), dtype=np.float32)
            grown[: self._len] = self._buf[: self._len]
            self._buf = grown
        self._buf[self._len : end] = chunk
        self._len = end

    async def maybe_partial(self) -> str | None:
        """Re-transcribe the utterance if due; returns the new hypothesis or None.

        Due means at least ``partial_interval_ms`` of audio arrived since the last
        partial, the utterance is at least ``min_partial_ms`` long, nothing of this
        utterance is in flight, the model has a free worker and the CPU budget has a
        core to spare (:func:`voice.workers.spare_for`): partials give way to final
        transcriptions, speech synthesis and LLM prompts of this session or others, and
        are skipped, not queued, while the cores are busy (several sessions at once).
        None also when the text did not change or :meth:`reset` intervened.
        Safe to cancel.
        """
        n = self._len
        if (
            self._partial_running
            or self.busy
            or n < self._min_partial
            or n - self._partial_from < self._interval
            or queued(self._transcriber) >= getattr(self._transcriber, "concurrency", 2)
            or not spare_for(self._transcriber)
        ):
            return None
        generation = self._generation
        self._partial_running = True
        self._partial_from = n
        try:
            job = self._start_partial(n)
            result = await asyncio.shield(job.task)
        finally:
            if generation == self._generation:
                self._partial_running = False
        if generation != self._generation or not result.text or result.text == self._last_partial:
            return None
        self._last_partial = result.text
        return result.text

    def speculate(self, upto_ms: float | None = None) -> None:
        """Start the final transcription of the audio up to ``upto_ms`` (default: all) now.

        Call when trailing silence begins; a later :meth:`finalize` reuses the result
        if nothing but silence was appended after that point. Needs a running loop.
        """
        self._start_final(self._cut(upto_ms))

    async def finalize(self, upto_ms: float | None = None) -> Transcription:
        """The final transcription of the utterance, optionally only up to ``upto_ms``.

        Reuses a speculation of the same point, or of an earlier point followed only by
        silence. Does not clear the utterance (call :meth:`reset`). Safe to cancel: the
        work goes on and a repeated call picks up its result. Raises
        ``asyncio.CancelledError`` if :meth:`reset` is called meanwhile.
        """
        n = self._cut(upto_ms)
        final = self._final
        if final is None or not self._reusable(final, n):
            final = self._start_final(n)
        return await asyncio.shield(final.task)

    def paused(self, upto_ms: float, silence_ms: float) -> None:
        """The speaker paused ``silence_ms`` after ``upto_ms`` and went on (the caller's
        VAD says so, where the audio itself may not be quiet): a final of ``upto_ms`` may
        be settled (module docstring)."""
        if silence_ms >= SETTLE_SILENCE_MS:
            self._pause_at = self._cut(upto_ms)

    def reset(self) -> None:
        """Forget the utterance and drop in-flight work (a running thread's result is discarded)."""
        self._generation += 1
        if self._final is not None:
            self._final.drop()
            self._final = None
        self._partial_job = None  # its thread finishes; the result is dropped
        self._settled = None
        self._pause_at = None
        self._len = 0
        self._partial_from = 0
        self._partial_running = False
        self._last_partial = None

    async def aclose(self) -> None:
        """Reset and wait until the worker thread is idle. Safe to cancel."""
        final, partial = self._final, self._partial_job
        self.reset()
        tasks = (self._worker, final.task if final else None, partial.task if partial else None)
        pending = [f for f in tasks if f is not None]
        if pending:
            await asyncio.wait(pending)

    # --- internals -------------------------------------------------------------

    def _cut(self, upto_ms: float | None) -> int:
        if upto_ms is None:
            return self._len
        return max(0, min(self._len, round(upto_ms * SAMPLE_RATE / 1000)))

    def _start_final(self, n: int) -> _Final:
        if self._final is not None:
            if self._final.upto == n and self._healthy(self._final.task):
                return self._final
            self._settle(self._final, n)
            self._final.drop()  # superseded: not worth the cores if still waiting
        partial = self._partial_job
        if partial is not None and self._reusable(partial, n):
            # The partial heard everything but silence: its result is the final.
            task = asyncio.create_task(_result(partial.task))
            self._final = _Final(partial.upto, task)
        else:
            ticket = Ticket()
            head = self._settled if self._settled is not None and self._settled[0] < n else None
            audio = self._buf[head[0] if head else 0 : n].copy()
            task = asyncio.create_task(self._final_of(audio, head, ticket))
            self._final = _Final(n, task, ticket)
        task.add_done_callback(_retrieve)
        return self._final

    def _settle(self, final: _Final, n: int) -> None:
        """Keep ``final``'s text as settled if it is done and a pause followed its point
        before sample ``n``."""
        task, pause = final.task, SETTLE_SILENCE_MS * SAMPLE_RATE // 1000
        if (
            task.done()
            and not task.cancelled()
            and task.exception() is None
            and final.upto - (self._settled[0] if self._settled else 0)
            >= SETTLE_MIN_MS * SAMPLE_RATE // 1000
            and final.upto + pause <= n
            and task.result().text
            and (
                final.upto == self._pause_at
                or self._is_silence(self._buf[final.upto : final.upto + pause])
            )
        ):
            self._settled = (final.upto, task.result())

    async def _final_of(
        self, audio: np.ndarray, head: tuple[int, Transcription] | None, ticket: Ticket
    ) -> Transcription:
        """The final transcription of ``audio``: the utterance, or what follows the
        settled ``head`` (its sample count and text), joined to it."""
        tail = await self._infer(audio, ticket=ticket)
        return tail if head is None else _joined(head[1], tail, head[0] / SAMPLE_RATE)

    def _start_partial(self, n: int) -> _Final:
        """Transcribe the first ``n`` samples for a partial (:data:`LIVE_AUX`), after any
        inference of this utterance in flight; recorded so that a final may adopt it."""
        previous = [
            f for f in (self._worker, self._partial_job.task if self._partial_job else None)
            if f is not None and not f.done()
        ]
        task = asyncio.create_task(self._infer(self._buf[:n].copy(), LIVE_AUX, after=previous))
        task.add_done_callback(_retrieve)
        self._partial_job = _Final(n, task)
        return self._partial_job

    def _reusable(self, final: _Final, n: int) -> bool:
        if not self._healthy(final.task) or final.upto > n:
            return False
        return final.upto == n or self._is_silence(self._buf[final.upto : n])

    @staticmethod
    def _healthy(task: asyncio.Task[Transcription]) -> bool:
        return not task.done() or (not task.cancelled() and task.exception() is None)

    def _is_silence(self, tail: np.ndarray) -> bool:
        for start in range(0, len(tail), _SILENCE_WINDOW):
            if rms_dbfs(tail[start : start + _SILENCE_WINDOW]) >= self._silence_dbfs:
                return False
        return True

    async def _infer(
        self,
        audio: np.ndarray,
        priority: int | None = None,
        after: list[asyncio.Future[Transcription]] | None = None,
        ticket: Ticket | None = None,
    ) -> Transcription:
        """Run one inference once the inferences ``after`` (default: the previous final)
        have finished; safe to cancel. ``priority`` in the CPU budget: partials pass
        :data:`LIVE_AUX`, so finals and speech of every session go first (None = the
        transcriber's own). Only finals are recorded as :attr:`_worker`."""
        if after is None:
            while self._worker is not None and not self._worker.done():
                await asyncio.wait([self._worker])
        elif after:
            await asyncio.wait(after)
        worker = asyncio.ensure_future(
            transcribe_utterance_async(
                self._transcriber,
                audio,
                language=self._language,
                prompt=self._prompt,
                priority=priority,
                ticket=ticket,
            )
        )
        worker.add_done_callback(_retrieve)
        if after is None:
            self._worker = worker
        return await asyncio.shield(worker)


_SENTENCE_ENDS = (".", "!", "?", "\u2026", '."', '?"', '!"')
_COMMON_OPENERS = frozenset(
    [
        "a", "an", "the", "this", "that", "these", "those", "my", "your", "our", "their", "his", "her",
        "its", "some", "any", "no", "every", "and", "but", "or", "so", "then", "because", "if", "when",
        "while", "as", "what", "who", "how", "why", "where", "which", "whose", "it", "we", "you", "he",
        "she", "they", "there", "here", "to", "of", "in", "on", "at", "for", "with", "from", "by",
        "not", "do", "does", "did", "is", "are", "was", "were", "be", "can", "could", "will", "would",
        "should", "may", "might", "must", "let", "just", "also",
    ]
)
"""English words Whisper capitalises only because they open what it decoded (names and
"I" are not among them)."""
_FIRST_WORD = re.compile(r"^(\W*)([A-Z][a-z']*)")


def _lower_opening(text: str) -> str:
    """``text`` with its first word lower-cased when it is one of :data:`_COMMON_OPENERS`."""
    match = _FIRST_WORD.match(text)
    if match is None or match.group(2).lower() not in _COMMON_OPENERS:
        return text
    return match.group(1) + match.group(2).lower() + text[match.end() :]


def _continuing(head: Transcription, tail: Transcription) -> Transcription:
    """``tail`` as the rest of the sentence ``head`` stopped in: decoded alone, Whisper
    opens it as a sentence ("ask not What your country"); when ``head`` ends without a
    sentence's end and the language is English, a common first word loses its capital
    (in the text, the first segment and its first word)."""
    if tail.language != "en" or not tail.segments or head.text.rstrip().endswith(_SENTENCE_ENDS):
        return tail
    first = tail.segments[0]
    words = first.words
    if words:
        words = (replace(words[0], text=_lower_opening(words[0].text)), *words[1:])
    segment = replace(first, text=_lower_opening(first.text), words=words)
    return replace(tail, text=_lower_opening(tail.text), segments=(segment, *tail.segments[1:]))


def _joined(head: Transcription, tail: Transcription, offset_s: float) -> Transcription:
    """``head`` followed by ``tail``, whose times start ``offset_s`` later (its opening
    word lower-cased where it continues ``head``'s sentence: :func:`_continuing`)."""
    tail = _continuing(head, tail)
    shifted = tuple(
        replace(
            segment,
            id=len(head.segments) + i,
            start=segment.start + offset_s,
            end=segment.end + offset_s,
            words=tuple(
                replace(w, start=w.start + offset_s, end=w.end + offset_s) for w in segment.words
            ),
        )
        for i, segment in enumerate(tail.segments)
    )
    return replace(
        tail,
        text=" ".join(t for t in (head.text, tail.text) if t),
        segments=head.segments + shifted,
        duration=offset_s + tail.duration,
    )


async def _result(task: asyncio.Future[Transcription]) -> Transcription:
    """``task``'s result, without cancelling it when the waiter is cancelled."""
    return await asyncio.shield(task)


def _retrieve(future: asyncio.Future[Transcription]) -> None:
    """Mark an abandoned run's exception as seen (its caller may have been cancelled)."""
    if not future.cancelled():
        future.exception()
