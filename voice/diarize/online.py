"""Online speaker identification: match each turn's voice embedding to a session's speakers.

Pure numpy state, no model and no I/O: the caller embeds audio (any
:class:`~voice.diarize.base.SpeakerEmbedder`, L2-normalised vectors) and asks
:meth:`SpeakerProfiles.identify` who it is. Labels are stable for the life of
the object: a speaker keeps the label it was first given.

Matching, for an embedding ``e`` (cosine similarity throughout):

1. the profile with the highest score, where a profile's score is the best of
   ``e``'s similarity to its running centroid and, for an enrolled speaker, to
   its enrollment embedding; at or above ``threshold`` it is that speaker (the
   centroid moves towards ``e``, weighted by speech duration);
2. otherwise an enrolled speaker not yet heard, the most similar one, when its
   similarity reaches ``enroll_threshold`` and beats every other unheard enrolled
   speaker by ``margin``: enrollment clips are usually recorded on another channel
   than the live audio, so their similarity runs lower and close together (0.33 vs
   0.32 for a 1 s turn of katiesteve.wav) — a name is given only on clear evidence;
3. otherwise a new anonymous speaker, ``Speaker 1``, ``Speaker 2``... When the claim
   in 2 was a tie, the anonymous speaker remembers the tied names, and takes the
   name that is left once the others were heard (joint assignment), or the one its
   accumulated voice clearly matches: from that turn on it carries the name (turns
   already labelled keep their label; an anonymous label is never issued twice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpeakerMatch:
    """Who a turn was attributed to. ``similarity`` is in [-1, 1] (0.0 for a new speaker)."""

    label: str
    similarity: float
    new: bool
    """The label was created (or an enrolled name first heard) by this turn."""
    enrolled: bool
    """The label is a name given by enrollment."""


@dataclass
class _Profile:
    label: str
    total: np.ndarray
    """Duration-weighted sum of the embeddings heard (zeros until first heard)."""
    weight: float
    reference: np.ndarray | None
    """Enrollment embedding, for named speakers."""
    candidates: frozenset[str] = frozenset()
    """An anonymous speaker's tied enrolled names (step 3 of the module docstring)."""

    @property
    def heard(self) -> bool:
        return self.weight > 0.0

    def score(self, embedding: np.ndarray) -> float:
        scores = []
        if self.heard:
            scores.append(_cosine(self.total, embedding))
        if self.reference is not None:
            scores.append(float(self.reference @ embedding))
        return max(scores) if scores else -1.0


