"""Word times stretched to the edges of the speech the VAD found. A pure function.

Whisper's word times are loose at the edges of an utterance: a reply's first word
often starts late, its last word ends early (on far-field meeting audio, ``I am.``
ends 0.3 s before the speaker stops). The VAD's speech regions are better there,
so the first and last word of each region reach its edges (padded), by at most a
bounded stretch, without overlapping a neighbouring word. Words in the middle of a
region and regions without words are left alone: a segment never covers audio
Whisper gave no word for, beyond the edges of speech it did hear. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from voice.stt.base import Word

Span = tuple[float, float]


def reach_speech_edges(
    words: Sequence[Word],
    regions: Sequence[Span],
    *,
    pad_s: float = 0.2,
    max_stretch_s: float = 1.0,
    duration_s: float | None = None,
) -> list[Word]:
    """``words`` (time-ordered) with the first and last word touching each speech
    region (sorted) moved out to the region's edges widened by ``pad_s``: a start moves
    earlier, an end later, each by at most ``max_stretch_s`` and never past the
    neighbouring word or outside ``[0, duration_s]``. Raises ``ValueError`` on a
    negative ``pad_s`` or ``max_stretch_s``."""
    if pad_s < 0 or max_stretch_s < 0:
        raise ValueError("pad_s and max_stretch_s must be >= 0")
    out = list(words)
    end_limit = float("inf") if duration_s is None else duration_s
    i = 0
    for r0, r1 in regions:
        while i < len(out) and out[i].end < r0:
            i += 1
        j = i
        while j < len(out) and out[j].start <= r1:
            j += 1
        if j == i:  # no word touches this region
            continue
        first = out[i]  # stretch bounds count from the words as given
        floor = max(0.0, out[i - 1].end if i else 0.0, words[i].start - max_stretch_s)
        out[i] = replace(first, start=min(first.start, max(floor, r0 - pad_s)))
        last = out[j - 1]
        ceiling = min(
            end_limit, out[j].start if j < len(out) else end_limit, words[j - 1].end + max_stretch_s
        )
        out[j - 1] = replace(last, end=max(last.end, min(ceiling, r1 + pad_s)))
    return out
