"""Where to cut a long recording into transcription windows. Pure functions.

Whisper's memory and latency grow with the audio it is given, so a meeting is
transcribed in windows of about ``target_s`` and at most ``max_s`` seconds,
cut in silences found by the VAD. Windows never overlap (no word is
transcribed twice) and skip long stretches without speech. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Span = tuple[float, float]
CutPicker = Callable[[float, float], float]
"""``(earliest, latest) -> time`` (s) at which to cut speech that has no pause."""


def _even_cut(earliest: float, latest: float) -> float:
    return latest


def split_long(
    regions: Sequence[Span], max_s: float, target_s: float, pick_cut: CutPicker = _even_cut
) -> list[Span]:
    """Regions longer than ``max_s`` cut into pieces, each cut made by ``pick_cut``
    between ``target_s`` and ``max_s`` after the piece's start."""
    out: list[Span] = []
    for start, end in regions:
        while end - start > max_s:
            cut = min(max(pick_cut(start + target_s, start + max_s), start + 1.0), start + max_s)
            out.append((start, cut))
            start = cut
        if end > start:
            out.append((start, end))
    return out


def plan_windows(
    regions: Sequence[Span],
    duration_s: float,
    *,
    target_s: float = 45.0,
    max_s: float = 60.0,
    pad_s: float = 0.3,
    pick_cut: CutPicker = _even_cut,
) -> list[Span]:
    """Windows ``(start, end)`` covering every speech region of ``regions``.

    A window collects consecutive regions until it is at least ``target_s`` long
    or the next region would take it past ``max_s``; it then extends ``pad_s``
    around its speech, at most to the middle of the neighbouring silences and
    within ``[0, duration_s]``. Speech without a pause for longer than ``max_s``
    is cut where ``pick_cut`` says (see :func:`quietest_point`).
    """
    if not 0 < target_s <= max_s:
        raise ValueError("need 0 < target_s <= max_s")
    spans = split_long(
        sorted((max(0.0, s), min(duration_s, e)) for s, e in regions if e > s),
        max_s,
        target_s,
        pick_cut,
    )
    groups: list[Span] = []
    for start, end in spans:
        if groups:
            first, last = groups[-1]
            if last - first < target_s and end - first <= max_s:
                groups[-1] = (first, max(last, end))
                continue
        groups.append((start, end))
    windows: list[Span] = []
    for i, (start, end) in enumerate(groups):
        low = (groups[i - 1][1] + start) / 2 if i else 0.0
        high = (end + groups[i + 1][0]) / 2 if i + 1 < len(groups) else duration_s
        windows.append((max(low, start - pad_s), min(high, end + pad_s)))
    return windows


def quietest_point(
    audio: np.ndarray, sample_rate: int, earliest: float, latest: float, frame_s: float = 0.05
) -> float:
    """Centre (s) of the ``frame_s`` frame with the least energy in [earliest, latest]."""
    hop = max(1, round(frame_s * sample_rate))
    lo = max(0, round(earliest * sample_rate))
    hi = min(len(audio), round(latest * sample_rate))
    count = (hi - lo) // hop
    if count < 1:
        return latest
    frames = np.asarray(audio[lo : lo + count * hop], dtype=np.float32).reshape(count, hop)
    best = int(np.argmin(np.einsum("ij,ij->i", frames, frames)))
    return (lo + best * hop + hop / 2) / sample_rate
