"""How a recording's speech is cut into Whisper clips. Pure functions.

Whisper's encoder always sees 30 s: a clip of 5 s costs as much as one of 30 s.
So the speech the VAD found is padded, joined across short pauses into
*pieces* (a pause shorter than ``join_gap_s`` stays inside a piece, with the
quiet words it may hold), and consecutive pieces are packed into *clips* of
at most ``max_s`` seconds: a clip is its pieces' audio laid end to end, the
long silences between them left out. Each word Whisper finds in a clip is
moved back onto the recording's time line with :meth:`Clip.to_recording`.
A clip with room to spare is then widened into the audio around its pieces
(:func:`widen_clips`). Pieces never overlap (no word is transcribed twice).
Times in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Span = tuple[float, float]
CutPicker = Callable[[float, float], float]
"""``(earliest, latest) -> time`` (s) at which to cut speech that has no pause."""

CLIP_S = 29.5
"""Longest clip (s): under Whisper's 30 s window, with room for its feature frames."""


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


@dataclass(frozen=True, slots=True)
class Clip:
    """Pieces ``(start, end)`` of the recording (s, in order, not overlapping) that
    Whisper hears as one clip, laid end to end."""

    pieces: tuple[Span, ...]

    @property
    def duration(self) -> float:
        """Length of the clip (s): the sum of its pieces."""
        return sum(end - start for start, end in self.pieces)

    def to_recording(self, t: float) -> float:
        """Clip time ``t`` (s) as recording time; clamped into the clip."""
        offset = 0.0
        for start, end in self.pieces:
            if t <= offset + (end - start):
                return start + max(0.0, t - offset)
            offset += end - start
        return self.pieces[-1][1] if self.pieces else 0.0

    def piece_end(self, t: float) -> float:
        """End (s, recording time) of the piece holding recording time ``t``."""
        for _, end in self.pieces:
            if t <= end:
                return end
        return self.pieces[-1][1] if self.pieces else t

    def samples(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """The clip's audio: its pieces of ``audio`` (``rate`` Hz) joined (a copy)."""
        parts = [audio[round(s * rate) : round(e * rate)] for s, e in self.pieces]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=audio.dtype)


def speech_pieces(
    regions: Sequence[Span],
    duration_s: float,
    *,
    pad_s: float = 0.4,
    join_gap_s: float = 2.0,
    max_s: float = CLIP_S,
    pick_cut: CutPicker = _even_cut,
) -> list[Span]:
    """Speech regions padded by ``pad_s`` (within ``[0, duration_s]``), joined where
    the pause between them is under ``join_gap_s``, and cut (by ``pick_cut``, in the
    last third) where longer than ``max_s``."""
    merged = [(start, end) for start, end, _ in _runs(regions, duration_s, pad_s, join_gap_s)]
    return split_long(merged, max_s, max_s * 2 / 3, pick_cut)


def _runs(
    regions: Sequence[Span], duration_s: float, pad_s: float, join_gap_s: float
) -> list[tuple[float, float, list[float]]]:
    """Regions padded by ``pad_s`` (within ``[0, duration_s]``) and joined where the
    pause between them is under ``join_gap_s``: ``(start, end, pauses)`` per run, with
    the middle of each pause between two of its regions."""
    runs: list[tuple[float, float, list[float]]] = []
    last_end = 0.0
    for start, end in sorted(regions):
        lo, hi = max(0.0, start - pad_s), min(duration_s, end + pad_s)
        if hi <= lo:
            continue
        if runs and lo - runs[-1][1] < join_gap_s:
            run_start, run_end, pauses = runs[-1]
            if start > last_end:
                pauses.append((last_end + start) / 2)
            runs[-1] = (run_start, max(run_end, hi), pauses)
        else:
            runs.append((lo, hi, []))
        last_end = max(last_end, end)
    return runs


def pack_clips(pieces: Sequence[Span], max_s: float = CLIP_S) -> list[Clip]:
    """Consecutive ``pieces`` (each at most ``max_s``) packed into clips of at most
    ``max_s`` seconds, in order."""
    if max_s <= 0:
        raise ValueError("max_s must be > 0")
    clips: list[list[Span]] = []
    length = 0.0
    for start, end in pieces:
        if end - start > max_s + 1e-6:
            raise ValueError(f"piece {start:.2f}-{end:.2f} s is longer than {max_s} s")
        if clips and length + (end - start) <= max_s + 1e-6:
            clips[-1].append((start, end))
            length += end - start
        else:
            clips.append([(start, end)])
            length = end - start
    return [Clip(tuple(c)) for c in clips]


