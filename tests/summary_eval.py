"""Scoring meeting summaries against AMI's human summaries, with the baselines a
summary must beat. Shared by ``tests/test_summary_eval.py`` and ``bench/summary.py``.

The AMI meetings in ``../shared/data/ami-text`` (ES2003a, ES2003b) come as one
text line per speaker plus the meeting's RTTM; :func:`ami_document` rebuilds a
speaker-labelled transcript from them. A summary is scored by ROUGE-1/2/L
(``rouge-score``, Porter stemming) of all its items' texts against the human
abstractive summary (and, printed only, the human extractive one). The baselines
get the same number of words as the summary being judged: *random* (whole
sentences drawn at random, in transcript order, averaged over seeds) and *lead*
(the first sentences), both cut to exactly that many words.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rouge_score import rouge_scorer

from pipelines.meeting.document import TranscriptDocument, TranscriptSegment
from pipelines.meeting.summary import MeetingSummary
from pipelines.meeting.text import split_sentences
from tests.conftest import DATA_DIR

AMI = DATA_DIR / "ami-text"
MEETINGS = ("ES2003a", "ES2003b")
METRICS = ("rouge1", "rouge2", "rougeL")
SEEDS = 20
"""Random baseline draws averaged per meeting."""


_ACRONYM = re.compile(r"\b(?:[A-Za-z]_){2,}")
"""AMI's spelled-out letters ("L_C_D_", "T_V_"), written as an ASR would ("LCD")."""


def _joined(match: re.Match[str]) -> str:
    return match.group(0).replace("_", "").upper()


def ami_document(meeting: str) -> TranscriptDocument:
    """A speaker-labelled transcript built from ``ami-text``.

    ``<meeting>.transcript.txt`` holds one line per speaker (all their words, in
    order, no times), the lines in order of each speaker's first turn in
    ``<meeting>.full_meeting.rttm``. Each speaker's sentences are dealt to their
    RTTM turns in order, each turn taking about as many words as its length
    allows at that speaker's average rate; a turn that gets text is a segment.
    Spelled-out letters are joined into the acronym (``L_C_D_`` -> ``LCD``).
    """
    lines = [line.strip() for line in (AMI / f"{meeting}.transcript.txt").read_text().split("\n")]
    lines = [line for line in lines if line]
    turns = sorted(
        (float(f[3]), float(f[3]) + float(f[4]), f[7])
        for f in (
            row.split() for row in (AMI / f"{meeting}.full_meeting.rttm").read_text().splitlines()
        )
    )
    order = list(dict.fromkeys(t[2] for t in turns))
    assert len(order) == len(lines), "one transcript line per RTTM speaker"
    queue = {spk: re.split(r"(?<=[.?!])\s+", line) for spk, line in zip(order, lines, strict=True)}
    rate = {
        spk: len(line.split()) / sum(e - s for s, e, x in turns if x == spk)
        for spk, line in zip(order, lines, strict=True)
    }
    left = {spk: sum(1 for t in turns if t[2] == spk) for spk in order}
    segments: list[TranscriptSegment] = []
    for start, end, spk in turns:
        left[spk] -= 1
        taken: list[str] = []
        words = 0
        while queue[spk] and (
            left[spk] == 0
            or not taken
            or words + len(queue[spk][0].split()) <= (end - start) * rate[spk]
        ):
            words += len(queue[spk][0].split())
            taken.append(queue[spk].pop(0))
        if taken:
            segments.append(TranscriptSegment(len(segments), spk, start, end, " ".join(taken)))
    speakers = {spk: f"Speaker {i + 1}" for i, spk in enumerate(order)}
    segments = [replace(s, text=_ACRONYM.sub(_joined, s.text)) for s in segments]
    return TranscriptDocument(tuple(segments), speakers, turns[-1][1], "en", {"source": meeting})


def reference(meeting: str, kind: str = "abssumm") -> str:
    """AMI's human ``abssumm`` (abstractive) or ``extsumm`` (extractive) summary."""
    return (AMI / f"{meeting}.{kind}.txt").read_text()


def summary_text(summary: MeetingSummary) -> str:
    """All item texts of a summary (key points, decisions, actions, questions), in order."""
    parts = (summary.key_points, summary.decisions, summary.action_items, summary.open_questions)
    return " ".join(item.text for part in parts for item in part)


def cut_words(sentences: Sequence[str], words: int) -> str:
    """The sentences joined, cut to ``words`` words."""
    return " ".join(" ".join(sentences).split()[:words])


def random_text(document: TranscriptDocument, words: int, seed: int) -> str:
    """Whole sentences drawn at random until ``words`` words, in transcript order, cut."""
    sentences = [s.text for s in split_sentences(document)]
    rng = random.Random(seed)
    picked: set[int] = set()
    order = list(range(len(sentences)))
    rng.shuffle(order)
    total = 0
    for i in order:
        if total >= words:
            break
        picked.add(i)
        total += len(sentences[i].split())
    return cut_words([sentences[i] for i in sorted(picked)], words)


def lead_text(document: TranscriptDocument, words: int) -> str:
    """The first sentences of the transcript, cut to ``words`` words."""
    return cut_words([s.text for s in split_sentences(document)], words)


@dataclass(frozen=True)
class Scores:
    """ROUGE recall and F1 per metric, e.g. ``recall["rouge1"]``."""

    recall: dict[str, float]
    f1: dict[str, float]

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            m: {"recall": round(self.recall[m], 4), "f1": round(self.f1[m], 4)} for m in METRICS
        }


_SCORER = rouge_scorer.RougeScorer(list(METRICS), use_stemmer=True)


def score(ref: str, hypothesis: str) -> Scores:
    found = _SCORER.score(ref, hypothesis)
    return Scores({m: found[m].recall for m in METRICS}, {m: found[m].fmeasure for m in METRICS})


def mean_scores(items: Sequence[Scores]) -> Scores:
    return Scores(
        {m: sum(s.recall[m] for s in items) / len(items) for m in METRICS},
        {m: sum(s.f1[m] for s in items) / len(items) for m in METRICS},
    )


@dataclass(frozen=True)
class MeetingEval:
    """One meeting: the summary's scores and both baselines', at ``words`` words."""

    meeting: str
    words: int
    summary: Scores
    random: Scores
    lead: Scores


def evaluate(
    meeting: str, document: TranscriptDocument, hypothesis: str, kind: str = "abssumm"
) -> MeetingEval:
    """Score ``hypothesis`` and the baselines of its length against ``kind``."""
    ref = reference(meeting, kind)
    words = len(hypothesis.split())
    randoms = [score(ref, random_text(document, words, seed)) for seed in range(SEEDS)]
    return MeetingEval(
        meeting,
        words,
        score(ref, hypothesis),
        mean_scores(randoms),
        score(ref, lead_text(document, words)),
    )


def table(results: Sequence[MeetingEval]) -> str:
    """A printable table: per meeting and metric, recall and F1 of summary / random / lead."""
    lines = [
        f"{'meeting':8} {'words':>5} {'metric':7} {'summary R/F1':>13} {'random R/F1':>13} {'lead R/F1':>13}"
    ]
    for r in results:
        for m in METRICS:
            cells = [f"{s.recall[m]:.3f}/{s.f1[m]:.3f}" for s in (r.summary, r.random, r.lead)]
            lines.append(f"{r.meeting:8} {r.words:5d} {m:7} " + " ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)
