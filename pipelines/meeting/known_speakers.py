"""Known speakers in meeting mode: named voice samples turn ``Speaker 1`` into ``Katie``.

Like the ``known_speaker_names[]`` / ``known_speaker_references[]`` of OpenAI's
diarized transcription. Each diarized speaker's voice (up to ``MAX_VOICE_S`` of
its longest segments) is embedded and the speakers are paired with the names
one to one, maximising total cosine similarity (Hungarian assignment); a pair
below ``threshold`` keeps its anonymous name. Samples recorded on another
channel than the meeting score lower, hence the low default threshold.

Embedding blocks: call the functions here from worker threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipelines.meeting.document import TranscriptSegment
from voice.audio.references import decode_reference, reference_bytes
from voice.diarize.base import SpeakerEmbedder

RATE = 16000
MAX_VOICE_S = 30.0
"""Speech embedded per diarized speaker (s)."""
DEFAULT_THRESHOLD = 0.3


@dataclass(frozen=True)
class KnownSpeaker:
    """A name and the L2-normalised embedding of its voice sample."""

    name: str
    embedding: np.ndarray


def reference_names(count: int) -> list[str]:
    """The file names of ``count`` voice samples in a job's upload folder."""
    return [f"known-{index}" for index in range(count)]


def write_references(folder: Path, references: Sequence[str | bytes]) -> None:
    """Store voice samples as ``known-<i>`` files in ``folder`` (a job's upload folder)."""
    for name, reference in zip(reference_names(len(references)), references, strict=True):
        (folder / name).write_bytes(reference_bytes(reference))


def read_references(folder: Path, count: int) -> list[bytes]:
    """The ``count`` voice samples :func:`write_references` stored; FileNotFoundError if gone."""
    return [(folder / name).read_bytes() for name in reference_names(count)]


def embed_known(
    embedder: SpeakerEmbedder, names: Sequence[str], references: Sequence[str | bytes]
) -> tuple[KnownSpeaker, ...]:
    """Embed each named voice sample; ValueError naming the speaker whose sample is unusable."""
    if len(names) != len(references):
        raise ValueError("give as many known speaker references as names")
    out = []
    for name, reference in zip(names, references, strict=True):
        try:
            audio = decode_reference(reference, RATE)
        except Exception as exc:
            raise ValueError(f"the voice sample of {name!r} is not usable audio: {exc}") from None
        if len(audio) < RATE:
            raise ValueError(f"the voice sample of {name!r} is shorter than 1 s")
        out.append(KnownSpeaker(name, embedder.embed(audio)))
    return tuple(out)


def name_speakers(
    segments: Sequence[TranscriptSegment],
    samples: np.ndarray,
    embedder: SpeakerEmbedder,
    known: Sequence[KnownSpeaker],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, str]:
    """Label → known name for the diarized speakers that match one (16 kHz float32 audio)."""
    order = dict.fromkeys(s.speaker for s in segments)
    voices_of = {label: _voice_of(label, segments, samples) for label in order}
    labels = [label for label, voice in voices_of.items() if len(voice) >= RATE // 10]
    if not labels or not known:
        return {}
    voices = np.stack([embedder.embed(voices_of[label]) for label in labels])
    names = np.stack([k.embedding for k in known])
    similarity = voices @ names.T
    rows, cols = linear_sum_assignment(-similarity)
    return {
        labels[r]: known[c].name
        for r, c in zip(rows, cols, strict=True)
        if similarity[r, c] >= threshold
    }


def _voice_of(label: str, segments: Sequence[TranscriptSegment], samples: np.ndarray) -> np.ndarray:
    """Up to ``MAX_VOICE_S`` of ``label``'s longest segments with words, joined (a
    wordless segment is crosstalk: another voice is louder there)."""
    own = sorted(
        (s for s in segments if s.speaker == label and s.text.strip()),
        key=lambda s: s.start - s.end,
    )
    pieces, total = [], 0
    for seg in own:
        piece = samples[int(seg.start * RATE) : int(seg.end * RATE)]
        pieces.append(piece)
        total += len(piece)
        if total >= MAX_VOICE_S * RATE:
            break
    voice = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return voice.astype(np.float32)
