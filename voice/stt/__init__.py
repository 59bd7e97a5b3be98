"""Speech-to-text: the ``Transcriber`` interface, Whisper on faster-whisper, streaming
partials/finals for live speech, model resolution and transcript formats."""

from voice.stt.base import (
    SAMPLE_RATE,
    DecoderStats,
    Segment,
    SegmentSink,
    SttCapabilities,
    Transcriber,
    Transcription,
    Word,
    transcribe_async,
    transcribe_clips,
    transcribe_clips_async,
)
from voice.stt.formats import FORMATS, format_timestamp, render, to_dict, to_srt, to_text, to_vtt
from voice.stt.models import (
    BASE_MODEL_BYTES,
    DeviceError,
    ModelError,
    ModelInfo,
    assemble_base,
    choose_device,
    list_models,
    resolve_model,
)
from voice.stt.streaming import StreamingRecognizer
from voice.stt.whisper import WhisperOptions, WhisperTranscriber

__all__ = [
    "BASE_MODEL_BYTES",
    "FORMATS",
    "SAMPLE_RATE",
    "DecoderStats",
    "DeviceError",
    "ModelError",
    "ModelInfo",
    "Segment",
    "SegmentSink",
    "StreamingRecognizer",
    "SttCapabilities",
    "Transcriber",
    "Transcription",
    "WhisperOptions",
    "WhisperTranscriber",
    "Word",
    "assemble_base",
    "choose_device",
    "format_timestamp",
    "list_models",
    "render",
    "resolve_model",
    "to_dict",
    "to_srt",
    "to_text",
    "to_vtt",
    "transcribe_async",
    "transcribe_clips",
    "transcribe_clips_async",
]
