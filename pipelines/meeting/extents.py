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
frames in it that the VAD scored as voice, with a margin.

Whisper can also misplace a whole remark: on a far, quiet voice over room noise its
word times follow the noise. :func:`place_on_turns` moves a run of words that lies on
no speech the diarizer heard onto the wordless speech it heard right beside them (AMI
trn01's "Yeah, she just got a last time." came at 16.4-18.8 s; the voice, which Silero
scores 0.02, is at 18.7-19.7 s). And a word can span a whole pause, voice on both
sides of it: :func:`cut_at_silences` keeps the side with more voice once the diarizer's
turns are known (they hear far voices Silero misses). Times in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from voice.diarize.base import SpeakerTurn
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


def hull(spans: Sequence[Span], join_s: float) -> list[Span]:
    """Sorted ``spans`` merged where they overlap or lie within ``join_s`` of each other."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= join_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _word_runs(words: Sequence[Word], gap_s: float) -> list[list[Word]]:
    """Time-ordered ``words`` cut wherever a pause is longer than ``gap_s``."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and word.start - runs[-1][-1].end <= gap_s:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def place_on_turns(
    words: Sequence[Word],
    turns: Sequence[SpeakerTurn],
    *,
    reach_s: float = 1.0,
    join_s: float = 0.3,
    run_gap_s: float = 0.5,
) -> list[Word]:
    """``words`` (time-ordered), with each run of them (pauses up to ``run_gap_s``) that
    overlaps no diarization turn moved onto the nearest stretch of turns (turns
    ``join_s`` apart or closer, any speaker) that no word overlaps, that begins or ends
    within ``reach_s`` of the run and that does not pass the neighbouring runs: the run's
    times are scaled into that stretch, keeping the words' order and relative lengths.
    Runs that touch a turn, or have no such stretch beside them, are left as they are.
    Without turns nothing moves."""
    if not turns or not words:
        return list(words)
    stretches = hull([(t.start, t.end) for t in turns], join_s)
    runs = _word_runs(words, run_gap_s)
    spans = [(run[0].start, run[-1].end) for run in runs]

    def wordless(start: float, end: float) -> bool:
        return not any(a < end and b > start for a, b in spans)

    taken: set[Span] = set()
    out: list[Word] = []
    for k, (run, (start, end)) in enumerate(zip(runs, spans, strict=True)):
        if any(a < end and b > start for a, b in stretches):
            out.extend(run)
            continue
        floor = spans[k - 1][1] if k else float("-inf")  # never past a neighbouring run
        ceiling = spans[k + 1][0] if k + 1 < len(spans) else float("inf")
        beside = [
            (a, b)
            for a, b in stretches
            if (
                (0.0 <= a - end <= reach_s and b <= ceiling)
                or (0.0 <= start - b <= reach_s and a >= floor)
            )
            and wordless(a, b)
            and (a, b) not in taken
        ]
        if not beside:
            out.extend(run)
            continue
        a, b = min(beside, key=lambda s: min(abs(s[0] - end), abs(start - s[1])))
        taken.add((a, b))
        scale = (b - a) / max(end - start, 1e-3)
        out.extend(
            replace(w, start=a + (w.start - start) * scale, end=a + (w.end - start) * scale)
            for w in run
        )
    return out


def _longest_false_run(flags: np.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of the longest run of False in ``flags`` ((0, 0) when none)."""
    padded = np.concatenate(([True], flags.astype(bool), [True]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]  # falls to False, rises back to True
    if len(starts) == 0:
        return 0, 0
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k])


def cut_at_silences(
    words: Sequence[Word],
    speech: FrameProbabilities,
    turns: Sequence[SpeakerTurn],
    *,
    floor: float,
    min_silence_s: float,
    pad_s: float,
) -> list[Word]:
    """``words`` with each word that spans a silence of at least ``min_silence_s`` (frames
    ``speech`` scores under ``floor`` and no turn covers) with voice on both sides of it
    cut to the side that holds more voice, keeping ``pad_s`` of the silence (silence at a
    word's edge is :func:`trim_to_voice`'s; a word with no voice at all is left alone).
    Words only shrink (AMI trn04's "So" spread over 23.5-27.2 s; its voice is after the
    pause)."""
    frame_s = speech.frame_samples / SAMPLE_RATE
    voiced = np.asarray(speech.values) >= floor
    for turn in turns:
        voiced[int(turn.start / frame_s) : int(np.ceil(turn.end / frame_s))] = True
    need = int(np.ceil(min_silence_s / frame_s - 1e-9))
    out: list[Word] = []
    for word in words:
        first = max(0, int(word.start / frame_s))
        inside = voiced[first : max(first + 1, int(np.ceil(word.end / frame_s)))]
        lo, hi = _longest_false_run(inside)
        if hi - lo < need or lo == 0 or hi == len(inside):  # voice on both sides only
            out.append(word)
        elif inside[hi:].sum() >= inside[:lo].sum():
            out.append(replace(word, start=max(word.start, (first + hi) * frame_s - pad_s)))
        else:
            out.append(replace(word, end=min(word.end, (first + lo) * frame_s + pad_s)))
    return out
