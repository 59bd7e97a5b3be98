"""PCM16 audio frames and sample-format conversions.

Samples are mono ``int16`` numpy arrays; timestamps are milliseconds from the
start of the stream the frame belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
"""Sample rates (Hz) the server accepts and produces."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A chunk of mono PCM16 audio.

    ``samples``: int16 array, ``sample_rate``: Hz, ``start_ms``: position of the
    first sample in its stream (ms).
    """

    samples: np.ndarray
    sample_rate: int
    start_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 1:
            raise ValueError("AudioFrame.samples must be a 1-D int16 array")
        if self.sample_rate <= 0:
            raise ValueError("sample_rate must be positive")

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.samples) / self.sample_rate

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms

    def to_float32(self) -> np.ndarray:
        return pcm16_to_float32(self.samples)

    def to_bytes(self) -> bytes:
        """Little-endian PCM16 bytes."""
        return self.samples.astype("<i2", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, sample_rate: int, start_ms: float = 0.0) -> AudioFrame:
        """Build a frame from little-endian PCM16 bytes (odd trailing byte rejected)."""
        if len(data) % 2:
            raise ValueError("PCM16 data must have an even number of bytes")
        return cls(np.frombuffer(data, dtype="<i2").astype(np.int16), sample_rate, start_ms)


def pcm16_to_float32(samples: np.ndarray) -> np.ndarray:
    """int16 → float32 in [-1, 1)."""
    return samples.astype(np.float32) / 32768.0


def float32_to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] → int16, clipping out-of-range values."""
    return (np.clip(samples, -1.0, 32767.0 / 32768.0) * 32768.0).astype(np.int16)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dBFS of int16 or float samples (-inf for silence)."""
    if len(samples) == 0:
        return float("-inf")
    x = pcm16_to_float32(samples) if samples.dtype == np.int16 else samples.astype(np.float32)
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")
