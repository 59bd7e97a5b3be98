"""The deterministic summary: every part built from the transcript's own sentences.

Pure functions; each item cites the segment its sentence comes from, and long
run-on sentences are cut to the clauses around what matched
(:func:`~pipelines.meeting.cues.excerpt`).

- key points: the sentences that together cover the meeting best, by greedy
  facility-location over all-MiniLM-L6-v2 sentence embeddings
  (:mod:`~pipelines.meeting.salience`: centrality and coverage across the
  meeting's phases, redundancy penalised), within a word budget that grows
  with the meeting, in time order;
- title: the three most salient phrases (frequent runs of content words);
- decisions: sentences stating a decision ("we decided", "let's go with");
- action items: commitments and requests (:func:`~pipelines.meeting.cues.find_commitment`);
  the owner is the speaker for "I", a person addressed or named, else null;
  ``due`` is a stated deadline ("by Friday");
- open questions: substantive questions that no other speaker answers within
  the next few sentences (an answer shares content words with the question,
  or its embedding is close to the question's).

Decisions, action items and questions that say the same thing twice (embedding
cosine above :data:`SAME`) are kept once. Everything here blocks (the
embedding model runs on the CPU): call it from a worker thread in async code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from pipelines.meeting.cues import ANSWER_CUE, excerpt, find_commitment, find_decision
from pipelines.meeting.document import TranscriptDocument
from pipelines.meeting.salience import SelectOptions, budget_for, select
from pipelines.meeting.summary import ActionItem, Part, SummaryItem
from pipelines.meeting.text import Sentence, Vector, key_phrases, split_sentences, tfidf_vectors
from voice.text.embeddings import DIMENSIONS, shared_embedder

log = logging.getLogger(__name__)
SAME = 0.8
"""Embedding cosine above which two items are taken to say the same thing."""
ANSWERS = 0.6
"""Embedding cosine above which a reply is taken to answer a question."""
OFF_TOPIC_SHARE = 0.3
"""Share of a meeting's sentences, the least like the whole, never made decisions,
action items or open questions."""


def _length_prior(sentence: Sentence) -> float:
    """1 for 8-40 words, less for shorter (few terms) or longer (run-on) sentences."""
    words = len(sentence.text.split())
    return min(1.0, len(sentence.terms) / 6) * min(1.0, 40 / max(words, 1))


def sentence_vectors(sentences: Sequence[Sentence]) -> np.ndarray:
    """One row per sentence: all-MiniLM-L6-v2 embeddings (unit length), or (when the
    model package is missing, logged) dense TF-IDF vectors. A sentence without
    content words ("Okay.", "Yeah, yeah.") gets a zero row: it weighs nothing in
    the key-point objective, so it is not embedded. Blocking."""
    if not sentences:
        return np.zeros((0, 1), dtype=np.float32)
    try:
        embedder = shared_embedder()
    except FileNotFoundError as exc:
        log.warning("extractive summary without sentence embeddings: %s", exc)
        return _dense(tfidf_vectors(sentences))
    rows = [i for i, s in enumerate(sentences) if s.terms]
    out = np.zeros((len(sentences), DIMENSIONS), dtype=np.float32)
    if rows:
        out[rows] = embedder.embed([sentences[i].text for i in rows])
    return out


def _dense(vectors: Sequence[Vector]) -> np.ndarray:
    column: dict[str, int] = {}
    for vec in vectors:
        for term in vec:
            column.setdefault(term, len(column))
    matrix = np.zeros((len(vectors), max(1, len(column))), dtype=np.float32)
    for i, vec in enumerate(vectors):
        for term, value in vec.items():
            matrix[i, column[term]] = value
    return matrix


def key_points(
    sentences: Sequence[Sentence],
    vectors: np.ndarray | None = None,
    options: SelectOptions | None = None,
) -> list[SummaryItem]:
    """The sentences that together cover the meeting best (:mod:`~pipelines.meeting.salience`),
    each cut to at most 30 words, in time order. ``vectors``: from
    :func:`sentence_vectors` (computed when None); ``options``: the word budget
    defaults to :func:`~pipelines.meeting.salience.budget_for` the meeting's length."""
    if not sentences:
        return []
    if vectors is None:
        vectors = sentence_vectors(sentences)
    if options is None:
        total = sum(len(s.text.split()) for s in sentences)
        options = SelectOptions(budget_words=budget_for(total))
    candidates = [i for i, s in enumerate(sentences) if len(s.terms) >= 3]
    texts = {i: excerpt(sentences[i].text, (0, 0), 30) for i in candidates}
    chosen = select(
        vectors,
        [len(s.terms) for s in sentences],
        candidates,
        [len(texts[i].split()) for i in candidates],
        options,
    )
    return [SummaryItem(texts[i], (sentences[i].segment_id,)) for i in chosen]


def title(sentences: Sequence[Sentence]) -> str:
    """ "Meeting about a, b and c" from the most salient phrases ("Meeting" if none)."""
    top = key_phrases(sentences)
    if not top:
        return "Meeting"
    return "Meeting about " + (", ".join(top[:-1]) + " and " + top[-1] if len(top) > 1 else top[0])


