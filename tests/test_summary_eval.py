"""The extractive summary against AMI's human summaries, and against the baselines it
must beat: random sentences (averaged over seeds) and the meeting's first sentences,
both of the same length in words (:mod:`tests.summary_eval`).

The key points are the part of the summary that tells the meeting's story, as
AMI's abstractive summaries do; they are scored with ROUGE-1/2/L, recall and F1.
Decisions, action items and open questions are not scored here (AMI's text set
has no separate reference for them); ``bench/summary.py`` reports all parts
together too, and the human extractive summary as a second reference.
"""

from __future__ import annotations

import pytest

from pipelines.meeting.extractive import extractive_parts
from pipelines.meeting.summarize import assemble
from tests.summary_eval import (
    MEETINGS,
    METRICS,
    MeetingEval,
    ami_document,
    evaluate,
    table,
)
from voice.text.embeddings import SentenceEmbedder

MARGIN = 1.05
"""The key points' mean score must exceed the better baseline's by this factor."""


@pytest.fixture(scope="module")
def results() -> list[MeetingEval]:
    out = []
    for meeting in MEETINGS:
        doc = ami_document(meeting)
        summary = assemble({}, extractive_parts(doc), [])
        out.append(evaluate(meeting, doc, " ".join(i.text for i in summary.key_points)))
    print("\nkey points vs AMI abstractive summaries\n" + table(out))
    return out


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("measure", ["recall", "f1"])
def test_key_points_beat_random_and_lead_baselines(
    results: list[MeetingEval], metric: str, measure: str
) -> None:
    def mean(kind: str) -> float:
        return sum(getattr(getattr(r, kind), measure)[metric] for r in results) / len(results)

    ours, random, lead = mean("summary"), mean("random"), mean("lead")
    assert ours > MARGIN * max(random, lead), (metric, measure, ours, random, lead)


def test_each_meeting_beats_the_baselines_on_rouge1(results: list[MeetingEval]) -> None:
    for r in results:
        for kind in ("random", "lead"):
            assert r.summary.recall["rouge1"] > getattr(r, kind).recall["rouge1"], (r.meeting, kind)


def test_the_shipped_embedder_matches_sentence_transformers() -> None:
    """Golden values from ``sentence-transformers`` 6.3 loading the same files
    (``SentenceTransformer(model_dir).encode(..., normalize_embeddings=True)``)."""
    vectors = SentenceEmbedder().embed(
        [
            "We decided to go with the rubber case for the remote control.",
            "The team chose a rubber casing for the remote.",
            "Elephants have very good memories.",
        ]
    )
    assert vectors.shape == (3, 384)
    expected = [-0.03734, 0.03079, 0.04506, -0.02772, 0.05588, 0.01138]
    assert [round(float(x), 5) for x in vectors[0][:6]] == expected
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.6508, abs=1e-4)
    assert float(vectors[0] @ vectors[2]) == pytest.approx(0.0071, abs=1e-4)
