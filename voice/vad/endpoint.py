"""How long a pause must last before it ends the user's turn. Pure functions, no models.

Two policies, both in ms of trailing silence:

* :func:`semantic_wait_ms` (``semantic_vad``): a turn judged finished ends after a
  short pause, an unfinished one only after a long one. The judgement combines an
  end-of-turn probability from an audio model (Smart-Turn) with cues in the transcript
  so far (:func:`text_verdict`); ``eagerness`` scales the waits. The longest waits are
  OpenAI's maximum timeouts for ``semantic_vad`` (low 8 s, medium 4 s, high 2 s).
* :func:`adaptive_wait_ms` (``server_vad`` with adaptive silence): the configured
  ``silence_duration_ms``, shortened when the transcript is a complete sentence and
  lengthened when it stops mid-clause; a sentence that ends a long turn is not taken
  as its end (people pause between the sentences of what they tell or read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Eagerness = Literal["low", "medium", "high", "auto"]
Verdict = Literal["complete", "unsure", "incomplete"]

MODEL_CHECK_MS = 200.0
"""Silence after which the turn model is asked (it was trained on 200 ms endings)."""


@dataclass(frozen=True, slots=True)
class SemanticWaits:
    """Silence (ms) that ends a turn judged complete, unsure, or incomplete."""

    complete_ms: float
    unsure_ms: float
    incomplete_ms: float

    def for_verdict(self, verdict: Verdict) -> float:
        if verdict == "complete":
            return self.complete_ms
        if verdict == "unsure":
            return self.unsure_ms
        return self.incomplete_ms


SEMANTIC_WAITS: dict[str, SemanticWaits] = {
    "high": SemanticWaits(300.0, 700.0, 2000.0),
    "medium": SemanticWaits(800.0, 1500.0, 4000.0),
    "low": SemanticWaits(1200.0, 2500.0, 8000.0),
}
SEMANTIC_WAITS["auto"] = SEMANTIC_WAITS["medium"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_DANGLING = frozenset(
    [
        "and",
        "or",
        "but",
        "nor",
        "so",
        "because",
        "if",
        "unless",
        "than",
        "that",
        "which",
        "who",
        "whom",
        "whose",
        "where",
        "when",
        "while",
        "the",
        "a",
        "an",
        "of",
        "to",
        "for",
        "with",
        "in",
        "on",
        "at",
        "from",
        "by",
        "into",
        "onto",
        "about",
        "as",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "this",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "not",
        "very",
        "some",
        "any",
        "every",
        "no",
    ]
)
"""A turn whose last word is one of these stops mid-clause."""
_COORDINATORS = frozenset(["and", "so", "but", "or", "then", "also"])
_PREAMBLE_MAX_WORDS = 6
"""A turn this short that opens with a connector is taken as a preamble (Whisper often
mishears one into a verb: "And so am I fellow America.")."""
_SUBORDINATORS = frozenset(
    [
        "if",
        "unless",
        "although",
        "though",
        "because",
        "when",
        "whenever",
        "while",
        "since",
        "whereas",
        "until",
        "before",
        "after",
    ]
)
_VERBS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "being",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "ask",
        "asked",
        "tell",
        "told",
        "say",
        "said",
        "go",
        "went",
        "come",
        "came",
        "get",
        "got",
        "make",
        "made",
        "know",
        "knew",
        "think",
        "thought",
        "take",
        "took",
        "see",
        "saw",
        "want",
        "need",
        "give",
        "gave",
        "find",
        "found",
        "try",
        "let",
        "put",
        "mean",
        "keep",
        "help",
        "show",
        "turn",
        "start",
        "call",
        "play",
        "look",
        "feel",
        "wait",
        "stop",
        "like",
        "love",
        "hate",
        "work",
    ]
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _has_verb(words: list[str]) -> bool:
    return any(w in _VERBS or "'" in w or w.endswith(("ed", "ing")) for w in words)


def text_verdict(text: str | None) -> Verdict | None:
    """What the transcript so far says about the turn; None when it says nothing.

    ``incomplete``: it ends with a comma or dash, or with a word that needs
    more ("and", "the", "of", ...); or it opens with a connector ("and so ...") and has
    no verb yet; or it opens with a subordinate clause ("unless ...") and no main clause
    follows (no comma, no final ? or !). ``complete``: a question or exclamation, or a
    sentence ended by a full stop. Whisper's punctuation is only a hint: callers weigh it
    with the audio model.
    """
    if text is None or not text.strip():
        return None
    stripped = text.strip()
    words = _words(stripped)
    if not words:
        return None
    if stripped.endswith(("\u2026", "...")):
        return None  # Whisper trails off ("In this regard...") finished or not: no cue
    if stripped.endswith((",", ";", ":", "-")) or words[-1] in _DANGLING:
        return "incomplete"
    if stripped.endswith(("?", "!")):
        return "complete"
    if words[0] in _COORDINATORS and (
        not _has_verb(words[1:]) or len(words) <= _PREAMBLE_MAX_WORDS
    ):
        return "incomplete"  # "And so, my fellow Americans": a preamble, more to come
    if words[0] in _SUBORDINATORS and "," not in stripped:
        return "incomplete"
    return "complete" if stripped.endswith(".") else None


def semantic_verdict(model_probability: float | None, text: str | None) -> Verdict | None:
    """Combine the turn model and the transcript; None while neither has spoken.

    The transcript's ``incomplete`` wins (the audio model often takes a falling pitch
    before a pause for an ending); a question is complete; otherwise the model decides,
    and a model "unfinished" on a sentence that ends with a full stop is ``unsure``.
    """
    cue = text_verdict(text)
    if cue == "incomplete":
        return "incomplete"
    if cue == "complete" and text is not None and text.strip().endswith("?"):
        return "complete"
    if model_probability is None:
        return None
    if model_probability >= 0.5:
        return "complete"
    return "unsure" if cue == "complete" else "incomplete"


def semantic_wait_ms(eagerness: str, model_probability: float | None, text: str | None) -> float:
    """Silence (ms) that ends the turn now; the longest wait while undecided."""
    waits = SEMANTIC_WAITS.get(eagerness, SEMANTIC_WAITS["auto"])
    verdict = semantic_verdict(model_probability, text)
    return waits.incomplete_ms if verdict is None else waits.for_verdict(verdict)


ADAPTIVE_INCOMPLETE_EXTRA_MS = 1000.0
"""server_vad: a turn that stops mid-clause waits this much longer than ``silence_ms``."""
ADAPTIVE_UNSURE_EXTRA_MS = 300.0
"""server_vad: a sentence the turn model thinks goes on waits this much longer (jfk.wav
pauses 544 ms after a "for you." that goes on; a longer wait delays every read sentence
the model doubts)."""
LONG_TURN_MS = 5000.0
"""server_vad: a sentence (not a question) that ends a turn this long (ms, from the turn's
start to the pause) is only "unsure": someone who talks this long is telling or reading
something and pauses between sentences (lhotse/2412-153948-0000.wav pauses 672 ms after
"... to leave my native country." 7.2 s in, and goes on). Short turns, the questions and
commands of a conversation, keep the quick answer."""


def adaptive_wait_ms(
    silence_ms: float,
    text: str | None,
    model_probability: float | None = None,
    turn_ms: float = 0.0,
) -> float:
    """``server_vad`` with adaptive silence, in ms (capped at 10 s).

    0.6 x ``silence_ms`` (at least 200 ms) when the turn is finished (a question, or a
    sentence the turn model, when given, agrees with); ``silence_ms`` + 1 s when the
    transcript stops mid-clause, or the model says "not done" and the transcript has no
    ending; ``silence_ms`` + 0.3 s when the model says "not done" but Whisper ended a
    sentence ("unsure"), or when that sentence ends a turn of :data:`LONG_TURN_MS` or
    more (``turn_ms``: the turn so far); ``silence_ms`` when nothing is known.
    """
    verdict = (
        semantic_verdict(model_probability, text)
        if model_probability is not None
        else text_verdict(text)
    )
    if (
        verdict == "complete"
        and turn_ms >= LONG_TURN_MS
        and not (text or "").strip().endswith("?")
    ):
        verdict = "unsure"
    if verdict == "complete":
        return max(200.0, 0.6 * silence_ms) if silence_ms > 200.0 else silence_ms
    if verdict == "incomplete":
        return min(10000.0, silence_ms + ADAPTIVE_INCOMPLETE_EXTRA_MS)
    if verdict == "unsure":
        return min(10000.0, silence_ms + ADAPTIVE_UNSURE_EXTRA_MS)
    return silence_ms


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
    """How long the current pause must last before the turn ends.

    ``mode``: ``server_vad`` (``silence_ms``, adapted to the turn when ``adaptive``) or
    ``semantic_vad`` (``eagerness``). ``use_model``: a turn-model probability will come
    for each pause (the caller asks the model after :data:`MODEL_CHECK_MS`).
    """

    mode: Literal["server_vad", "semantic_vad"]
    silence_ms: float = 500.0
    adaptive: bool = True
    eagerness: Eagerness = "auto"
    use_model: bool = False

    @property
    def max_wait_ms(self) -> float:
        """The longest any pause is waited for (the VAD's own silence limit)."""
        if self.mode == "semantic_vad":
            return SEMANTIC_WAITS[self.eagerness].incomplete_ms
        if not self.adaptive:
            return self.silence_ms
        return min(10000.0, self.silence_ms + ADAPTIVE_INCOMPLETE_EXTRA_MS)

    def undecided_wait_ms(self, text: str | None) -> float:
        """The longest a pause waits for the evidence :meth:`wait_ms` still lacks. With
        ``server_vad``, a sentence Whisper ended waits for the turn model's view at most
        ``silence_ms`` + the unsure extra (on a loaded machine the model can come late,
        and every finished turn would wait :attr:`max_wait_ms`); anything else waits for
        it as long as :attr:`max_wait_ms`."""
        if self.mode == "server_vad" and text_verdict(text) == "complete":
            return min(self.max_wait_ms, self.silence_ms + ADAPTIVE_UNSURE_EXTRA_MS)
        return self.max_wait_ms

    def wait_ms(
        self, text: str | None, model_probability: float | None, turn_ms: float = 0.0
    ) -> float | None:
        """Silence (ms) after which this pause ends the turn, or None while evidence is
        still to come (the caller waits, at most :meth:`undecided_wait_ms`).

        ``text``: transcript up to the pause (None: not ready; "" when nothing was
        heard); ``model_probability``: the turn model's P(finished) (None: not ready);
        ``turn_ms``: how long the turn had gone on when the pause began.
        """
        if self.mode == "semantic_vad":
            if text_verdict(text) == "incomplete":
                return SEMANTIC_WAITS[self.eagerness].incomplete_ms
            if text is None or (self.use_model and model_probability is None):
                return None
            if not self.use_model:  # no model installed: the transcript alone decides
                model_probability = 0.9 if text_verdict(text) == "complete" else 0.4
            return semantic_wait_ms(self.eagerness, model_probability, text)
        if not self.adaptive:
            return self.silence_ms
        if text is None:
            return None
        if self.use_model and model_probability is None:
            if text_verdict(text) == "incomplete":  # mid-clause: no need to hear the model
                return self.max_wait_ms
            return None
        return adaptive_wait_ms(self.silence_ms, text, model_probability, turn_ms)
