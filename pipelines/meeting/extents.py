"""Word times fitted to the speech the VAD found: stretched to its edges, trimmed out
of silence. Pure functions.

Whisper's word times are loose at the edges of an utterance: a reply's first word
often starts late, its last word ends early (on far-field meeting audio, ``I am.``
ends 0.3 s before the speaker stops). The VAD's speech regions are better there,
so the first and last word of each region reach its edges (padded), by at most a
bounded stretch, without overlapping a neighbouring word. Words in the middle of a
region and regions without words are left alone: a segment never covers audio
Whisper gave no word for, beyond the edges of speech it did hear.

The other way round, a word's time can reach far into silence (AMI trn02's "I" began
1.3 s before the voice did; a lone "So" spread over 3.6 s), and a subtitle or a
speaker's turn then starts too early. :func:`trim_to_voice` cuts each word to the
frames in it that the VAD scored as voice, with a margin. Times in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from voice.stt.base import SAMPLE_RATE, Word
from voice.vad.base import FrameProbabilities

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


def trim_to_voice(
    words: Sequence[Word], speech: FrameProbabilities, *, floor: float, pad_s: float
) -> list[Word]:
    """``words`` with each start moved up to ``pad_s`` before the first frame inside the
    word that ``speech`` scores at least ``floor``, and each end back to ``pad_s`` after
    the last such frame; a word with no such frame (a quiet word Whisper heard where the
    VAD did not) is left as it is. Words only shrink, so their order is kept."""
    frame_s = speech.frame_samples / SAMPLE_RATE
    voiced = np.asarray(speech.values) >= floor
    out: list[Word] = []
    for word in words:
        first = max(0, int(word.start / frame_s))
        inside = np.flatnonzero(voiced[first : max(first + 1, int(np.ceil(word.end / frame_s)))])
        if len(inside) == 0:
            out.append(word)
            continue
        start = max(word.start, (first + inside[0]) * frame_s - pad_s)
        end = min(word.end, (first + inside[-1] + 1) * frame_s + pad_s)
        out.append(replace(word, start=start, end=max(end, start + 0.02)))
    return out
