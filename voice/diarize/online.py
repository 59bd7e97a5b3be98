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
   similarity reaches ``enroll_threshold``: enrollment clips are usually recorded
   on another channel than the live audio, so their similarity runs lower;
3. otherwise a new anonymous speaker, ``Speaker 1``, ``Speaker 2``...
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
        self, threshold: float = 0.55, enroll_threshold: float = 0.3, anonymous: str = "Speaker"
    ) -> None:
        if not -1.0 <= enroll_threshold <= 1.0 or not -1.0 <= threshold <= 1.0:
            raise ValueError("thresholds are cosine similarities in [-1, 1]")
        self.threshold = threshold
        self.enroll_threshold = enroll_threshold
        self._anonymous = anonymous
        self._profiles: list[_Profile] = []

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
        claim = self._best_unheard_enrolled(e)
        if claim is not None:
            return SpeakerMatch(claim[0].label, claim[1], True, True)
        return None

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
            claim = self._best_unheard_enrolled(e, exclude)
            if claim is not None:
                profile, similarity, new = claim[0], claim[1], True
            else:
                profile = _Profile(self._next_anonymous(), np.zeros_like(e), 0.0, None)
                self._profiles.append(profile)
                similarity, new = 0.0, True
        profile.total = profile.total + weight * e
        profile.weight += weight
        return SpeakerMatch(profile.label, similarity, new, profile.reference is not None)

    def _best(
        self, e: np.ndarray, exclude: frozenset[str] = frozenset()
    ) -> tuple[_Profile, float] | None:
        scored = [(p, p.score(e)) for p in self._profiles if p.label not in exclude]
        return max(scored, key=lambda ps: ps[1]) if scored else None

    def _best_unheard_enrolled(
        self, e: np.ndarray, exclude: frozenset[str] = frozenset()
    ) -> tuple[_Profile, float] | None:
        candidates = [
            (p, float(p.reference @ e))
            for p in self._profiles
            if p.reference is not None and not p.heard and p.label not in exclude
        ]
        if not candidates:
            return None
        best = max(candidates, key=lambda ps: ps[1])
        return best if best[1] >= self.enroll_threshold else None

    def _next_anonymous(self) -> str:
        taken = {p.label for p in self._profiles}
        n = 1
        while f"{self._anonymous} {n}" in taken:
            n += 1
        return f"{self._anonymous} {n}"


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("embedding must be a finite, non-zero vector")
    return v / norm


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b) / max(float(np.linalg.norm(a)) * float(np.linalg.norm(b)), 1e-12)