def fill_clips(
    regions: Sequence[Span],
    duration_s: float,
    *,
    pad_s: float = 0.4,
    join_gap_s: float = 2.0,
    max_s: float = CLIP_S,
    pick_cut: CutPicker = _even_cut,
) -> list[Clip]:
    """Speech ``regions`` packed into clips filled up to ``max_s`` seconds.

    Regions are padded and joined into runs as :func:`speech_pieces` does. A run
    that does not fit the room left in the current clip is cut at a pause inside
    it (the middle of the latest pause between two of its regions that fits), so
    its first part fills the clip and the rest starts the next one; a run with no
    such pause goes to the next clip whole. A run that cannot fit even an empty
    clip is cut at its latest pause in the clip's last third, or where
    ``pick_cut`` says there. Every encoder pass costs 30 s of audio, so full
    clips mean fewer passes: packing whole pieces (:func:`pack_clips`) left long
    meetings' clips about 70 % full.
    """
    if max_s <= 0:
        raise ValueError("max_s must be > 0")
    clips: list[tuple[Span, ...]] = []
    current: list[Span] = []
    room = max_s
    for start, end, cuts in _runs(regions, duration_s, pad_s, join_gap_s):
        while end - start > room + 1e-6:
            earliest = start if current else start + room * 2 / 3
            fitting = [c for c in cuts if earliest < c <= start + room]
            if fitting:
                cut = fitting[-1]
            elif current:  # the run waits for the next clip
                clips.append(tuple(current))
                current, room = [], max_s
                continue
            else:
                cut = min(max(pick_cut(start + room * 2 / 3, start + room), start + 1.0),
                          start + room)
            current.append((start, cut))
            clips.append(tuple(current))
            current, room, start = [], max_s, cut
        if end > start:
            current.append((start, end))
            room -= end - start
    if current:
        clips.append(tuple(current))
    return [Clip(c) for c in clips]


def widen_clips(clips: Sequence[Clip], duration_s: float, max_s: float = CLIP_S) -> list[Clip]:
    """``clips`` grown into the audio around their pieces, each up to ``max_s``.

    A clip shorter than ``max_s`` costs a whole encoder pass all the same, so its
    spare room is shared equally among its pieces' two edges. An edge grows through
    a gap up to the next piece of its own clip (the two are joined), only halfway
    to a piece of another clip (pieces never overlap), and not past
    ``[0, duration_s]``. Whisper then hears the quiet words the VAD scored too low
    beside the speech it found, in the context it was trained on (30 s windows)."""
    pieces = sorted((piece, n) for n, clip in enumerate(clips) for piece in clip.pieces)
    reach: dict[Span, Span] = {}  # piece -> how far its edges may go
    for k, ((start, end), owner) in enumerate(pieces):
        floor, ceiling = 0.0, duration_s
        if k > 0:
            (_, prev_end), prev_owner = pieces[k - 1]
            floor = prev_end if prev_owner == owner else (prev_end + start) / 2
        if k + 1 < len(pieces):
            (next_start, _), next_owner = pieces[k + 1]
            ceiling = next_start if next_owner == owner else (end + next_start) / 2
        reach[(start, end)] = (floor, ceiling)
    widened: list[Clip] = []
    for clip in clips:
        share = max(0.0, max_s - clip.duration) / (2 * max(1, len(clip.pieces)))
        grown: list[Span] = []
        for start, end in clip.pieces:
            floor, ceiling = reach[(start, end)]
            piece = (max(floor, start - share), min(ceiling, end + share))
            if grown and piece[0] <= grown[-1][1] + 1e-9:
                grown[-1] = (grown[-1][0], max(grown[-1][1], piece[1]))
            else:
                grown.append(piece)
        widened.append(Clip(tuple(grown)))
    return widened


def unheard(regions: Sequence[Span], heard: Sequence[Span], min_s: float = 0.5) -> list[Span]:
    """The parts of speech ``regions`` that no ``heard`` span (e.g. a word) touches,
    where at least ``min_s`` long: speech a first decoding skipped. Both sorted by start."""
    out: list[Span] = []
    i = 0
    for start, end in regions:
        while i < len(heard) and heard[i][1] <= start:
            i += 1
        cursor, j = start, i
        while j < len(heard) and heard[j][0] < end:
            if heard[j][0] - cursor >= min_s:
                out.append((cursor, heard[j][0]))
            cursor = max(cursor, heard[j][1])
            j += 1
        if end - cursor >= min_s:
            out.append((cursor, end))
    return out


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
