"""In-memory progress fan-out for jobs: throttled, thread-safe reporting in, subscribers out.

:class:`ProgressPump` is what a running job reports to (``pump(stage, fraction)``,
from the event loop or any worker thread); its :meth:`ProgressPump.run` coroutine
hands the latest value to a sink at most once per interval. :class:`JobEvents`
delivers job snapshots to subscribers (server-sent events), each through a small
queue that drops its oldest entry when full, so a slow reader costs no memory
and always ends up with the newest snapshot (the final state comes last).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pipelines.clock import Clock, MonotonicClock
from pipelines.meeting.store import Job

ProgressSink = Callable[[str, float], Awaitable[None]]
JobWatcher = Callable[[str, Job | None], Any]
"""Called with every snapshot published (any job); must be quick and must not raise."""


class ProgressPump:
    """Keeps the latest ``(stage, fraction)`` a job reported; fraction clamped to 0–1.

    Calling the pump is non-blocking and thread-safe. A report that arrives after
    the loop has closed is dropped.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, clock: Clock | None = None) -> None:
        self._loop = loop
        self._clock = clock or MonotonicClock()
        self._latest: tuple[str, float] | None = None
        self._changed = asyncio.Event()

    def __call__(self, stage: str, fraction: float) -> None:
        value = (str(stage), min(1.0, max(0.0, float(fraction))))
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._set(value)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody to tell
                self._loop.call_soon_threadsafe(self._set, value)

    def _set(self, value: tuple[str, float]) -> None:
        self._latest = value
        self._changed.set()

    async def run(self, sink: ProgressSink, interval_s: float) -> None:
        """Forever: wait for a new report, await ``sink(stage, fraction)``, then pause
        ``interval_s`` seconds (reports in between collapse into the newest).
        Safe to cancel; cancel it once the job ends."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            if self._latest is not None:
                await sink(*self._latest)
            await self._clock.sleep(interval_s)


class JobEvents:
    """Publish/subscribe of job snapshots by job id; ``None`` means the job was deleted."""

    def __init__(self, queue_size: int = 8) -> None:
        self._queue_size = queue_size
        self._subscribers: dict[str, set[asyncio.Queue[Job | None]]] = {}
        self._watchers: list[JobWatcher] = []

    def watch(self, watcher: JobWatcher) -> None:
        """Also hand every published snapshot to ``watcher`` (metrics)."""
        self._watchers.append(watcher)

    def publish(self, job_id: str, job: Job | None) -> None:
        """Deliver to every subscriber of ``job_id`` and to the watchers. Call from the event loop."""
        for watcher in self._watchers:
            watcher(job_id, job)
        for queue in self._subscribers.get(job_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(job)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[Job | None]]:
        """A queue that receives the snapshots published for ``job_id`` while inside."""
        queue: asyncio.Queue[Job | None] = asyncio.Queue(self._queue_size)
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    def subscriber_count(self, job_id: str) -> int:
        return len(self._subscribers.get(job_id, ()))

    def wanted(self, job_id: str) -> bool:
        """Whether a snapshot of ``job_id`` would reach anyone (a subscriber or a watcher)."""
        return bool(self._watchers) or job_id in self._subscribers
