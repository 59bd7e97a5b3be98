"""Speaker turns indexed for the queries word alignment makes. Pure; no I/O.

Times are seconds. Queries cost O(log n + k) for k turns near the asked span
(turns are sorted by start; the longest turn bounds how far back to look).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from voice.diarize import SpeakerTurn


class TurnIndex:
    """Turns sorted by start, with what overlap and nearest-turn queries need."""

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.turns = sorted(turns, key=lambda t: (t.start, t.end))
        self.starts = [t.start for t in self.turns]
        self.longest = max((t.duration for t in self.turns), default=0.0)
        self.latest_end: list[int] = []  # index of the latest-ending turn among turns[: i + 1]
        for i, turn in enumerate(self.turns):
            prev = self.latest_end[-1] if self.latest_end else i
            self.latest_end.append(i if turn.end >= self.turns[prev].end else prev)

    def overlaps(self, start: float, end: float) -> dict[str, float]:
        """Seconds of [start, end] covered by each speaker's turns."""
        out: dict[str, float] = {}
        j = bisect.bisect_left(self.starts, end) - 1
        while j >= 0 and self.turns[j].start >= start - self.longest:
            turn = self.turns[j]
            amount = min(end, turn.end) - max(start, turn.start)
            if amount > 0:
                out[turn.speaker] = out.get(turn.speaker, 0.0) + amount
            j -= 1
        return out

    def nearest(self, start: float, end: float) -> str:
        """Speaker of the turn closest in time to [start, end] (earlier one on a tie)."""
        hi = bisect.bisect_left(self.starts, end)
        best, best_gap = "", float("inf")
        if hi > 0:
            before = self.turns[self.latest_end[hi - 1]]
            best, best_gap = before.speaker, max(0.0, start - before.end)
        if hi < len(self.turns) and self.turns[hi].start - end < best_gap:
            best = self.turns[hi].speaker
        return best

    def distance(self, speaker: str, start: float, end: float, limit: float) -> float:
        """Gap (s) between [start, end] and the closest turn of ``speaker``, capped at ``limit``."""
        best = limit
        j = bisect.bisect_left(self.starts, end + limit) - 1
        while j >= 0 and self.turns[j].start >= start - self.longest - limit:
            turn = self.turns[j]
            if turn.speaker == speaker:
                best = min(best, max(0.0, turn.start - end, start - turn.end))
            j -= 1
        return best
