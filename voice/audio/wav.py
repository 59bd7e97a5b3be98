"""Mono 16-bit PCM WAV files with the standard library's ``wave`` module.

For any other format or layout use :mod:`voice.audio.decode`.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voice.audio.frames import float32_to_pcm16

WavTarget = str | Path | BinaryIO


def _as_pcm16(samples: np.ndarray) -> np.ndarray:
    if samples.ndim != 1:
        raise ValueError("write_wav takes 1-D mono samples")
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return float32_to_pcm16(samples.astype(np.float32, copy=False))
    raise TypeError(f"write_wav takes int16 or float samples, got {samples.dtype}")


def read_wav(path_or_file: WavTarget) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV: ``(int16 samples, sample rate in Hz)``.

    Multi-channel files are down-mixed to mono by averaging the channels.
    Raises ``ValueError`` for sample widths other than 16 bits.
    """
    source = str(path_or_file) if isinstance(path_or_file, Path) else path_or_file
    with wave.open(source, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM WAV, got {8 * wav.getsampwidth()}-bit")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        frames = pcm[: len(pcm) - len(pcm) % channels].reshape(-1, channels)
        pcm = np.round(frames.astype(np.float32).mean(axis=1)).astype(np.int16)
    return pcm.astype(np.int16, copy=False), rate


def write_wav(path_or_file: WavTarget, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono samples (int16, or float in [-1, 1]) as a 16-bit WAV at ``sample_rate`` Hz."""
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    pcm = _as_pcm16(samples)
    target = str(path_or_file) if isinstance(path_or_file, Path) else path_or_file
    with wave.open(target, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.astype("<i2", copy=False).tobytes())


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """The bytes of a mono 16-bit WAV file holding ``samples`` at ``sample_rate`` Hz."""
    buf = io.BytesIO()
    write_wav(buf, samples, sample_rate)
    return buf.getvalue()
