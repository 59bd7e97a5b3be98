"""A fair queue in front of an LLM server that can run only a few requests at once.

The embedded llama.cpp server generates a few replies at once (``llama-server``'s
slots; llama-cpp-python's server only one). Sent straight to it, more concurrent
requests either cut each other off (llama-cpp-python's ``interrupt_requests``) or
wait in arrival order, where one session's speculative request, tool step and next
turn can all queue ahead of another session's first. :class:`FairGate`
admits ``slots`` requests at once and hands each freed slot to the most urgent
priority level, round-robin between the keys (sessions) waiting there, FIFO
within a key. Pure asyncio, no I/O; use from one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable

REALTIME = 0
"""Priority of a live conversation's requests (served first)."""
BACKGROUND = 1
"""Priority of meeting summaries and other batch work."""


class FairGate:
    """At most ``slots`` holders at once (0 = unlimited: the gate never waits)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.running = 0
        self._levels: dict[int, OrderedDict[Hashable, deque[asyncio.Future[None]]]] = {}

    @property
    def waiting(self) -> int:
        """Requests queued now (not yet holding a slot)."""
        return sum(len(q) for level in self._levels.values() for q in level.values())

    @contextlib.asynccontextmanager
    async def slot(self, key: Hashable, priority: int = REALTIME) -> AsyncIterator[None]:
        """Hold one slot for the block. Waiting is safe to cancel (the place in the
        queue is given up); the slot is released when the block exits, however it exits."""
        await self.acquire(key, priority)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, key: Hashable, priority: int = REALTIME) -> None:
        """Wait for a slot; pair with :meth:`release`. Safe to cancel (the place in the
        queue is given up, or a slot granted at that moment passed on)."""
        if self.slots <= 0 or (self.running < self.slots and not self.waiting):
            self.running += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._levels.setdefault(priority, OrderedDict()).setdefault(key, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            else:
                self._forget(priority, key, granted)
            raise

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self.running -= 1
        self._grant()

    def _grant(self) -> None:
        while (self.slots <= 0 or self.running < self.slots) and self._levels:
            priority = min(self._levels)
            level = self._levels[priority]
            key, queue = next(iter(level.items()))
            granted = queue.popleft()
            if queue:
                level.move_to_end(key)  # the next slot goes to another session first
            else:
                del level[key]
            if not level:
                del self._levels[priority]
            if not granted.done():
                granted.set_result(None)
                self.running += 1

    def _forget(self, priority: int, key: Hashable, granted: asyncio.Future[None]) -> None:
        level = self._levels.get(priority)
        queue = level.get(key) if level is not None else None
        if level is None or queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(granted)
        if not queue:
            del level[key]
        if not level:
            del self._levels[priority]
