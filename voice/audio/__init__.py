"""Audio primitives: PCM16 frames, WAV files, resampling and decoding uploads."""

from __future__ import annotations

from voice.audio.decode import (
    AudioDecodeError,
    AudioInfo,
    AudioTooLongError,
    decode_audio,
    iter_decode,
    measure_duration_s,
    probe,
)
from voice.audio.frames import (
    SUPPORTED_RATES,
    AudioFrame,
    float32_to_pcm16,
    pcm16_to_float32,
    rms_dbfs,
)
from voice.audio.resample import StreamResampler, resample
from voice.audio.wav import read_wav, wav_bytes, write_wav

__all__ = [
    "SUPPORTED_RATES",
    "AudioDecodeError",
    "AudioFrame",
    "AudioInfo",
    "AudioTooLongError",
    "StreamResampler",
    "decode_audio",
    "float32_to_pcm16",
    "iter_decode",
    "measure_duration_s",
    "pcm16_to_float32",
    "probe",
    "read_wav",
    "resample",
    "rms_dbfs",
    "wav_bytes",
    "write_wav",
]
