"""Words to speakers: who said each recognised word, then speaker-labelled segments.

Pure functions on time-stamped words (seconds from the recording's start) and
diarization turns; no models, no I/O. :func:`align` runs the steps in order:

1. :func:`assign_speakers`: each word goes to the speaker whose turns overlap it
   most (ties: the previous word's speaker), or to the nearest turn when none
   overlaps. A speaker change inside a word therefore never splits the word: the
   break snaps to a word boundary. Labels the caller fixed (by voice, where turns
   overlap: :mod:`pipelines.meeting.overlap_voices`) replace these.
2. :func:`smooth_islands`: a run of at most ``island_words`` words inside
   another speaker's run (same speaker on both sides) takes that speaker, unless
   it stands apart as its own utterance (a pause of ``island_pause_s`` on both
   sides, as a real "yeah" between someone's sentences has).
3. :func:`snap_changes`: each remaining speaker change may move by up to
   ``snap_words`` words to a better boundary (a sentence end, a pause), since
   Whisper's word times are loose by a few hundred ms around a change.
4. :func:`group_segments`: consecutive words of one speaker become a segment,
   split at pauses longer than ``max_pause_s`` or when longer than ``max_segment_s``
   (preferably after a sentence end).
5. :func:`crosstalk_segments`: a voice the diarizer heard only over another speaker's
   words (none of its own words within that turn: Whisper followed the other voice)
   becomes a segment with empty text, so the transcript still says who spoke when.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from pipelines.meeting.document import TranscriptSegment
from pipelines.meeting.extents import hull
from pipelines.meeting.turn_index import TurnIndex
from voice.diarize.base import SpeakerTurn, speaker_label
from voice.stt.base import Word

DEFAULT_SPEAKER = speaker_label(0)
"""Label given to every word when diarization found no turns at all."""
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_ATTACHED = re.compile(r"^(?:-\w|['’](?:s|t|re|ve|ll|d|m)\b|[.,!?;:%)\]…])")


@dataclass(frozen=True, slots=True)
class AlignOptions:
    """Tuning of :func:`align`; times in seconds, counts in words."""

    max_pause_s: float = 1.0
    max_segment_s: float = 30.0
    island_words: int = 1
    island_pause_s: float = 0.3
    snap_words: int = 2
    snap_pause_s: float = 0.3
    snap_tolerance_s: float = 0.5
    """A word moves to a speaker only if one of that speaker's turns is this close."""
    crosstalk_min_s: float = 0.5
    """Shortest voice over another speaker's words that becomes a wordless segment."""
    crosstalk_join_s: float = 0.5
    """One speaker's turns this close together count as one when looking for crosstalk."""


def join_words(texts: Iterable[str]) -> str:
    """Words joined by spaces, except before a piece that continues the previous word
    (``-hearted``, ``'s``) or is bare punctuation."""
    out = ""
    for text in texts:
        if out and not _ATTACHED.match(text):
            out += " "
        out += text
    return out


def ends_sentence(text: str) -> bool:
    """Whether a word ends with sentence-final punctuation (``.``, ``?``, ``!``...)."""
    return bool(_SENTENCE_END.search(text))


def _span(word: Word) -> tuple[float, float]:
    return word.start, max(word.end, word.start + 1e-3)


def assign_speakers(words: Sequence[Word], turns: Sequence[SpeakerTurn]) -> list[str]:
    """One speaker label per word (see the module docstring, step 1)."""
    if not turns:
        return [DEFAULT_SPEAKER] * len(words)
    index = TurnIndex(turns)
    labels: list[str] = []
    for word in words:
        start, end = _span(word)
        cover = index.overlaps(start, end)
        if cover:
            top = max(cover.values())
            tied = [s for s, v in cover.items() if v >= top - 1e-9]
            labels.append(labels[-1] if labels and labels[-1] in tied else min(tied))
        else:
            labels.append(index.nearest(start, end))
    return labels


def _runs(labels: Sequence[str]) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of equal consecutive labels."""
    runs: list[tuple[int, int]] = []
    for i, label in enumerate(labels):
        if runs and labels[runs[-1][0]] == label:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _gap(words: Sequence[Word], i: int) -> float:
    """Pause (s) between word ``i - 1`` and word ``i``."""
    return words[i].start - words[i - 1].end


def smooth_islands(
    words: Sequence[Word], labels: Sequence[str], max_words: int = 1, pause_s: float = 0.3
) -> list[str]:
    """Relabel short runs inside another speaker's run (module docstring, step 2)."""
    out = list(labels)
    runs = _runs(out)
    for k in range(1, len(runs) - 1):
        start, stop = runs[k]
        left, right = out[runs[k - 1][0]], out[runs[k + 1][0]]
        if stop - start > max_words or left != right:
            continue
        apart = _gap(words, start) >= pause_s and _gap(words, stop) >= pause_s
        if not apart:
            out[start:stop] = [left] * (stop - start)
    return out


def _boundary_score(words: Sequence[Word], i: int, pause_s: float) -> int:
    """How good a speaker change between words ``i - 1`` and ``i`` looks (0-3)."""
    return 2 * ends_sentence(words[i - 1].text) + (_gap(words, i) >= pause_s)


