"""Overall progress of a meeting run: stage weights and the callback plumbing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

Progress = Callable[[str, float], None]
"""``(stage, overall fraction 0-1)``; called on the event loop's thread, never
decreasing, ending with ``("done", 1.0)``."""

STAGE_WEIGHTS: dict[str, float] = {
    "decode": 0.06,
    "transcribe": 0.56,
    "diarize": 0.24,
    "align": 0.02,
    "summarize": 0.12,
}


class ProgressPlan:
    """Maps ``(stage, fraction of that stage)`` to the overall fraction. Pure."""

    def __init__(self, stages: tuple[str, ...]) -> None:
        total = sum(STAGE_WEIGHTS[s] for s in stages)
        self.offsets: dict[str, float] = {}
        self.shares: dict[str, float] = {}
        done = 0.0
        for stage in stages:
            self.offsets[stage], self.shares[stage] = done, STAGE_WEIGHTS[stage] / total
            done += self.shares[stage]

    def overall(self, stage: str, fraction: float) -> float:
        clamped = min(1.0, max(0.0, fraction))
        return min(1.0, self.offsets[stage] + self.shares[stage] * clamped)


class Reporter:
    """Forwards progress to ``progress`` on the event loop's thread and never lets the
    overall fraction go backwards. Build it on the loop's thread; call it from any
    thread (calls from the loop's own thread are delivered at once, others are
    scheduled onto the loop)."""

    def __init__(
        self, progress: Progress | None, plan: ProgressPlan, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.progress, self.plan, self.loop = progress, plan, loop
        self.loop_thread = threading.get_ident()
        self.last = 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        if self.progress is None:
            return
        value = self.plan.overall(stage, fraction) if stage in self.plan.offsets else fraction
        if threading.get_ident() == self.loop_thread:
            self._emit(stage, value)
        else:
            self.loop.call_soon_threadsafe(self._emit, stage, value)

    def _emit(self, stage: str, value: float) -> None:
        if self.progress is not None and value >= self.last:
            self.last = value
            self.progress(stage, value)
