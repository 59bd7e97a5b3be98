"""Average-linkage agglomerative clustering with cannot-link groups.

Pure numpy. Rows are L2-normalised embeddings; the distance is cosine distance
(``1 - cos``, 0..2) and merged clusters keep the mean pairwise distance
(UPGMA, Lance-Williams update), as ``scipy``'s ``method="average"``.

``groups`` adds cannot-link constraints: two rows with the same group id (two
local speakers the segmentation model found in one window, hence different
people) make every merge joining their clusters cost :data:`PENALTY` more, so
such merges happen only when a requested speaker count forces them. Without
groups the merge order is scipy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PENALTY = 4.0
"""Added to the distance of a merge that breaks a cannot-link (cosine distance <= 2)."""


@dataclass(frozen=True)
class Dendrogram:
    """Merges in order: ``pairs[m]`` = the two cluster representatives (row
    indices) joined by merge ``m`` at ``heights[m]`` (penalised distance)."""

    size: int
    pairs: np.ndarray
    heights: np.ndarray

    def count_at(self, threshold: float) -> int:
        """Clusters left when every merge cheaper than or equal to ``threshold`` is made.

        Merge heights of average linkage never decrease, so it is a prefix."""
        return self.size - int(np.searchsorted(self.heights, threshold, side="right"))

    def labels(self, clusters: int) -> np.ndarray:
        """Label ``0..K-1`` per row after merging down to ``clusters`` (clamped to 1..size)."""
        clusters = min(max(clusters, 1), self.size)
        parent = np.arange(self.size)
        for keep, drop in self.pairs[: self.size - clusters]:
            parent[parent == drop] = keep
        _, labels = np.unique(parent, return_inverse=True)
        return labels.astype(int)


def average_linkage(embeddings: np.ndarray, groups: np.ndarray | None = None) -> Dendrogram:
    """Full merge sequence of ``embeddings`` ``(n, D)`` (rows L2-normalised).

    ``groups``: optional ``(n,)`` ints; rows sharing a value cannot link
    (penalised). O(n^2) memory, about O(n^2) time (row minima are cached).
    """
    n = embeddings.shape[0]
    if n == 0:
        return Dendrogram(0, np.zeros((0, 2), dtype=int), np.zeros(0))
    unit = embeddings.astype(np.float64)
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    if groups is None:
        linked = np.zeros((n, n), dtype=bool)
    else:
        groups = np.asarray(groups)
        linked = groups[:, None] == groups[None, :]
    cost = distance + PENALTY * linked
    np.fill_diagonal(cost, np.inf)
    sizes = np.ones(n)
    nearest = cost.argmin(axis=1)
    best = cost[np.arange(n), nearest]
    pairs = np.zeros((n - 1, 2), dtype=int)
    heights = np.zeros(n - 1)
    for m in range(n - 1):
        a = int(np.argmin(best))
        b = int(nearest[a])
        keep, drop = min(a, b), max(a, b)
        pairs[m], heights[m] = (keep, drop), cost[a, b]
        total = sizes[keep] + sizes[drop]
        merged = (sizes[keep] * distance[keep] + sizes[drop] * distance[drop]) / total
        distance[keep], distance[:, keep] = merged, merged
        row = linked[keep] | linked[drop]
        linked[keep], linked[:, keep] = row, row
        sizes[keep] = total
        new_cost = merged + PENALTY * row
        new_cost[keep] = np.inf
        new_cost[~np.isfinite(cost[keep])] = np.inf  # inactive clusters stay out
        new_cost[drop] = np.inf
        cost[keep], cost[:, keep] = new_cost, new_cost
        cost[drop], cost[:, drop] = np.inf, np.inf
        best[drop] = np.inf
        stale = np.flatnonzero((nearest == keep) | (nearest == drop))
        stale = stale[np.isfinite(best[stale])]
        closer = np.flatnonzero(new_cost < best)
        nearest[closer], best[closer] = keep, new_cost[closer]
        for rows in (stale, np.array([keep])):
            if len(rows):
                nearest[rows] = cost[rows].argmin(axis=1)
                best[rows] = cost[rows, nearest[rows]]
    return Dendrogram(n, pairs, heights)