def snap_changes(
    words: Sequence[Word],
    labels: Sequence[str],
    turns: Sequence[SpeakerTurn],
    max_shift: int = 2,
    pause_s: float = 0.3,
    tolerance_s: float = 0.5,
) -> list[str]:
    """Move speaker changes to nearby sentence ends or pauses (module docstring, step 3).

    A change moves only within the two runs it separates (neither is emptied),
    and only if every moved word is within ``tolerance_s`` of a turn of the
    speaker it moves to.
    """
    out = list(labels)
    index = TurnIndex(turns)
    b = 0
    while (b := b + 1) < len(out):
        if out[b] == out[b - 1]:
            continue
        left, right = out[b - 1], out[b]
        best, best_key = b, (_boundary_score(words, b, pause_s), 0)
        for c in range(max(1, b - max_shift), min(len(out) - 1, b + max_shift) + 1):
            moved = range(c, b) if c < b else range(b, c)
            if c == b or any(out[i] != (left if c < b else right) for i in moved):
                continue
            if c < b and (c - 1 < 0 or out[c - 1] != left):
                continue  # would empty the left run
            if c > b and out[c] != right:
                continue  # would empty the right run
            target = right if c < b else left
            if any(
                index.distance(target, *_span(words[i]), tolerance_s) >= tolerance_s for i in moved
            ):
                continue
            key = (_boundary_score(words, c, pause_s), -abs(c - b))
            if key > best_key:
                best, best_key = c, key
        if best < b:
            out[best:b] = [right] * (b - best)
        elif best > b:
            out[b:best] = [left] * (best - b)
            b = best  # a change is moved at most once
    return out


def group_segments(
    words: Sequence[Word],
    labels: Sequence[str],
    max_pause_s: float = 1.0,
    max_segment_s: float = 30.0,
    first_id: int = 0,
) -> list[TranscriptSegment]:
    """Consecutive words of one speaker as segments (module docstring, step 4)."""
    segments: list[TranscriptSegment] = []
    current: list[Word] = []
    speaker = ""

    def close(upto: int) -> None:
        nonlocal current
        part, current = current[:upto], current[upto:]
        if part:
            text = join_words(w.text for w in part)
            segments.append(
                TranscriptSegment(
                    first_id + len(segments),
                    speaker,
                    part[0].start,
                    part[-1].end,
                    text,
                    tuple(part),
                )
            )

    for word, label in zip(words, labels, strict=True):
        if not word.text.strip():
            continue
        if current and (label != speaker or word.start - current[-1].end > max_pause_s):
            close(len(current))
        elif current and word.end - current[0].start > max_segment_s:
            ends = [i for i, w in enumerate(current) if ends_sentence(w.text)]
            close(ends[-1] + 1 if ends and ends[-1] + 1 >= len(current) // 2 else len(current))
        speaker = label
        current.append(word)
    close(len(current))
    return segments


def crosstalk_segments(
    segments: Sequence[TranscriptSegment],
    turns: Sequence[SpeakerTurn],
    min_s: float = 0.5,
    join_s: float = 0.5,
) -> list[TranscriptSegment]:
    """``segments`` plus one wordless segment for each stretch of at least ``min_s``
    (s) where a diarizer turn (its speaker's turns ``join_s`` apart joined) overlaps
    another speaker's segment while no segment of its own speaker touches the turn.
    A turn holding any of its speaker's words adds nothing: there the words already
    say who spoke. Times in seconds; ids renumbered in time order."""
    added: list[TranscriptSegment] = []
    for speaker in sorted({t.speaker for t in turns}):
        for first, last in hull([(t.start, t.end) for t in turns if t.speaker == speaker], join_s):
            if any(s.speaker == speaker and s.start < last and s.end > first for s in segments):
                continue
            for seg in segments:
                start, end = max(first, seg.start), min(last, seg.end)
                if end - start >= min_s:
                    added.append(TranscriptSegment(0, speaker, start, end, ""))
    if not added:
        return list(segments)
    ordered = sorted([*segments, *added], key=lambda s: (s.start, s.end))
    return [replace(s, id=i) for i, s in enumerate(ordered)]


def relabel_by_appearance(segments: Sequence[TranscriptSegment]) -> list[TranscriptSegment]:
    """Speakers renamed ``SPEAKER_00``, ``SPEAKER_01``... in order of first segment."""
    names: dict[str, str] = {}
    out = []
    for seg in segments:
        label = names.setdefault(seg.speaker, speaker_label(len(names)))
        out.append(TranscriptSegment(seg.id, label, seg.start, seg.end, seg.text, seg.words))
    return out


def align(
    words: Sequence[Word],
    turns: Sequence[SpeakerTurn],
    options: AlignOptions | None = None,
    fixed: Mapping[int, str] | None = None,
) -> list[TranscriptSegment]:
    """Speaker-labelled segments from ``words`` and diarization ``turns``.

    ``fixed``: speakers of some words, by index into ``words`` ordered by (start, end),
    taken instead of step 1's. Labels are renumbered by first appearance (see
    :func:`relabel_by_appearance`).
    """
    opts = options or AlignOptions()
    ordered = sorted(words, key=lambda w: (w.start, w.end))
    labels = assign_speakers(ordered, turns)
    for i, label in (fixed or {}).items():
        labels[i] = label
    labels = smooth_islands(ordered, labels, opts.island_words, opts.island_pause_s)
    if turns:
        labels = snap_changes(
            ordered, labels, turns, opts.snap_words, opts.snap_pause_s, opts.snap_tolerance_s
        )
    segments = group_segments(ordered, labels, opts.max_pause_s, opts.max_segment_s)
    segments = crosstalk_segments(segments, turns, opts.crosstalk_min_s, opts.crosstalk_join_s)
    return relabel_by_appearance(segments)
