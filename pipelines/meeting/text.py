"""Sentences and term weights of a transcript, for the extractive summary. Pure.

English-centred: the stop-word list and the crude stemmer are English. Other
languages still work (every word then counts as content) but less well.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.meeting.document import TranscriptDocument

_STOP_TEXT = """
a about above after again against all also am an and any are aren't as at be because been
before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each few for from further had hadn't has hasn't have haven't
having he he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm
i've if in into is isn't it it's its itself let's me more most mustn't my myself no nor not of
off on once only or other ought our ours ourselves out over own same shan't she she'd she'll
she's should shouldn't so some such than that that's the their theirs them themselves then
there there's these they they'd they'll they're they've this those through to too under until
up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's
which while who who's whom why why's will with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves
um uh uhm hmm mm mhm mm-hmm ah oh eh er yeah yep yes no okay ok 'kay right well like just
really actually basically gonna wanna gotta kind sort thing things stuff bit lot get got go
going goes went think thought know mean guess maybe probably one two also now then still
say said see look good great sure fine alright anyway quite much many way
kay sorry dunno cos 'cause gotcha uh-huh whatever something anything everything
use used using want wants wanted might need needs make made take put come give people
"""
STOPWORDS = frozenset(_STOP_TEXT.split())
_NUMBER_TEXT = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand million billion point half quarter percent"
)
NUMBER_WORDS = frozenset(_NUMBER_TEXT.split())
_FILLER = re.compile(r"\b(?:u+m+|u+h+m*|h+m+|m+h?m+|e+r+m+|mm-hmm)\b[,.]?\s*", re.IGNORECASE)
_REPEAT = re.compile(r"\b(\w+(?:'\w+)?(?: \w+(?:'\w+)?){0,2})(?:,? \1\b)+", re.IGNORECASE)
"""A run of 1-3 words said again at once ("the the", "we can we can")."""
_FRAGMENT = re.compile(r"(?<![\w'])(?![aAiI]\b)[a-zA-Z](?![\w'])\s*")
"""A cut-off word of one letter ("w", "th" is kept) other than "a" and "I"."""
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…])\s+")
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?|[^\sa-z0-9]")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a segment: ``index`` in the transcript, ``start`` (s) of its segment."""

    index: int
    text: str
    segment_id: int
    speaker: str
    speaker_name: str
    start: float
    terms: tuple[str, ...]


def stem(word: str) -> str:
    """A crude English stem: drops a few common suffixes (``-ing``, ``-ed``, ``-s``)."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> tuple[str, ...]:
    """Stemmed, lower-cased words of ``text`` that are not stop words or fillers."""
    words = (w.replace("’", "'") for w in _WORD.findall(text.lower()))
    return tuple(stem(w) for w in words if w not in STOPWORDS and len(w) > 2)


def clean(text: str) -> str:
    """Sentence text for display: fillers (um, uh) and one-letter cut-off words
    removed, words said twice in a row kept once, spaces collapsed, first letter
    capitalised."""
    text = _FRAGMENT.sub("", _FILLER.sub("", text))
    text = _REPEAT.sub(r"\1", _REPEAT.sub(r"\1", text))  # twice: "th th th th" -> "th"
    text = re.sub(r"\s+", " ", text).strip(" ,")
    return text[:1].upper() + text[1:]


def split_sentences(document: TranscriptDocument) -> list[Sentence]:
    """Every sentence of every segment, in order (a segment without final punctuation
    is one sentence)."""
    out: list[Sentence] = []
    for seg in document.segments:
        for piece in _SENTENCE_SPLIT.split(seg.text.strip()):
            text = clean(piece)
            if text:
                out.append(
                    Sentence(
                        len(out),
                        text,
                        seg.id,
                        seg.speaker,
                        document.name_of(seg.speaker),
                        seg.start,
                        content_terms(text),
                    )
                )
    return out


Vector = dict[str, float]


def tfidf_vectors(sentences: Sequence[Sentence]) -> list[Vector]:
    """Unit-length TF-IDF vectors, one per sentence (each sentence a document)."""
    df = Counter(t for s in sentences for t in set(s.terms))
    n = len(sentences)
    vectors = []
    for s in sentences:
        counts = Counter(s.terms)
        vec = {t: c * (math.log((n + 1) / (df[t] + 1)) + 1.0) for t, c in counts.items()}
        vectors.append(normalise(vec))
    return vectors


def normalise(vec: Vector) -> Vector:
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {t: v / norm for t, v in vec.items()} if norm else {}


def cosine(a: Vector, b: Vector) -> float:
    """Dot product of two unit vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())


def key_phrases(sentences: Sequence[Sentence], limit: int = 3, longest: int = 3) -> list[str]:
    """The ``limit`` most salient phrases: runs of 1-``longest`` content words, scored
    by frequency x length^1.5 (plural and singular counted together); a phrase
    sharing a word with one already chosen is skipped."""
    counts: Counter[tuple[str, ...]] = Counter()
    forms: dict[tuple[str, ...], Counter[str]] = {}
    for s in sentences:
        run: list[str] = []
        for token in [*_TOKEN.findall(s.text.lower()), "."]:
            if token.isalpha() and len(token) > 2 and token not in STOPWORDS | NUMBER_WORDS:
                run.append(token)
                continue
            for n in range(1, longest + 1):
                for i in range(len(run) - n + 1):
                    key = tuple(stem(w) for w in run[i : i + n])
                    counts[key] += 1
                    forms.setdefault(key, Counter())[" ".join(run[i : i + n])] += 1
            run = []
    ranked = sorted(counts, key=lambda k: (-counts[k] * len(k) ** 1.5, k))
    chosen: list[tuple[str, ...]] = []
    for key in ranked:
        if len(chosen) == limit:
            break
        if counts[key] > 1 and not any(set(key) & set(c) for c in chosen):
            chosen.append(key)
    return [forms[k].most_common(1)[0][0] for k in chosen]