def decisions(
    sentences: Sequence[Sentence], max_items: int = 6, vectors: np.ndarray | None = None
) -> list[SummaryItem]:
    """Sentences that state a decision, at most ``max_items`` (the most specific kept;
    with ``vectors``, repeats of one decision kept once)."""
    hits = [(s, span) for s in sentences if (span := find_decision(s.text)) and len(s.terms) >= 2]
    kept = _top([s for s, _ in hits], lambda s: min(len(s.terms), 12), max_items, vectors)
    spans = {s.index: span for s, span in hits}
    return [_item(s, spans[s.index]) for s in kept]


def action_items(
    sentences: Sequence[Sentence], max_items: int = 8, vectors: np.ndarray | None = None
) -> list[ActionItem]:
    """Commitments and requests with owner and due date when stated (module docstring);
    with ``vectors``, repeats of one commitment kept once."""
    found: list[tuple[float, Sentence, ActionItem]] = []
    for s in sentences:
        cue = find_commitment(s.text)
        if cue is None or len(s.terms) < 2:
            continue
        owner = s.speaker_name if cue.by_speaker else cue.owner
        item = ActionItem(excerpt(s.text, cue.span), owner, cue.due, (s.segment_id,))
        score = 1.0 + (cue.due is not None) + (owner is not None) + min(len(s.terms), 12) / 12
        found.append((score, s, item))
    ranked = sorted(found, key=lambda x: (-x[0], x[1].index))
    keep = {s.index for s in _distinct([s for _, s, _ in ranked], vectors)[:max_items]}
    return [item for _, s, item in sorted(ranked, key=lambda x: x[1].index) if s.index in keep]


def open_questions(
    sentences: Sequence[Sentence],
    max_items: int = 6,
    window_s: float = 30.0,
    replies: int = 4,
    vectors: np.ndarray | None = None,
) -> list[SummaryItem]:
    """Substantive questions nobody answered (module docstring), at most ``max_items``.

    A question is answered when one of the next ``replies`` sentences by other
    speakers, starting within ``window_s`` seconds, shares two content terms with
    it, or one term and opens like an answer ("yes", "I think", "because"), or
    (with ``vectors``) is closer to it than :data:`ANSWERS`.
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
            len(asked & set(s.terms)) >= 2
            or (asked & set(s.terms) and ANSWER_CUE.match(s.text))
            or (vectors is not None and float(vectors[q.index] @ vectors[s.index]) > ANSWERS)
            for s in others
        )
        if not answered:
            found.append(q)
    kept = _top(found, lambda s: min(len(s.terms), 10) * _length_prior(s), max_items, vectors)
    return [_item(s, (len(s.text) - 1, len(s.text))) for s in kept]


def _top(
    sentences: list[Sentence],
    key: Callable[[Sentence], float],
    limit: int,
    vectors: np.ndarray | None = None,
) -> list[Sentence]:
    """At most ``limit`` sentences with the highest ``key`` (ties: earlier), repeats
    dropped (:func:`_distinct`), in time order."""
    ranked = sorted(sentences, key=lambda s: (-key(s), s.index))
    return sorted(_distinct(ranked, vectors)[:limit], key=lambda s: s.index)


def _distinct(ranked: list[Sentence], vectors: np.ndarray | None) -> list[Sentence]:
    """``ranked`` without off-topic sentences (:func:`off_topic`) and without those
    closer than :data:`SAME` to a better-ranked one kept (all of them when
    ``vectors`` is None)."""
    if vectors is None:
        return ranked
    aside = off_topic(vectors)
    kept: list[Sentence] = []
    for s in ranked:
        if s.index not in aside and all(
            float(vectors[s.index] @ vectors[k.index]) <= SAME for k in kept
        ):
            kept.append(s)
    return kept


def off_topic(vectors: np.ndarray, share: float = OFF_TOPIC_SHARE) -> set[int]:
    """Indices of the sentences least like the meeting as a whole: the ``share`` of
    embedded sentences with the lowest cosine to the mean of all of them (small talk,
    logistics: "clip the microphone on")."""
    rows = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
    if len(rows) < 5:
        return set()
    centre = vectors[rows].mean(axis=0)
    closeness = vectors[rows] @ (centre / max(float(np.linalg.norm(centre)), 1e-9))
    cut = float(np.quantile(closeness, share))
    return {int(i) for i, c in zip(rows, closeness, strict=True) if c < cut}


def _item(sentence: Sentence, span: tuple[int, int], max_words: int = 30) -> SummaryItem:
    return SummaryItem(excerpt(sentence.text, span, max_words), (sentence.segment_id,))


def extractive_parts(document: TranscriptDocument) -> dict[str, Part]:
    """Every summary part, extractively; keys are ``summary_schema.PARTS``."""
    sentences = split_sentences(document)
    vectors = sentence_vectors(sentences)
    return {
        "title": title(sentences),
        "key_points": tuple(key_points(sentences, vectors)),
        "decisions": tuple(decisions(sentences, vectors=vectors)),
        "action_items": tuple(action_items(sentences, vectors=vectors)),
        "open_questions": tuple(open_questions(sentences, vectors=vectors)),
    }
