"""From per-window clustered activity to global speaker turns.

Pure numpy. Windows overlap; each global frame gets the number of speakers
the windows covering it agree on (the mean of their active-speaker counts,
rounded up from ``min_share``), and that many clusters with the strongest
summed activity are marked active there.
"""

from __future__ import annotations

import numpy as np

from voice.diarize.base import SpeakerTurn


def frame_activity(
    activity: np.ndarray,
    offsets: np.ndarray,
    hard: np.ndarray,
    num_clusters: int,
    num_frames: int,
    min_share: float = 0.5,
) -> np.ndarray:
    """``(num_frames, num_clusters)`` 0/1 activity on the global frame grid.

    ``activity``: ``(windows, frames, local_speakers)`` 0/1; ``offsets``: each
    window's first global frame; ``hard``: ``(windows, local_speakers)`` cluster
    id or -1 (ignored). A frame has ``k`` speakers when the mean count over the
    windows covering it is at least ``k - 1 + min_share`` (0 < ``min_share`` <= 1;
    lower keeps speech that only some of the windows heard).
    """
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1] (got {min_share})")
    score, count = cluster_scores(activity, offsets, hard, num_clusters, num_frames, min_share)
    result = np.zeros(score.shape, dtype=np.uint8)
    for rank in range(min(int(count.max(initial=0)), num_clusters)):
        rows = np.flatnonzero(count > rank)  # the rank-th strongest cluster, ties by id
        cols = np.argmax(score[rows], axis=1)
        keep = score[rows, cols] > 0
        result[rows[keep], cols[keep]] = 1
        score[rows, cols] = -np.inf
    return result[:num_frames]


def cluster_scores(
    activity: np.ndarray,
    offsets: np.ndarray,
    hard: np.ndarray,
    num_clusters: int,
    num_frames: int,
    min_share: float,
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`frame_activity` ranks: per global frame (at least ``num_frames``, to the
    last window's end), each cluster's activity summed over the windows covering it
    (float32 ``(frames, clusters)``), and how many speakers the frame has (int)."""
    windows, frames, _ = activity.shape
    length = max(num_frames, int(offsets.max(initial=0)) + frames)
    score = np.zeros((length, num_clusters), dtype=np.float32)  # sums of 0/1: exact
    speakers = np.zeros(length)
    coverage = np.zeros(length)
    for w in range(windows):
        span = slice(offsets[w], offsets[w] + frames)
        coverage[span] += 1
        speakers[span] += activity[w].sum(axis=1)
        for k in np.unique(hard[w][hard[w] >= 0]):
            score[span, k] += activity[w][:, hard[w] == k].max(axis=1)
    count = np.floor(speakers / np.maximum(coverage, 1) + 1.0 - min_share + 1e-9).astype(int)
    return score, count


def to_turns(
    binary: np.ndarray,
    frame_step_s: float,
    frame_duration_s: float,
    end_s: float,
    min_gap_s: float = 0.0,
) -> list[SpeakerTurn]:
    """Turns from ``(frames, clusters)`` 0/1 activity; speaker names are cluster ids.

    A run of active frames ``i..j-1`` becomes ``[middle(i), middle(j)]`` where
    ``middle(i) = i * frame_step_s + frame_duration_s / 2``, clipped to ``end_s``.
    Same-speaker turns separated by less than ``min_gap_s`` are joined.
    """
    turns: list[SpeakerTurn] = []
    half = frame_duration_s / 2
    for k in range(binary.shape[1]):
        padded = np.concatenate([[0], binary[:, k].astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        merged: list[list[float]] = []
        for i, j in zip(edges[::2], edges[1::2], strict=True):
            start = min(i * frame_step_s + (half if i > 0 else 0.0), end_s)
            end = min(j * frame_step_s + half, end_s)
            if merged and start - merged[-1][1] < min_gap_s:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        turns.extend(SpeakerTurn(s, e, str(k)) for s, e in merged if e > s)
    return sorted(turns, key=lambda t: (t.start, t.end))
