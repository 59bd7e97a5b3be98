"""Diarization interfaces: who spoke when, and speaker embeddings.

Audio everywhere in this package is a float32 mono numpy array at
:data:`SAMPLE_RATE` (16 kHz) with samples in [-1, 1]. Times are seconds from
the first sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from voice.vad.base import FrameProbabilities

SAMPLE_RATE = 16000
"""Sample rate (Hz) every diarizer and embedder expects."""

Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """One stretch of speech by one speaker: ``start``/``end`` in seconds."""

    start: float
    end: float
    speaker: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end:
            raise ValueError(f"invalid turn {self.start}..{self.end} s")

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class DiarizeOptions:
    """How many speakers to look for.

    Either an exact ``num_speakers`` or optional ``min_speakers``/``max_speakers``
    bounds; all unset lets the backend decide.
    """

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (got {value})")
        if self.num_speakers is not None and (
            self.min_speakers is not None or self.max_speakers is not None
        ):
            raise ValueError("give either num_speakers or min_speakers/max_speakers, not both")
        if (
            self.min_speakers is not None
            and self.max_speakers is not None
            and self.min_speakers > self.max_speakers
        ):
            raise ValueError(
                f"min_speakers ({self.min_speakers}) exceeds max_speakers ({self.max_speakers})"
            )

    @property
    def bounds(self) -> tuple[int, int | None]:
        """``(lowest, highest)`` allowed speaker count; ``highest`` None = unbounded."""
        if self.num_speakers is not None:
            return self.num_speakers, self.num_speakers
        return self.min_speakers or 1, self.max_speakers


class Diarizer(Protocol):
    """Splits a recording into speaker turns."""

    def diarize(
        self,
        audio: np.ndarray,
        options: DiarizeOptions = DiarizeOptions(),
        speech: FrameProbabilities | None = None,
    ) -> list[SpeakerTurn]:
        """Turns sorted by start, labelled ``SPEAKER_00``, ``SPEAKER_01``... in order
        of first appearance. Blocking (seconds of CPU work): call it from a worker
        thread, never from the event loop.

        ``speech``: a VAD's frame probabilities over this same ``audio``, when the
        caller has them; a backend that runs that VAD model itself uses them instead
        (same result, one VAD pass saved) and ignores them otherwise.

        A backend whose turns can overlap may also offer ``voice_embedder``: the
        :class:`SpeakerEmbedder` that tells its speakers apart, which the meeting pipeline
        uses to give words said in an overlap to the voice that says them.
        """
        ...


class SpeakerEmbedder(Protocol):
    """Maps speech by one speaker to a fixed-size voice fingerprint."""

    @property
    def dimension(self) -> int:
        """Length of the embedding vector."""
        ...

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """L2-normalised float32 vector for ``audio`` (16 kHz float32 mono).

        Compare two embeddings with a dot product (cosine similarity). Blocking.
        """
        ...


def speaker_label(index: int) -> str:
    """``SPEAKER_00`` style label for the ``index``-th speaker (0-based)."""
    return f"SPEAKER_{index:02d}"


def relabel_in_order(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Sort turns by time and rename speakers ``SPEAKER_00``... by first appearance."""
    ordered = sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
    names: dict[str, str] = {}
    for turn in ordered:
        names.setdefault(turn.speaker, speaker_label(len(names)))
    return [SpeakerTurn(t.start, t.end, names[t.speaker]) for t in ordered]


def check_audio(audio: np.ndarray) -> np.ndarray:
    """Validate a 1-D float waveform and return it as contiguous float32."""
    if audio.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got {audio.dtype}")
    return np.ascontiguousarray(audio, dtype=np.float32)


def resolve_device(device: Device) -> Literal["cpu", "cuda"]:
    """``auto`` becomes ``cuda`` when torch sees a GPU, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
