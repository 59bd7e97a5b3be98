"""Choosing the sentences that stand for a whole meeting. Pure numpy; no I/O.

Key points are picked by greedy maximisation of a *facility-location* objective
(Lin & Bilmes' monotone submodular coverage): every sentence ``i`` of the meeting
is "covered" by its most similar chosen sentence, and a choice's worth is

    sum_i weight_i * max_{j chosen} sim(i, j) * near(i, j)

where ``sim`` is the cosine similarity of sentence embeddings (negatives as 0),
``weight_i`` the sentence's content-word count (fillers weigh nothing) and
``near`` 1 inside the same stretch of the meeting (one of ``sections`` equal
parts, in sentence order) and ``far_factor`` elsewhere, so coverage is earned
across the meeting's phases and not only around its main topic. Redundancy
costs by construction (a sentence like one already chosen adds little), and a
candidate closer than ``max_similarity`` to a chosen one is skipped outright.
Each step takes the candidate with the best gain per word (``gain / words **
length_power``) times a mild preference for earlier sentences (meetings state
their purpose and agenda first), until the word budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SelectOptions:
    """``budget_words``: most words in all chosen texts; ``max_items``: most items;
    see the module docstring for the rest."""

    budget_words: int = 300
    max_items: int = 20
    sections: int = 10
    far_factor: float = 0.5
    length_power: float = 0.5
    position_weight: float = 1.0
    max_similarity: float = 0.85


def budget_for(total_words: int, low: int = 40, high: int = 400) -> int:
    """Key-point word budget for a meeting of ``total_words`` words: one word in six,
    within ``low``-``high`` (a 30-minute meeting of ~2000 words gets ~330)."""
    return max(low, min(high, round(total_words / 6)))


def select(
    vectors: np.ndarray,
    weights: Sequence[float],
    candidates: Sequence[int],
    lengths: Sequence[int],
    options: SelectOptions | None = None,
) -> list[int]:
    """Indices (into ``vectors``, in sentence order) of the chosen candidates.

    ``vectors``: one unit row per sentence of the meeting; ``weights``: one per
    sentence; ``candidates``: the sentence indices that may be chosen, with their
    display ``lengths`` in words (same order).
    """
    opts = options or SelectOptions()
    n = len(vectors)
    if n == 0 or not candidates:
        return []
    weight = np.asarray(weights, dtype=np.float64)
    cand = np.asarray(candidates, dtype=np.int64)
    sim = np.clip(vectors @ vectors[cand].T, 0.0, None).astype(np.float64)  # (n, c)
    section = np.arange(n) * max(1, opts.sections) // n
    near = np.where(section[:, None] == section[cand][None, :], 1.0, opts.far_factor)
    reach = sim * near
    length = np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    prior = 1.0 + opts.position_weight * (1.0 - cand / n)
    cost = length**opts.length_power
    cover = np.zeros(n)
    open_ = np.ones(len(cand), dtype=bool)
    used = 0.0
    chosen: list[int] = []
    while len(chosen) < opts.max_items:
        open_ &= used + length <= opts.budget_words
        if not open_.any():
            break
        gain = (weight[:, None] * np.maximum(reach - cover[:, None], 0.0)).sum(axis=0)
        score = np.where(open_, gain * prior / cost, -1.0)
        best = int(score.argmax())
        if score[best] <= 0.0:
            break
        chosen.append(best)
        used += length[best]
        cover = np.maximum(cover, reach[:, best])
        open_[best] = False
        open_ &= sim[cand[best], :] <= opts.max_similarity
    return sorted(int(cand[c]) for c in chosen)
