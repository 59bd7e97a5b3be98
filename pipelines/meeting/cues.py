"""Phrases that mark commitments, deadlines, decisions and answers in (English)
meeting talk. Pure functions over one sentence; used by the extractive summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.meeting.text import STOPWORDS

_DAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*"
_DATE = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?(?: of)? {_MONTH}|{_MONTH} \d{{1,2}}(?:st|nd|rd|th)?)"
_DUE = re.compile(
    rf"\b(?:(?:by|before|until|till|due)\s+(?:(?:next|this|the end of(?: the)?|end of(?: the)?)\s+)?"
    rf"(?:{_DAY}|tomorrow|tonight|today|week|month|(?:the )?next meeting|{_DATE})"
    rf"|on {_DAY}|on {_DATE}|(?:next|this) (?:{_DAY}|week|month)|tomorrow|tonight"
    rf"|end of (?:the )?(?:day|week|month)|eod|asap)\b",
    re.IGNORECASE,
)
_NO_ACTION = (
    r"(?!(?:just |really |also )?(?:be|say|guess|admit|think|imagine|assume|bet|tell you|"
    r"know|remember|wonder|hope|feel|agree|need|want|see|hear|understand|only|probably)\b)"
)
_SELF = re.compile(
    r"\b(?:i'll|i will|i'm going to|i am going to|i'm gonna|i can|i need to|i'll have to)\s+"
    + _NO_ACTION,
    re.IGNORECASE,
)
_ASK = re.compile(
    r"^(?:(?:so|and|okay|ok|now),?\s+)?(?:[A-Z][a-z]+,\s+)?"
    r"(?:can|could|will|would) you\s+" + _NO_ACTION,
    re.IGNORECASE,
)
_TOLD = re.compile(r"\byou(?:'ll)? (?:need to|should|must)\s+" + _NO_ACTION, re.IGNORECASE)
_GROUP = re.compile(
    r"\b(?:we need to|we'll need to|we have to|we've got to|we must|let's|let us|action item)\s+"
    + _NO_ACTION,
    re.IGNORECASE,
)
_NAMED = re.compile(r"\b([A-Z][a-z]+)(?: will|'ll| is going to| needs to| has to)\s+" + _NO_ACTION)
_ADDRESSED = re.compile(r"^(?:(?:so|and|okay|ok),?\s+)?([A-Z][a-z]+),")
_NOT_NAMES = STOPWORDS | {
    "everyone",
    "everybody",
    "somebody",
    "someone",
    "nobody",
    "team",
    "that",
    "this",
    "which",
    "what",
    "who",
    "kay",
    "so",
    "okay",
}
_DECISION = re.compile(
    r"\b(?:we(?:'ve| have)? (?:decided|agreed|settled|chosen)|we(?:'re| are) agreed"
    r"|(?:we(?:'ll| will)|let's|let us|we can) go (?:with|for)|we(?:'re| are) going (?:to go )?with"
    r"|(?:the|our|final) decision (?:is|was)|(?:it's|that's|it is|that is) (?:decided|settled|agreed)"
    r"|we(?:'ll| will) (?:stick with|keep)"
    r"|we (?:should|must) (?:definitely |just |probably )?(?:be going|go|stick) (?:with|for|to)"
    r"|we(?:'re| are) (?:definitely )?(?:going to|gonna) (?:use|include|have|make)(?! to)"
    r"|(?:this|that) is (?:our|the) (?:design spec|plan|decision))\b",
    re.IGNORECASE,
)
_CONDITIONAL = re.compile(
    r"\b(?:once|if|when|until|before|after|whether|not|n't)\s+\S*\s*$", re.IGNORECASE
)
ANSWER_CUE = re.compile(
    r"^(?:yes|yeah|yep|no|nope|sure|well|i think|because|it's|it is|we|i)\b", re.IGNORECASE
)
"""How a reply that answers a question typically opens."""


@dataclass(frozen=True, slots=True)
class Commitment:
    """A commitment or request in a sentence: who (``self`` = the speaker, ``named``,
    or None for "we"), the deadline as stated, and the span of the cue."""

    owner: str | None
    by_speaker: bool
    due: str | None
    span: tuple[int, int]


def find_commitment(text: str) -> Commitment | None:
    """The first commitment/request cue in a sentence, or None.

    "I'll send it" (owner: the speaker), "Tarik, can you check...?" / "Tarik
    will..." (owner: Tarik), "we need to book..." / "let's..." (owner: None).
    Plain questions ("should we...?") and hedges ("I'll be honest", "I have to
    say") are not commitments.
    """
    due_match = _DUE.search(text)
    due = due_match.group(0) if due_match else None
    ask = _ASK.search(text)
    if ask and text.rstrip().endswith("?"):
        return Commitment(named_person(text), False, due, ask.span())
    if text.rstrip().endswith("?"):
        return None
    found = _SELF.search(text)
    if found:
        return Commitment(None, True, due, found.span())
    named = _NAMED.search(text)
    if named and named.group(1).lower() not in _NOT_NAMES:
        return Commitment(named.group(1), False, due, named.span())
    for pattern in (_TOLD, _GROUP):
        found = pattern.search(text)
        if found:
            return Commitment(named_person(text), False, due, found.span())
    return None


def named_person(text: str) -> str | None:
    """A capitalised name addressed ("Tarik, ...") or given a task ("Tarik will...")."""
    for pattern in (_ADDRESSED, _NAMED):
        match = pattern.search(text)
        if match and match.group(1).lower() not in _NOT_NAMES:
            return match.group(1)
    return None


def find_decision(text: str) -> tuple[int, int] | None:
    """Span of a decision cue ("we decided", "let's go with"), unless it is a question
    or hedged ("once we've decided", "we haven't agreed")."""
    if text.rstrip().endswith("?"):
        return None
    for match in _DECISION.finditer(text):
        if not _CONDITIONAL.search(text[: match.start()][-24:]):
            return match.span()
    return None


def excerpt(text: str, span: tuple[int, int], max_words: int = 30) -> str:
    """``text`` if short; else the clauses around ``span`` (cut at , ; : and dashes),
    at most about ``max_words`` words."""
    if len(text.split()) <= max_words:
        return text
    breaks = [m.end() for m in re.finditer(r"[,;:–—-]\s+", text) if m.end() <= span[0]]
    start = next((b for b in reversed(breaks) if len(text[b:].split()) >= 8), 0)
    words = text[start:].split()
    piece = " ".join(words[:max_words])
    if len(words) > max_words:
        piece = piece.rstrip(",;:") + " …"
    return piece[:1].upper() + piece[1:]
