"""Turning re-transcribed partial hypotheses into append-only transcript deltas.

Whisper re-decodes the whole utterance for each partial, so earlier words may
change. A word is emitted once two consecutive hypotheses agree on it and on
everything before it ("local agreement"); emitted text is never taken back.
"""

from __future__ import annotations


class StablePrefix:
    """Tracks the agreed prefix of successive hypotheses of one utterance."""

    def __init__(self) -> None:
        self._previous: list[str] = []
        self._emitted = 0

    def update(self, hypothesis: str) -> str:
        """Feed the newest full hypothesis; return newly stable text ('' if none)."""
        words = hypothesis.split()
        agreed = 0
        for old, new in zip(self._previous, words, strict=False):
            if _norm(old) != _norm(new):
                break
            agreed += 1
        self._previous = words
        if agreed <= self._emitted:
            return ""
        fresh = words[self._emitted : agreed]
        lead = " " if self._emitted else ""
        self._emitted = agreed
        return lead + " ".join(fresh)


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")
