"""Stream sentences through a synthesizer as fixed-length audio chunks.

Synthesis runs in one worker thread per :func:`speak` call; the blocking
synthesizer iterator is consumed in that thread and its audio is resampled,
re-sliced and handed back to the event loop through an asyncio queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from voice.audio.frames import SUPPORTED_RATES
from voice.audio.resample import StreamResampler
from voice.cpu_budget import FIRST_AUDIO, urgent
from voice.tts.base import Synthesizer
from voice.tts.chunker import SentenceChunker
from voice.tts.textclean import SpeechTextCleaner

WORKER_THREAD_PREFIX = "tts-speak"
_thread_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Audio for part of one sentence.

    ``samples``: int16 mono at ``sample_rate`` Hz; ``text``: the sentence it
    belongs to; ``sentence_index``: position of that sentence in the input
    (0-based); ``is_sentence_end``: the sentence's last chunk.
    """

    samples: np.ndarray
    sample_rate: int
    text: str
    sentence_index: int
    is_sentence_end: bool

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate


class _Done:
    """End-of-stream marker from the worker."""


_DONE = _Done()
_Item = SpeechChunk | _Done | BaseException


class _Worker(threading.Thread):
    """Synthesizes queued sentences until told to stop; posts chunks to the loop."""

    def __init__(
        self,
        synth: Synthesizer,
        sample_rate: int,
        chunk_samples: int,
        post: Callable[[_Item], None],
    ) -> None:
        # Not a daemon: a thread killed inside onnxruntime at interpreter exit aborts the
        # process. Stopped workers finish their sentence and exit, so exit waits briefly.
        super().__init__(name=f"{WORKER_THREAD_PREFIX}-{next(_thread_ids)}", daemon=False)
        self.synth = synth
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.inbox: queue.Queue[str | None | BaseException] = queue.Queue()
        self.stopped = threading.Event()
        self._post = post

    def stop(self) -> None:
        """Ask the worker to exit at its next chunk boundary; never blocks."""
        self.stopped.set()
        self.inbox.put(None)

    def run(self) -> None:
        try:
            for index in itertools.count():
                item = self.inbox.get()
                if self.stopped.is_set():
                    return
                if item is None or isinstance(item, BaseException):
                    self._post(_DONE if item is None else item)
                    return
                self._sentence(index, item)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._post(exc)

    def _sentence(self, index: int, text: str) -> None:
        """Synthesize one piece; the first one at :data:`~voice.cpu_budget.FIRST_AUDIO` in
        the CPU budget (the reply is silent until it is done), the others at their own
        priority (they have the first piece's playing time to get ready)."""
        with urgent(FIRST_AUDIO) if index == 0 else contextlib.nullcontext():
            self._synthesize_piece(index, text)

    def _synthesize_piece(self, index: int, text: str) -> None:
        resampler = StreamResampler(self.synth.sample_rate, self.sample_rate, np.int16)
        pending = np.zeros(0, dtype=np.int16)
        audio = iter(self.synth.synthesize(text))
        try:
            for samples in audio:
                if self.stopped.is_set():
                    return
                resampled = resampler.process(samples.astype(np.int16, copy=False))
                pending = self._slice(np.concatenate([pending, resampled]), index, text)
        finally:
            close = getattr(audio, "close", None)
            if close is not None:
                close()  # a generator stopped early releases its model state here
        if self.stopped.is_set():
            return
        pending = self._slice(np.concatenate([pending, resampler.flush()]), index, text)
        if len(pending):
            self._post(SpeechChunk(pending, self.sample_rate, text, index, True))

    def _slice(self, samples: np.ndarray, index: int, text: str) -> np.ndarray:
        """Post full chunks, keeping at least one sample back for the sentence end."""
        size = self.chunk_samples
        start = 0
        while len(samples) - start > size:
            piece = samples[start : start + size].copy()
            self._post(SpeechChunk(piece, self.sample_rate, text, index, False))
            start += size
        return samples[start:]


async def _feed(sentences: AsyncIterator[str], worker: _Worker) -> None:
    try:
        async for sentence in sentences:
            worker.inbox.put(sentence)
    except Exception as exc:  # passed on in order, after the audio before it
        worker.inbox.put(exc)
    else:
        worker.inbox.put(None)


async def speak(
    synth: Synthesizer,
    sentences: AsyncIterator[str],
    *,
    sample_rate: int,
    chunk_ms: int = 40,
) -> AsyncIterator[SpeechChunk]:
    """Synthesize ``sentences`` as they arrive; yield ``chunk_ms`` chunks at ``sample_rate`` Hz.

    Each chunk is ``round(sample_rate * chunk_ms / 1000)`` samples except the
    last of each sentence, which is shorter (or equal). A chunk is yielded as
    soon as the synthesizer produced its audio; synthesis runs ahead of a
    slow consumer, so real-time playback has no gaps between sentences.
    Blank sentences and ones with nothing to say produce no chunks but keep
    their ``sentence_index``. Errors from ``synth`` or from ``sentences``
    are raised here after the audio that precedes them.

    Safe to cancel (or to ``aclose()``): the worker thread stops at its next
    chunk boundary (Piper: after the sentence in progress) and exits by
    itself; nothing more is yielded and nothing waits for it (except interpreter
    exit, which lets it finish the sentence in progress).
    """
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate}")
    if not 1 <= chunk_ms <= 1000:
        raise ValueError(f"chunk_ms must be in 1..1000, got {chunk_ms}")
    loop = asyncio.get_running_loop()
    out: asyncio.Queue[_Item] = asyncio.Queue()

    def post(item: _Item) -> None:
        try:
            loop.call_soon_threadsafe(out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            worker.stopped.set()

    worker = _Worker(synth, sample_rate, max(1, round(sample_rate * chunk_ms / 1000)), post)
    worker.start()
    feeder = asyncio.create_task(_feed(sentences, worker))
    try:
        while True:
            item = await out.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        worker.stop()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder


async def sentences_from_deltas(
    deltas: AsyncIterator[str], chunker: SentenceChunker | None = None
) -> AsyncIterator[str]:
    """Speakable pieces from a stream of LLM text deltas, each as soon as it is complete.

    Safe to cancel; the chunker is flushed only when ``deltas`` ends.
    """
    chunker = chunker or SentenceChunker()
    async for delta in deltas:
        for piece in chunker.push(delta):
            yield piece
    for piece in chunker.flush():
        yield piece


async def synthesize_text(synth: Synthesizer, text: str, sample_rate: int) -> np.ndarray:
    """All of ``text`` (markdown and emojis stripped) as int16 mono at ``sample_rate`` Hz.

    Safe to cancel, like :func:`speak`.
    """
    cleaner = SpeechTextCleaner()
    cleaned = cleaner.feed(text) + cleaner.flush()

    async def one() -> AsyncIterator[str]:
        yield cleaned

    chunks = [chunk.samples async for chunk in speak(synth, one(), sample_rate=sample_rate)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
