"""Cluster labels for local speakers that were not embedded, from overlapping windows.

Pure numpy. Sliding segmentation windows overlap; a local speaker of one
window is the same person as the local speaker of an overlapping window who
is active on the same frames. So a local speaker without an embedding takes
the cluster whose (already assigned) local speakers in the overlapping
windows share the most active frames with it, two local speakers of one
window never sharing a cluster.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def shared_frames(
    activity: np.ndarray, offsets: np.ndarray, window: int, known: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Frames each local speaker of ``window`` is active together with the
    ``known`` local speakers of the other windows overlapping it.

    ``activity``: ``(windows, frames, local_speakers)`` 0/1; ``offsets``: each
    window's first frame on the global grid; ``known``: ``(windows,
    local_speakers)`` bool. Returns ``(near, both)``: the overlapping windows
    ``(n,)`` and ``(local_speakers, n, local_speakers)`` frame counts, zero
    where the other speaker is not known.
    """
    _, frames, speakers = activity.shape
    candidates = np.flatnonzero(known.any(axis=1))
    near = candidates[
        (np.abs(offsets[candidates] - offsets[window]) < frames) & (candidates != window)
    ]
    both = np.zeros((speakers, len(near), speakers))
    for i, v in enumerate(near):
        shift = int(offsets[v] - offsets[window])
        mine = activity[window, max(0, shift) : frames + min(0, shift)]
        theirs = activity[v, max(0, -shift) : frames + min(0, -shift)]
        both[:, i, :] = (mine.T @ theirs) * known[v]
    return near, both


def assign_by_overlap(
    activity: np.ndarray,
    offsets: np.ndarray,
    hard: np.ndarray,
    pending: np.ndarray,
    num_clusters: int,
    min_frames: float,
) -> np.ndarray:
    """``hard`` with the ``pending`` local speakers assigned from overlapping windows.

    ``hard``: ``(windows, local_speakers)`` cluster id or -1; ``pending``: bool
    of the same shape, the local speakers to assign (their ``hard`` entries
    are replaced; the others are trusted). A pending speaker takes a cluster
    when at least ``min_frames`` (> 0) of its active frames coincide with that
    cluster's, never one already used in its window. Returns a new array;
    speakers without such a match stay -1.
    """
    result = np.where(pending, -1, hard)
    known = (hard >= 0) & ~pending
    for w in np.flatnonzero(pending.any(axis=1)).tolist():
        near, both = shared_frames(activity, offsets, w, known)
        scores = np.zeros((activity.shape[2], num_clusters))
        for i, v in enumerate(near):
            for t in np.flatnonzero(known[v]):
                scores[:, hard[v, t]] += both[:, i, t]
        rows = np.flatnonzero(pending[w])
        scores = scores[rows]
        scores[:, result[w][result[w] >= 0]] = 0.0  # a window's speakers stay distinct
        picked, clusters = linear_sum_assignment(scores, maximize=True)
        keep = scores[picked, clusters] >= max(min_frames, 1e-9)
        result[w, rows[picked[keep]]] = clusters[keep]
    return result
