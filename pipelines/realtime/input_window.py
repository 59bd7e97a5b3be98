"""The recent input audio of a session: amortised appends, cheap trims.

Appending copies only the new chunk (the storage doubles when full, and a trim
moves the kept tail to the front only once the dead head outgrows it), so a long
turn costs O(total samples), not O(samples²) as re-concatenating per chunk did.
"""

from __future__ import annotations

import numpy as np

RATE = 16000
"""Hz."""


class AudioWindow:
    """Mono int16 audio at 16 kHz covering stream time [``start_ms``, ``end_ms``)."""

    def __init__(self, start_ms: float = 0.0) -> None:
        self._data = np.zeros(RATE, dtype=np.int16)
        self._head = 0
        self._tail = 0
        self.start_ms = start_ms

    def __len__(self) -> int:
        return self._tail - self._head

    @property
    def samples(self) -> np.ndarray:
        """The audio held (a view: copy it to keep it past the next change)."""
        return self._data[self._head : self._tail]

    def append(self, pcm: np.ndarray) -> None:
        """Add int16 samples at the end."""
        need = self._tail + len(pcm)
        if need > len(self._data):
            held = len(self)
            if held + len(pcm) <= len(self._data) // 2:
                self._data[:held] = self._data[self._head : self._tail]  # compact in place
            else:
                grown = np.zeros(max(2 * len(self._data), held + len(pcm)), dtype=np.int16)
                grown[:held] = self._data[self._head : self._tail]
                self._data = grown
            self._head, self._tail = 0, held
        self._data[self._tail : self._tail + len(pcm)] = pcm
        self._tail += len(pcm)

    def keep_last(self, keep_ms: float) -> None:
        """Drop all but the last ``keep_ms`` of audio."""
        excess = len(self) - int(keep_ms * RATE / 1000)
        if excess > 0:
            self._head += excess
            self.start_ms += 1000.0 * excess / RATE

    def drop_before(self, at_ms: float) -> None:
        """Drop the audio before stream time ``at_ms`` (no-op when it starts later)."""
        excess = min(len(self), int((at_ms - self.start_ms) * RATE / 1000))
        if excess > 0:
            self._head += excess
            self.start_ms += 1000.0 * excess / RATE

    def clear(self, at_ms: float) -> None:
        """Drop everything; the window restarts at stream time ``at_ms``."""
        self._head = self._tail = 0
        self.start_ms = at_ms

    def slice(self, start_ms: float, end_ms: float | None = None) -> np.ndarray:
        """A copy of the audio in [``start_ms``, ``end_ms``) (to the end when None)."""
        first = max(0, int((start_ms - self.start_ms) * RATE / 1000))
        last = (
            len(self) if end_ms is None else max(first, int((end_ms - self.start_ms) * RATE / 1000))
        )
        return self.samples[first:last].copy()
