"""Agglomerative clustering of speaker embeddings, and constrained assignment.

Pure numpy/scipy, no models. Embeddings are L2-normalised rows; the distance
is cosine distance (``1 - cos``, 0..2) and clusters merge by average linkage
(mean pairwise distance, :mod:`voice.diarize.linkage`), which on CAM++
embeddings gave a clearer gap between same- and different-speaker merges than
pyannote's centroid linkage. Embeddings of two speakers found in one window
are kept apart (cannot-link) unless a requested count needs them merged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from voice.diarize.linkage import average_linkage


@dataclass(frozen=True)
class ClusteringOptions:
    """``threshold``: average cosine distance (0..2) at which merging stops.
    ``min_cluster_size``: clusters with fewer members are folded into the nearest
    larger one (capped at 10 % of the embeddings) unless a speaker count forces
    them to stay.
    """

    threshold: float = 0.5
    min_cluster_size: int = 3


def cluster(
    embeddings: np.ndarray,
    options: ClusteringOptions = ClusteringOptions(),
    bounds: tuple[int, int | None] = (1, None),
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster label ``0..K-1`` for each row of ``embeddings``.

    ``bounds`` = (lowest, highest) number of clusters; an unset highest means
    no limit. The count is also capped at the number of embeddings.
    ``groups``: optional window id per row; rows of one window cannot link.
    """
    n = embeddings.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    low, high = bounds
    high = n if high is None else min(high, n)
    low = min(low, high)
    if n == 1:
        return np.zeros(1, dtype=int)
    tree = average_linkage(embeddings, groups)
    labels = tree.labels(tree.count_at(options.threshold))
    labels = _fold_small(labels, embeddings, options.min_cluster_size)
    count = len(np.unique(labels))
    if not low <= count <= high:
        labels = tree.labels(min(max(count, low), high))
    return _renumber(labels)


def _fold_small(labels: np.ndarray, embeddings: np.ndarray, min_size: int) -> np.ndarray:
    min_size = min(min_size, max(1, round(0.1 * len(labels))))
    ids, sizes = np.unique(labels, return_counts=True)
    large = ids[sizes >= min_size]
    if len(large) == 0:
        return np.zeros_like(labels)
    if len(large) == len(ids):
        return labels
    centroids = centroids_of(embeddings, labels, large)
    small = ~np.isin(labels, large)
    nearest = np.argmax(embeddings[small] @ centroids.T, axis=1)
    labels = labels.copy()
    labels[small] = large[nearest]
    return labels


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, renumbered = np.unique(labels, return_inverse=True)
    return renumbered.astype(int)


def centroids_of(embeddings: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """L2-normalised mean embedding of each cluster in ``ids``: ``(len(ids), D)``."""
    means = np.stack([embeddings[labels == k].mean(axis=0) for k in ids])
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def assign_per_window(similarity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Map each window's local speakers to distinct clusters.

    ``similarity``: ``(windows, local_speakers, clusters)`` cosine similarity;
    ``valid``: ``(windows, local_speakers)`` bool, False for speakers without an
    embedding. Returns ``(windows, local_speakers)`` cluster ids, -1 where a
    speaker is invalid or left over (more local speakers than clusters).
    Within a window two local speakers never share a cluster (Hungarian
    assignment maximising total similarity).
    """
    windows, speakers, _ = similarity.shape
    hard = np.full((windows, speakers), -1, dtype=int)
    for w in range(windows):
        rows = np.flatnonzero(valid[w])
        if len(rows) == 0:
            continue
        picked, clusters = linear_sum_assignment(similarity[w, rows], maximize=True)
        hard[w, rows[picked]] = clusters
    return hard
