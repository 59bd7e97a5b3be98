"""Private streaming resampler for TTS output (soxr).

Stand-in until :mod:`voice.audio.resample` lands; same shape:
``StreamResampler(src_rate, dst_rate, dtype)`` with ``process()`` / ``flush()``.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamResampler:
    """Resamples one continuous mono stream in pieces (rates in Hz).

    After :meth:`flush` the total output length is ``round(n * dst / src)``
    samples for ``n`` input samples. Not thread-safe; one stream per instance.
    """

    def __init__(self, src_rate: int, dst_rate: int, dtype: str = "int16") -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.dtype = np.dtype(dtype)
        self._stream = (
            None
            if src_rate == dst_rate
            else soxr.ResampleStream(src_rate, dst_rate, 1, dtype=self.dtype.name, quality="HQ")
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next piece; may return fewer samples than expected (held in the filter)."""
        samples = np.ascontiguousarray(samples, dtype=self.dtype)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples)

    def flush(self) -> np.ndarray:
        """Drain what the filter holds; the instance cannot be used afterwards."""
        if self._stream is None:
            return np.zeros(0, dtype=self.dtype)
        return self._stream.resample_chunk(np.zeros(0, dtype=self.dtype), last=True)
