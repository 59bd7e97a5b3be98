"""Audio synthesized before it is asked for: the first phrase of a reply whose text is
already known (a speculative LLM request), handed over when the reply speaks that phrase."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from voice.tts.base import Synthesizer

WAIT_S = 5.0
"""Longest a reply waits (s) for a synthesis of its phrase already in progress before it
synthesizes the phrase itself."""


class Presynthesized:
    """One phrase's audio, made ahead by :meth:`run` (blocking: a worker thread).

    :meth:`serving` gives a :class:`Synthesizer` that answers the first request for exactly
    ``text`` from this audio (waiting for a run still in progress) and passes every other
    request to the synthesizer it wraps. :meth:`cancel` makes a run stop at its next chunk
    and the phrase be synthesized afresh.
    """

    def __init__(self, synth: Synthesizer, text: str) -> None:
        self.synth = synth
        self.text = text
        self._chunks: list[np.ndarray] = []
        self._done = threading.Event()
        self._ok = False
        self._cancelled = threading.Event()
        self._claimed = False
        self._lock = threading.Lock()

    def run(self) -> None:
        """Synthesize :attr:`text` (blocking); failures leave the phrase to the reply."""
        try:
            for samples in self.synth.synthesize(self.text):
                if self._cancelled.is_set():
                    return
                self._chunks.append(samples)
            self._ok = True
        except Exception:  # the reply synthesizes the phrase itself and sees the error
            self._ok = False
        finally:
            self._done.set()

    def cancel(self) -> None:
        self._cancelled.set()

    def claim(self, text: str) -> list[np.ndarray] | None:
        """The stored audio for ``text``, once; None when it is not (or not yet) here."""
        with self._lock:
            if self._claimed or text != self.text or self._cancelled.is_set():
                return None
            self._claimed = True
        if not self._done.wait(WAIT_S) or not self._ok:
            return None
        return self._chunks

    def serving(self, synth: Synthesizer) -> Synthesizer:
        """``synth`` (the same voice at the same speed), with this phrase served from the
        stored audio."""
        return _Serving(self, synth)


class _Serving:
    """A synthesizer that plays a :class:`Presynthesized` phrase, otherwise delegates."""

    def __init__(self, ahead: Presynthesized, synth: Synthesizer) -> None:
        self._ahead = ahead
        self._synth = synth
        self.sample_rate = synth.sample_rate

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        chunks = self._ahead.claim(text)
        if chunks is None:
            return iter(self._synth.synthesize(text))
        return iter(chunks)
