"""G.711 μ-law and A-law codecs (8 kHz telephony formats ``audio/pcmu`` and ``audio/pcma``).

Vectorised with numpy: int16 samples ↔ one byte per sample.
"""

from __future__ import annotations

import numpy as np

_MU_BIAS = 0x84


def _segment(magnitude: np.ndarray) -> np.ndarray:
    """Index of the highest set bit above bit 7 (0..7) for magnitudes < 2**15."""
    seg = np.zeros(magnitude.shape, dtype=np.int32)
    for bit in range(8, 15):
        seg += (magnitude >= (1 << bit)).astype(np.int32)
    return seg


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 → μ-law bytes (ITU-T G.711, 14-bit reference arithmetic)."""
    v = samples.astype(np.int32) >> 2
    sign = np.where(v < 0, 0x80, 0)
    magnitude = np.minimum(np.minimum(np.abs(v), 8159) + (_MU_BIAS >> 2), 0x1FFF)
    exponent = np.zeros(magnitude.shape, dtype=np.int32)
    for bit in range(6, 13):
        exponent += (magnitude >= (1 << bit)).astype(np.int32)
    mantissa = (magnitude >> (exponent + 1)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + _MU_BIAS) << exponent
    value = magnitude - _MU_BIAS
    return np.where(u & 0x80, -value, value).astype(np.int16)


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 → A-law bytes."""
    x = samples.astype(np.int32)
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.minimum(np.where(x >= 0, x, -x - 1), 32767)
    exponent = np.maximum(_segment(magnitude), 0)
    mantissa = np.where(exponent == 0, magnitude >> 4, magnitude >> (exponent + 3)) & 0x0F
    return (((exponent << 4) | mantissa) ^ mask).astype(np.uint8).tobytes()


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    value = np.where(seg == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, value, -value).astype(np.int16)


_ULAW_DECODE = _ulaw_table()
_ALAW_DECODE = _alaw_table()


def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes → int16."""
    return _ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes → int16."""
    return _ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]