class SpeakerProfiles:
    """The speakers of one session. Not thread-safe: call from one thread or event loop."""

    def __init__(
        self, threshold: float = 0.55, enroll_threshold: float = 0.3, anonymous: str = "Speaker",
        margin: float = 0.05,
    ) -> None:
        if not -1.0 <= enroll_threshold <= 1.0 or not -1.0 <= threshold <= 1.0:
            raise ValueError("thresholds are cosine similarities in [-1, 1]")
        self.threshold = threshold
        self.enroll_threshold = enroll_threshold
        self.margin = margin
        self._anonymous = anonymous
        self._profiles: list[_Profile] = []
        self._issued: set[str] = set()

    def enroll(self, name: str, embedding: np.ndarray) -> None:
        """Add a named speaker from an enrollment embedding; a repeated name is replaced."""
        name = name.strip()
        if not name:
            raise ValueError("a known speaker needs a name")
        ref = _unit(embedding)
        for profile in self._profiles:
            if profile.label == name:
                profile.reference = ref
                return
        self._profiles.append(_Profile(name, np.zeros_like(ref), 0.0, ref))

    @property
    def labels(self) -> list[str]:
        """Labels heard so far, in order of first appearance (enrolled-only names excluded)."""
        return [p.label for p in self._profiles if p.heard]

    @property
    def enrolled(self) -> list[str]:
        return [p.label for p in self._profiles if p.reference is not None]

    def peek(self, embedding: np.ndarray) -> SpeakerMatch | None:
        """The known speaker ``embedding`` would match, without changing any profile.

        None when it would be a new speaker. Used for provisional labels and quick
        decisions (focus) on a partial turn.
        """
        e = _unit(embedding)
        best = self._best(e)
        if best is not None and best[1] >= self.threshold:
            return SpeakerMatch(best[0].label, best[1], False, best[0].reference is not None)
        claim, _ = self._claim(e)
        if claim is not None:
            return SpeakerMatch(claim[0].label, claim[1], True, True)
        return None

    def predict(self, embedding: np.ndarray) -> str:
        """The label :meth:`identify` would give ``embedding`` now (a new speaker's
        included), without changing any profile."""
        match = self.peek(embedding)
        return match.label if match is not None else self._free_anonymous()

    def identify(
        self, embedding: np.ndarray, duration_s: float = 1.0, exclude: frozenset[str] = frozenset()
    ) -> SpeakerMatch:
        """Attribute one turn (``duration_s`` of speech) and update that speaker's profile.

        ``exclude``: labels known not to be this voice (the stretch just before it in
        the same turn, from which the voice changed).
        """
        e = _unit(embedding)
        weight = max(duration_s, 0.1)
        best = self._best(e, exclude)
        if best is not None and best[1] >= self.threshold:
            profile, similarity = best
            new = not profile.heard
        else:
            claim, tied = self._claim(e, exclude)
            if claim is not None:
                profile, similarity, new = claim[0], claim[1], True
            else:
                profile = _Profile(self._next_anonymous(), np.zeros_like(e), 0.0, None, tied)
                self._profiles.append(profile)
                similarity, new = 0.0, True
        profile.total = profile.total + weight * e
        profile.weight += weight
        self._resolve_ties()
        return SpeakerMatch(profile.label, similarity, new, profile.reference is not None)

    def _best(
        self, e: np.ndarray, exclude: frozenset[str] = frozenset()
    ) -> tuple[_Profile, float] | None:
        scored = [(p, p.score(e)) for p in self._profiles if p.label not in exclude]
        return max(scored, key=lambda ps: ps[1]) if scored else None

    def _unheard_enrolled(self, exclude: frozenset[str] = frozenset()) -> list[_Profile]:
        return [p for p in self._profiles
                if p.reference is not None and not p.heard and p.label not in exclude]

    def _claim(
        self, e: np.ndarray, exclude: frozenset[str] = frozenset(),
        among: frozenset[str] | None = None,
    ) -> tuple[tuple[_Profile, float] | None, frozenset[str]]:
        """The unheard enrolled speaker ``e`` clearly is (step 2), else None and the
        names tied with the best one (empty when none reaches ``enroll_threshold``)."""
        scored = sorted(
            ((p, _cosine(p.reference, e)) for p in self._unheard_enrolled(exclude)
             if p.reference is not None and (among is None or p.label in among)),
            key=lambda ps: -ps[1],
        )
        if not scored or scored[0][1] < self.enroll_threshold:
            return None, frozenset()
        best = scored[0][1]
        if len(scored) == 1 or best - scored[1][1] >= self.margin:
            return scored[0], frozenset()
        return None, frozenset(p.label for p, s in scored if best - s < self.margin)

    def _resolve_ties(self) -> None:
        """Name anonymous speakers whose tie is decided (module docstring, step 3)."""
        for profile in [p for p in self._profiles if p.candidates]:
            left = frozenset(p.label for p in self._unheard_enrolled()) & profile.candidates
            if not left:
                profile.candidates = frozenset()
                continue
            if len(left) == 1:
                (name,) = left
            else:
                claim, _ = self._claim(_unit(profile.total), among=left)
                if claim is None:
                    profile.candidates = left
                    continue
                name = claim[0].label
            enrolled = next(p for p in self._profiles if p.label == name)
            self._profiles.remove(enrolled)
            profile.label, profile.reference = name, enrolled.reference
            profile.candidates = frozenset()

    def _free_anonymous(self) -> str:
        taken = {p.label for p in self._profiles} | self._issued
        n = 1
        while f"{self._anonymous} {n}" in taken:
            n += 1
        return f"{self._anonymous} {n}"

    def _next_anonymous(self) -> str:
        label = self._free_anonymous()
        self._issued.add(label)
        return label


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("embedding must be a finite, non-zero vector")
    return v / norm


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b) / max(float(np.linalg.norm(a)) * float(np.linalg.norm(b)), 1e-12)
