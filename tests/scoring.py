"""Scoring shared by the diarization tests: speaker-attributed WER (cpWER) and DER."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import jiwer
import numpy as np
from scipy.optimize import linear_sum_assignment

from pipelines.meeting.document import TranscriptDocument


def normalise_words(text: str) -> list[str]:
    """Lower case, hyphens as spaces, punctuation dropped (apostrophes inside words kept)."""
    text = re.sub(r"[^\w'\s]", " ", text.lower().replace("-", " "))
    return re.sub(r"(?<!\w)'|'(?!\w)", " ", text).split()


def _errors(reference: list[str], hypothesis: list[str]) -> int:
    if not reference:
        return len(hypothesis)
    if not hypothesis:
        return len(reference)
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return out.substitutions + out.deletions + out.insertions


def cp_wer(reference: dict[str, str], hypothesis: dict[str, str]) -> tuple[float, dict[str, str]]:
    """Concatenated minimum-permutation WER: each speaker's words concatenated, hypothesis
    speakers mapped one-to-one onto reference speakers (Hungarian assignment minimising
    errors; extra speakers on either side are matched with nobody, so all their words
    count as insertions or deletions); total errors / reference words. Also returns
    the mapping hypothesis -> reference speaker."""
    refs, hyps = list(reference), list(hypothesis)
    size = max(len(refs), len(hyps))
    ref_words = [normalise_words(reference[r]) for r in refs] + [[]] * (size - len(refs))
    hyp_words = [normalise_words(hypothesis[h]) for h in hyps] + [[]] * (size - len(hyps))
    cost = np.array([[_errors(r, h) for h in hyp_words] for r in ref_words])
    rows, cols = linear_sum_assignment(cost)
    total = sum(len(r) for r in ref_words)
    mapping = {
        hyps[c]: refs[r] for r, c in zip(rows, cols, strict=True) if r < len(refs) and c < len(hyps)
    }
    return float(cost[rows, cols].sum()) / total, mapping


def read_stm(path: Path) -> dict[str, str]:
    """Reference words per speaker from an STM file (``uri channel speaker start end text``)."""
    words: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6:
            words.setdefault(fields[2], []).append(fields[5])
    return {spk: " ".join(parts) for spk, parts in words.items()}


def der_of_turns(
    turns: Iterable[tuple[float, float, str]],
    rttm: Path,
    collar: float = 0.0,
    uem: Path | None = None,
) -> float:
    """DER (pyannote.metrics, ``collar`` s) of ``(start s, end s, speaker)`` turns against
    the first recording of an RTTM file, scored inside ``uem`` when given."""
    from pyannote.core import Annotation, Timeline
    from pyannote.core import Segment as Span
    from pyannote.metrics.diarization import DiarizationErrorRate

    from voice.diarize.rttm import read_rttm, read_uem

    scored = None
    if uem is not None:
        regions = next(iter(read_uem(uem).values()))
        scored = Timeline([Span(start, end) for start, end in regions])

    reference, hypothesis = Annotation(), Annotation()
    for turn in next(iter(read_rttm(rttm).values())):
        reference[Span(turn.start, turn.end)] = turn.speaker
    for start, end, speaker in turns:
        if end > start:
            hypothesis[Span(start, end)] = speaker
    return float(DiarizationErrorRate(collar=collar)(reference, hypothesis, uem=scored))


def der(doc: TranscriptDocument, rttm: Path, collar: float = 0.0) -> float:
    """DER of a transcript document's segments."""
    return der_of_turns(((s.start, s.end, s.speaker) for s in doc.segments), rttm, collar)
