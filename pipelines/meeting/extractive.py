"""The deterministic summary: every part built from the transcript's own sentences.

Pure functions; each item cites the segment its sentence comes from, and long
run-on sentences are cut to the clauses around what matched
(:func:`~pipelines.meeting.cues.excerpt`).

- key points: the most central sentences by TextRank over TF-IDF cosine
  similarity, sentences of 8-40 words preferred, near-duplicates skipped,
  in time order;
- title: the three most salient phrases (frequent runs of content words);
- decisions: sentences stating a decision ("we decided", "let's go with");
- action items: commitments and requests (:func:`~pipelines.meeting.cues.find_commitment`);
  the owner is the speaker for "I", a person addressed or named, else null;
  ``due`` is a stated deadline ("by Friday");
- open questions: substantive questions that no other speaker answers within
  the next few sentences (an answer shares content words with the question).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from pipelines.meeting.cues import ANSWER_CUE, excerpt, find_commitment, find_decision
from pipelines.meeting.document import TranscriptDocument
from pipelines.meeting.summary import ActionItem, Part, SummaryItem
from pipelines.meeting.text import (
    Sentence,
    Vector,
    cosine,
    key_phrases,
    split_sentences,
    tfidf_vectors,
)


def _length_prior(sentence: Sentence) -> float:
    """1 for 8-40 words, less for shorter (few terms) or longer (run-on) sentences."""
    words = len(sentence.text.split())
    return min(1.0, len(sentence.terms) / 6) * min(1.0, 40 / max(words, 1))


def textrank(vectors: Sequence[Vector], damping: float = 0.85, iterations: int = 50) -> np.ndarray:
    """TextRank centrality of each sentence: PageRank over the graph whose edge
    weights are the TF-IDF cosine similarities (self-loops excluded).

    Works on the sentence-by-term matrix, never the sentence-by-sentence one, so
    memory grows with sentences x shared terms, not sentences squared.
    """
    n = len(vectors)
    if n == 0:
        return np.zeros(0)
    shared = [t for t, c in Counter(t for v in vectors for t in v).items() if c > 1]
    column = {t: j for j, t in enumerate(shared)}
    matrix = np.zeros((n, len(shared)), dtype=np.float64)
    for i, vec in enumerate(vectors):
        for t, value in vec.items():
            if t in column:
                matrix[i, column[t]] = value
    self_sim = np.einsum("ij,ij->i", matrix, matrix)
    out_weight = matrix @ matrix.sum(axis=0) - self_sim
    out_weight[out_weight <= 0] = 1.0
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        spread = rank / out_weight
        rank = (1 - damping) / n + damping * (matrix @ (matrix.T @ spread) - self_sim * spread)
    return rank


def key_points(sentences: Sequence[Sentence], max_items: int = 8) -> list[SummaryItem]:
    """The most central sentences (see module docstring), at most ``max_items``."""
    vectors = tfidf_vectors(sentences)
    rank = textrank(vectors)
    want = min(max_items, max(3, round(math.sqrt(len(sentences)) / 2)))
    ranked = sorted(
        (i for i, s in enumerate(sentences) if len(s.terms) >= 3),
        key=lambda i: (-rank[i] * _length_prior(sentences[i]), i),
    )
    chosen: list[int] = []
    for i in ranked:
        if len(chosen) == want:
            break
        if all(cosine(vectors[i], vectors[j]) < 0.5 for j in chosen):
            chosen.append(i)
    return [_item(sentences[i], (0, 0), 40) for i in sorted(chosen)]


def title(sentences: Sequence[Sentence]) -> str:
    """ "Meeting about a, b and c" from the most salient phrases ("Meeting" if none)."""
    top = key_phrases(sentences)
    if not top:
        return "Meeting"
    return "Meeting about " + (", ".join(top[:-1]) + " and " + top[-1] if len(top) > 1 else top[0])


def decisions(sentences: Sequence[Sentence], max_items: int = 6) -> list[SummaryItem]:
    """Sentences that state a decision, at most ``max_items`` (the most specific kept)."""
    hits = [(s, span) for s in sentences if (span := find_decision(s.text)) and len(s.terms) >= 2]
    kept = _top([s for s, _ in hits], lambda s: min(len(s.terms), 12), max_items)
    spans = {s.index: span for s, span in hits}
    return [_item(s, spans[s.index]) for s in kept]


def action_items(sentences: Sequence[Sentence], max_items: int = 8) -> list[ActionItem]:
    """Commitments and requests with owner and due date when stated (module docstring)."""
    found: list[tuple[float, Sentence, ActionItem]] = []
    for s in sentences:
        cue = find_commitment(s.text)
        if cue is None or len(s.terms) < 2:
            continue
        owner = s.speaker_name if cue.by_speaker else cue.owner
        item = ActionItem(excerpt(s.text, cue.span), owner, cue.due, (s.segment_id,))
        score = 1.0 + (cue.due is not None) + (owner is not None) + min(len(s.terms), 12) / 12
        found.append((score, s, item))
    best = sorted(found, key=lambda x: (-x[0], x[1].index))[:max_items]
    return [item for _, _, item in sorted(best, key=lambda x: x[1].index)]


def open_questions(
    sentences: Sequence[Sentence], max_items: int = 6, window_s: float = 30.0, replies: int = 4
) -> list[SummaryItem]:
    """Substantive questions nobody answered (module docstring), at most ``max_items``.

    A question is answered when one of the next ``replies`` sentences by other
    speakers, starting within ``window_s`` seconds, shares two content terms with
    it, or one term and opens like an answer ("yes", "I think", "because").
    """
    found = []
    for i, q in enumerate(sentences):
        if not q.text.endswith("?") or len(q.terms) < 3:
            continue
        asked = set(q.terms)
        others = [
            s
            for s in sentences[i + 1 :]
            if s.speaker != q.speaker and s.start - q.start <= window_s
        ][:replies]
        answered = any(
            len(asked & set(s.terms)) >= 2 or (asked & set(s.terms) and ANSWER_CUE.match(s.text))
            for s in others
        )
        if not answered:
            found.append(q)
    kept = _top(found, lambda s: min(len(s.terms), 10) * _length_prior(s), max_items)
    return [_item(s, (len(s.text) - 1, len(s.text))) for s in kept]


def _top(sentences: list[Sentence], key: Callable[[Sentence], float], limit: int) -> list[Sentence]:
    """At most ``limit`` sentences with the highest ``key`` (ties: earlier), in time order."""
    ranked = sorted(sentences, key=lambda s: (-key(s), s.index))[:limit]
    return sorted(ranked, key=lambda s: s.index)


def _item(sentence: Sentence, span: tuple[int, int], max_words: int = 30) -> SummaryItem:
    return SummaryItem(excerpt(sentence.text, span, max_words), (sentence.segment_id,))


def extractive_parts(document: TranscriptDocument) -> dict[str, Part]:
    """Every summary part, extractively; keys are ``summary_schema.PARTS``."""
    sentences = split_sentences(document)
    return {
        "title": title(sentences),
        "key_points": tuple(key_points(sentences)),
        "decisions": tuple(decisions(sentences)),
        "action_items": tuple(action_items(sentences)),
        "open_questions": tuple(open_questions(sentences)),
    }
