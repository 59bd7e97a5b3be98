"""Words said while two speakers' turns overlap go to the voice that says them.

Whisper transcribes one voice of an overlap, and the diarizer's turns only say that
two people spoke there; :func:`~pipelines.meeting.align.assign_speakers` then keeps
the previous word's speaker. Here each run of such words lasting at least
:data:`MIN_RUN_S` is embedded and compared with each candidate speaker's voice print,
embedded from the parts of their turns no one else speaks in; a clear winner
(:data:`MIN_MARGIN` in cosine similarity) takes the run (alignment's smoothing may
still move a word or two at its edges to a better boundary). On AMI trn00 "Is there much
more in it than he said yesterday?" over a 2.5 s overlap went to the speaker who had
been talking; its voice matches the other one (0.70 against 0.44).

:func:`overlapped_runs` and :func:`exclusive_spans` are pure; :func:`voice_labels`
embeds (blocking, tens of ms per run and per speaker on a CPU core): call it from a
worker thread. Times in seconds, audio 16 kHz mono float32.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from pipelines.meeting.turn_index import TurnIndex
from pipelines.meeting.windows import Clip, unheard
from voice.diarize.base import SpeakerEmbedder, SpeakerTurn
from voice.stt.base import SAMPLE_RATE, Word

Span = tuple[float, float]

MIN_RUN_S = 1.0
"""Shorter runs are too little voice to tell two speakers apart."""
MIN_MARGIN = 0.1
"""The best speaker's similarity must beat the next one's by this much."""
MIN_PRINT_S = 0.8
"""A speaker with less speech of their own than this gets no voice print (and no run)."""
MAX_PRINT_S = 30.0
"""Speech (s) of a speaker's own that their voice print is embedded from, at most."""
MIN_PIECE_S = 0.3
"""Pieces of a speaker's own speech shorter than this are left out of the print."""


def exclusive_spans(
    turns: Sequence[SpeakerTurn], speaker: str, min_s: float = 1e-6
) -> list[Span]:
    """The parts of ``speaker``'s turns that no other speaker's turn overlaps, at least
    ``min_s`` long, in order."""
    own = sorted((t.start, t.end) for t in turns if t.speaker == speaker)
    others = sorted((t.start, t.end) for t in turns if t.speaker != speaker)
    return unheard(own, others, min_s)


def overlapped_runs(
    words: Sequence[Word], turns: Sequence[SpeakerTurn], min_run_s: float = MIN_RUN_S
) -> list[tuple[int, int, frozenset[str]]]:
    """``(first, stop, speakers)``: each run ``words[first:stop]`` (time-ordered) of words
    that two or more speakers' turns overlap, lasting at least ``min_run_s``, with the
    speakers whose turns overlap the run."""
    index = TurnIndex(turns)
    shared = [len(index.overlaps(w.start, max(w.end, w.start + 1e-3))) >= 2 for w in words]
    runs: list[tuple[int, int, frozenset[str]]] = []
    for is_shared, group in itertools.groupby(range(len(words)), key=shared.__getitem__):
        indices = list(group)
        start, end = words[indices[0]].start, words[indices[-1]].end
        if is_shared and end - start >= min_run_s:
            runs.append((indices[0], indices[-1] + 1, frozenset(index.overlaps(start, end))))
    return runs


def _voice_print(
    samples: np.ndarray, turns: Sequence[SpeakerTurn], speaker: str, embedder: SpeakerEmbedder
) -> np.ndarray | None:
    pieces: list[Span] = []
    total = 0.0
    for start, end in exclusive_spans(turns, speaker, MIN_PIECE_S):
        if total >= MAX_PRINT_S:
            break
        end = min(end, start + MAX_PRINT_S - total)
        pieces.append((start, end))
        total += end - start
    if total < MIN_PRINT_S:
        return None
    return embedder.embed(Clip(tuple(pieces)).samples(samples, SAMPLE_RATE))


def voice_labels(
    words: Sequence[Word],
    turns: Sequence[SpeakerTurn],
    samples: np.ndarray,
    embedder: SpeakerEmbedder,
    *,
    min_run_s: float = MIN_RUN_S,
    min_margin: float = MIN_MARGIN,
) -> dict[int, str]:
    """Speaker of each word (by index into the time-ordered ``words``) of an overlapped
    run whose voice clearly matches one of the speakers overlapping it. Blocking."""
    runs = overlapped_runs(words, turns, min_run_s)
    if not runs:
        return {}
    prints: dict[str, np.ndarray | None] = {}
    out: dict[int, str] = {}
    for first, stop, speakers in runs:
        for speaker in speakers - prints.keys():
            prints[speaker] = _voice_print(samples, turns, speaker, embedder)
        known = {s: p for s in speakers if (p := prints[s]) is not None}
        if len(known) < 2:
            continue
        span = (max(0.0, words[first].start), words[stop - 1].end)
        clip = Clip((span,)).samples(samples, SAMPLE_RATE)
        if len(clip) < max(min_run_s / 2, 0.01) * SAMPLE_RATE:  # words past the recording's end
            continue
        voice = embedder.embed(clip)
        ranked = sorted(((float(voice @ p), s) for s, p in known.items()), reverse=True)
        if ranked[0][0] - ranked[1][0] >= min_margin:
            out.update(dict.fromkeys(range(first, stop), ranked[0][1]))
    return out
