"""The text-to-speech interface and its options.

A backend turns text into mono int16 audio at its own native rate; streaming,
resampling and cancellation live in :mod:`voice.tts.stream`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class TtsError(RuntimeError):
    """Synthesis failed."""


class VoiceLoadError(TtsError, ValueError):
    """A voice could not be loaded; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class TtsOptions:
    """Options for a synthesizer.

    ``voice``: ``"joe"`` (the shipped en_US-joe-medium) or a path to a Piper
    ``.onnx`` voice with its ``.onnx.json`` config beside it.
    ``length_scale``: speaking-time multiplier on the voice's own pace
    (1.0 = as trained, 1.25 = slower, 0.8 = faster).
    ``speaker_id``: speaker of a multi-speaker voice (None = its default).
    ``cpu_threads``: onnxruntime intra-op threads (0 = automatic: 1 on a
    machine with up to 2 cores, 2 above; see :mod:`voice.tts.piper`).
    """

    voice: str = "joe"
    length_scale: float = 1.0
    speaker_id: int | None = None
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if not 0.2 < self.length_scale < 3.0:
            raise ValueError(f"length_scale must be in (0.2, 3.0), got {self.length_scale}")
        if self.speaker_id is not None and self.speaker_id < 0:
            raise ValueError(f"speaker_id must be >= 0, got {self.speaker_id}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")


@runtime_checkable
class Synthesizer(Protocol):
    """Text in, mono int16 audio chunks out at :attr:`sample_rate` (Hz).

    :meth:`synthesize` is blocking: call it from a worker thread and consume
    the returned iterator in that same thread. Chunks are produced lazily, so
    a consumer that stops iterating stops synthesis at the next chunk
    boundary (for Piper: one chunk per sentence).
    """

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]: ...
