"""Speaker turns kept only where a VAD hears speech at all.

segmentation-3.0 now and then labels a stretch of room noise as a speaker (2 s of it
on AMI dev01, becoming a third speaker). Silero scores that noise near 0 while it
scores even quiet far-field speech some percent. So turns are cut to the frames
where Silero's probability reaches a low floor, widened by a margin on each side:
speech the segmentation found inside such a region is untouched, and a turn over
audio Silero hears nothing in is dropped. Pure functions on arrays (the scores of a
whole signal come from :func:`voice.vad.lanes.score_signal`).
Times in seconds.
"""

from __future__ import annotations

import numpy as np

from voice.diarize.base import SAMPLE_RATE, SpeakerTurn
from voice.vad.base import FrameProbabilities


def fits(speech: FrameProbabilities | None, samples: int) -> bool:
    """Whether ``speech`` is Silero v6's scores of every whole frame of ``samples``."""
    return (
        speech is not None
        and speech.model == "silero-v6"
        and speech.frame_samples == 512
        and len(speech.values) == samples // 512
    )


def heard_regions(
    speech: FrameProbabilities, floor: float, pad_s: float
) -> list[tuple[float, float]]:
    """Runs of frames scored at or above ``floor``, each widened by ``pad_s`` (not
    below 0) and merged where they then touch; sorted."""
    frame_s = speech.frame_samples / SAMPLE_RATE
    voiced = np.concatenate([[False], np.asarray(speech.values) >= floor, [False]])
    edges = np.flatnonzero(np.diff(voiced.astype(np.int8)))
    regions: list[tuple[float, float]] = []
    for first, stop in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        start, end = max(0.0, first * frame_s - pad_s), stop * frame_s + pad_s
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def keep_heard(
    turns: list[SpeakerTurn], regions: list[tuple[float, float]]
) -> list[SpeakerTurn]:
    """The parts of ``turns`` inside ``regions`` (sorted, not overlapping), in order."""
    kept: list[SpeakerTurn] = []
    for turn in turns:
        for start, end in regions:
            lo, hi = max(turn.start, start), min(turn.end, end)
            if hi > lo:
                kept.append(SpeakerTurn(lo, hi, turn.speaker))
    kept.sort(key=lambda t: (t.start, t.end))
    return kept
