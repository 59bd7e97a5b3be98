"""The deterministic summary: every part built from the transcript's own sentences.

Pure functions; each item cites the segment its sentence comes from.

- key points: the sentences closest to the transcript's TF-IDF centroid
  (centrality), longer ones preferred, near-duplicates skipped, in time order;
- title: the three heaviest terms of that centroid;
- decisions: sentences saying something was decided or agreed ("we decided",
  "let's go with");
- action items: commitments and requests ("I'll", "we need to", "let's", "can
  you"); the owner is the speaker for "I", a name addressed or named when
  there is one, else null; ``due`` is a stated deadline ("by Friday");
- open questions: substantive questions that no other speaker answers within
  the next few segments (an answer shares content words with the question).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from pipelines.meeting.document import TranscriptDocument
from pipelines.meeting.summary import ActionItem, Part, SummaryItem
from pipelines.meeting.text import (
    STOPWORDS,
    Sentence,
    centroid,
    cosine,
    split_sentences,
    surface_forms,
    tfidf_vectors,
)

_DAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_DUE = re.compile(
    rf"\b(?:(?:by|before|until|till|on|due)\s+(?:(?:next|this|the end of(?: the)?|end of(?: the)?)\s+)?"
    rf"(?:{_DAY}|tomorrow|tonight|today|week|month|meeting|(?:the )?next meeting|"
    rf"\d{{1,2}}(?:st|nd|rd|th)?(?: of)? {_MONTH}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?)"
    rf"|(?:next|this) (?:{_DAY}|week|month)|tomorrow|tonight|end of (?:the )?(?:day|week|month)"
    rf"|\beod\b|asap)\b",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(
    r"\b(?:i'll|i will|i'm going to|i am going to|i can (?:do|take|send|write|prepare|check|look)"
    r"|i need to|i have to|i'll have to|i'm gonna)\b",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"\b(?:will you|can you|could you|would you mind|you need to|you should"
    r"|you'll need to|you have to)\b",
    re.IGNORECASE,
)
_GROUP = re.compile(
    r"\b(?:we need to|we'll need to|we have to|we've got to|we must|we should"
    r"|let's|let us|action item|to-do)\b",
    re.IGNORECASE,
)
_NAMED = re.compile(r"\b([A-Z][a-z]+)(?: will|'ll| is going to| needs to| has to)\b")
_ADDRESSED = re.compile(r"^([A-Z][a-z]+),")
_NOT_NAMES = STOPWORDS | {
    "everyone",
    "everybody",
    "somebody",
    "someone",
    "nobody",
    "team",
    "that",
    "this",
    "it",
    "which",
    "what",
    "who",
    "he",
    "she",
    "they",
}
_DECISION = re.compile(
    r"\b(?:we(?:'ve| have)? (?:decided|agreed|settled|chose|chosen)|(?:we(?:'ll| will)|let's|let us)"
    r" go (?:with|for)|we(?:'re| are) going (?:to go )?with|decided (?:to|on|that)|"
    r"agreed (?:to|on|that)|the decision is|decision was|we(?:'ll| will) (?:use|stick with|keep)|"
    r"that's decided|final decision|it's settled|we can go with|we're agreed)\b",
    re.IGNORECASE,
)
_ANSWER_CUE = re.compile(
    r"^(?:yes|yeah|no|nope|sure|well|i think|because|it's|it is|we|i)\b", re.IGNORECASE
)


def key_points(sentences: Sequence[Sentence], max_items: int = 8) -> list[SummaryItem]:
    """The most central sentences (see module docstring), at most ``max_items``."""
    vectors = tfidf_vectors(sentences)
    middle = centroid(vectors)
    want = min(max_items, max(3, round(math.sqrt(len(sentences)) / 2)))
    ranked = sorted(
        (i for i, s in enumerate(sentences) if len(s.terms) >= 3),
        key=lambda i: (-cosine(vectors[i], middle) * min(1.0, len(sentences[i].terms) / 8), i),
    )
    chosen: list[int] = []
    for i in ranked:
        if len(chosen) == want:
            break
        if all(cosine(vectors[i], vectors[j]) < 0.5 for j in chosen):
            chosen.append(i)
    return [_item(sentences[i]) for i in sorted(chosen)]


def title(sentences: Sequence[Sentence]) -> str:
    """ "Meeting about a, b and c" from the centroid's heaviest terms ("Meeting" if none)."""
    middle = centroid(tfidf_vectors(sentences))
    forms = surface_forms(sentences)
    top = [forms.get(t, t) for t, _ in sorted(middle.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    if not top:
        return "Meeting"
    return "Meeting about " + (", ".join(top[:-1]) + " and " + top[-1] if len(top) > 1 else top[0])


def decisions(sentences: Sequence[Sentence], max_items: int = 6) -> list[SummaryItem]:
    """Sentences that state a decision, at most ``max_items`` (the longest first kept)."""
    hits = [s for s in sentences if _DECISION.search(s.text) and len(s.terms) >= 2]
    return [_item(s) for s in _top(hits, lambda s: len(s.terms), max_items)]


def action_items(sentences: Sequence[Sentence], max_items: int = 8) -> list[ActionItem]:
    """Commitments and requests with owner and due date when stated (module docstring)."""
    scored: list[tuple[float, Sentence, str | None, str | None]] = []
    for s in sentences:
        first, request, group = (p.search(s.text) for p in (_FIRST_PERSON, _REQUEST, _GROUP))
        if not (first or request or group) or len(s.terms) < 2:
            continue
        if s.text.endswith("?") and not request:
            continue  # "should we...?" asks, it does not commit
        owner = s.speaker_name if first else _named_person(s.text)
        due_match = _DUE.search(s.text)
        due = due_match.group(0) if due_match else None
        score = 1.0 + (due is not None) + (owner is not None) + min(len(s.terms), 12) / 12
        scored.append((score, s, owner, due))
    best = sorted(scored, key=lambda x: (-x[0], x[1].index))[:max_items]
    return [
        ActionItem(s.text, owner, due, (s.segment_id,))
        for _, s, owner, due in sorted(best, key=lambda x: x[1].index)
    ]


def _named_person(text: str) -> str | None:
    for pattern in (_ADDRESSED, _NAMED):
        match = pattern.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES:
            return match.group(1)
    return None


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
            len(asked & set(s.terms)) >= 2 or (asked & set(s.terms) and _ANSWER_CUE.match(s.text))
            for s in others
        )
        if not answered:
            found.append(q)
    return [_item(s) for s in _top(found, lambda s: len(s.terms), max_items)]


def _top(sentences: list[Sentence], key: Callable[[Sentence], float], limit: int) -> list[Sentence]:
    """At most ``limit`` sentences with the highest ``key`` (ties: earlier), in time order."""
    ranked = sorted(sentences, key=lambda s: (-key(s), s.index))[:limit]
    return sorted(ranked, key=lambda s: s.index)


def _item(sentence: Sentence) -> SummaryItem:
    return SummaryItem(sentence.text, (sentence.segment_id,))


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
