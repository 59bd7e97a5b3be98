"""Audio passed inline as text: ``data:audio/wav;base64,...`` URLs or bare base64.

OpenAI's diarized transcription takes ``known_speaker_references[]`` as data URLs;
the realtime extension and meeting jobs accept the same.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from voice.audio.decode import decode_audio

MAX_REFERENCE_BYTES = 10 * 1024 * 1024
"""Largest voice sample accepted inline (bytes, decoded)."""


def parse_audio_reference(text: str) -> bytes:
    """The audio bytes of a data URL or a base64 string; ValueError when it is neither."""
    text = text.strip()
    if text.startswith("data:"):
        header, sep, payload = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise ValueError("a data URL must be base64-encoded (data:audio/...;base64,...)")
        if not header[5:].startswith(("audio/", "video/", "application/octet-stream")):
            raise ValueError(f"a data URL of type {header[5:].split(';')[0]!r} is not audio")
        text = payload
    if len(text) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
        raise ValueError(f"the audio is larger than {MAX_REFERENCE_BYTES // (1024 * 1024)} MB")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the audio is neither a data URL nor valid base64") from None
    if not data:
        raise ValueError("the audio is empty")
    return data


def reference_bytes(reference: str | bytes) -> bytes:
    """Audio file bytes of a reference given as bytes, base64 or a data URL."""
    return parse_audio_reference(reference) if isinstance(reference, str) else reference


def decode_reference(reference: str | bytes, sample_rate: int = 16000) -> np.ndarray:
    """A reference decoded to float32 mono at ``sample_rate`` Hz. Blocking; raises
    ValueError or :class:`~voice.audio.decode.AudioDecodeError`."""
    return decode_audio(reference_bytes(reference), sample_rate)
