"""Sample-rate conversion with soxr (high quality), one-shot and streaming.

Arrays are mono 1-D (or ``(samples, channels)``); rates are Hz. The sample
dtype is preserved: int16 in gives int16 out, float32 in gives float32 out.
"""

from __future__ import annotations

import numpy as np
import soxr

_DTYPES = (np.int16, np.int32, np.float32, np.float64)
_QUALITY = "HQ"


def _check(src_rate: int, dst_rate: int) -> None:
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive (got {src_rate} Hz → {dst_rate} Hz)")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.type not in _DTYPES:
        raise TypeError(f"cannot resample {dtype} samples; use int16, int32, float32 or float64")


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole signal from ``src_rate`` Hz to ``dst_rate`` Hz.

    Returns ``samples`` itself when the rates are equal. The output has about
    ``len(samples) * dst_rate / src_rate`` samples and the input's dtype.
    """
    _check(src_rate, dst_rate)
    _check_dtype(samples.dtype)
    if src_rate == dst_rate:
        return samples
    if len(samples) == 0:
        return samples[:0].copy()
    out: np.ndarray = soxr.resample(np.ascontiguousarray(samples), src_rate, dst_rate, _QUALITY)
    return out.astype(samples.dtype, copy=False)


class StreamResampler:
    """Resample a chunked stream (e.g. 48 kHz WebRTC frames → 16 kHz).

    Feed chunks of any length to :meth:`process`; call :meth:`flush` once at
    the end of the stream to get the samples the filter still holds. After
    ``flush`` the resampler is ready for a new stream. Output of ``process``
    lags the input by the filter delay (a few ms), so a chunk may give
    slightly fewer samples than ``len(chunk) * dst_rate / src_rate``; the
    total over the stream matches the one-shot :func:`resample`. Not
    thread-safe.
    """

    def __init__(
        self, src_rate: int, dst_rate: int, dtype: type[np.generic] | np.dtype = np.int16
    ) -> None:
        _check(src_rate, dst_rate)
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self.dtype = np.dtype(dtype)
        _check_dtype(self.dtype)
        self._stream: soxr.ResampleStream | None = None
        if src_rate != dst_rate:
            self._stream = soxr.ResampleStream(
                src_rate, dst_rate, 1, dtype=self.dtype.name, quality=_QUALITY
            )

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk (1-D, this resampler's dtype); returns what is ready."""
        if chunk.dtype != self.dtype:
            raise TypeError(f"expected {self.dtype} samples, got {chunk.dtype}")
        if chunk.ndim != 1:
            raise ValueError("StreamResampler takes 1-D mono chunks")
        if self._stream is None:
            return chunk.copy()
        if len(chunk) == 0:
            return chunk.copy()
        out: np.ndarray = self._stream.resample_chunk(np.ascontiguousarray(chunk))
        return out

    def flush(self) -> np.ndarray:
        """End the stream: return the remaining samples and reset for a new stream."""
        if self._stream is None:
            return np.zeros(0, dtype=self.dtype)
        out: np.ndarray = self._stream.resample_chunk(np.zeros(0, dtype=self.dtype), last=True)
        self._stream.clear()
        return out
