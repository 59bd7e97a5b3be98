"""Dedicated worker threads per model, so slow inference never starves quick work.

``asyncio.to_thread`` shares one small pool (cores + 4 threads) with everything
else in the process. When several sessions each wait for Whisper, that pool
fills with threads blocked on the model, and the quick calls behind them (a
VAD frame, a resample) wait too: input backs up and WebSocket keep-alives
time out. :func:`run_on` gives each model object its own pool, sized to the
calls it can really run at once.

An owner given a CPU share with :func:`assign` also takes that many slots of the
process budget (:data:`voice.cpu_budget.process_slots`) for each call, at its
priority, so the busy inference threads of all models stay within the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from voice.cpu_budget import REALTIME, process_slots

T = TypeVar("T")

_pools: weakref.WeakKeyDictionary[Any, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_queued: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
"""Calls submitted to each owner's pool and not finished yet."""
_shares: weakref.WeakKeyDictionary[Any, tuple[int, int]] = weakref.WeakKeyDictionary()
"""Per owner: (threads each call runs, priority) in the process CPU budget."""
_lock = threading.Lock()


def assign(owner: Any, threads: int, priority: int = REALTIME) -> None:
    """Calls on ``owner`` run ``threads`` threads and wait for that many free slots of
    the process CPU budget, at ``priority`` (lower first). Unassigned owners are not gated."""
    with _lock, contextlib.suppress(TypeError):  # not weakly referable: not gated
        _shares[owner] = (max(1, threads), priority)


class Withdrawn(Exception):
    """Raised in place of a call's result: its :class:`Ticket` was withdrawn before it ran."""


class Ticket:
    """A gated call's claim on the cores, which its owner may give up while it still
    waits for them (a final transcription superseded by a later one): it then gets the
    cores only to hand them back at once, raising :class:`Withdrawn` instead of running.
    Thread-safe; a call that already runs is not stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = False
        self._withdrawn = False

    def withdraw(self) -> bool:
        """Give the call up; True when it had not started (it will not run)."""
        with self._lock:
            if not self._started:
                self._withdrawn = True
            return self._withdrawn

    def start(self) -> bool:
        """Called with the cores held: True (and the call runs) unless withdrawn."""
        with self._lock:
            self._started = not self._withdrawn
            return self._started


def _share_of(owner: Any) -> tuple[int, int] | None:
    """``owner``'s (threads, priority) in the CPU budget; None when it is not gated."""
    with _lock:
        try:
            return _shares.get(owner)
        except TypeError:  # an owner that cannot be weakly referenced
            return None


def _gated(owner: Any, fn: Callable[..., T], priority: int | None) -> Callable[..., T]:
    share = _share_of(owner)
    if share is None:
        return fn
    threads, owner_priority = share
    if priority is None:
        priority = owner_priority

    def call(*args: Any, **kwargs: Any) -> T:
        with process_slots.hold(threads, priority):
            return fn(*args, **kwargs)

    return call


def _ticketed(fn: Callable[..., T], ticket: Ticket) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        if not ticket.start():
            raise Withdrawn("withdrawn before it ran")
        return fn(*args, **kwargs)

    return call


def executor_for(owner: Any, workers: int) -> ThreadPoolExecutor:
    """The thread pool of ``owner``, created on first use with ``workers`` threads, one
    more for an owner :func:`assign` gated: a call waiting for the cores holds a pool
    thread, and the spare lets an urgent call (a final while partials wait) reach the
    CPU budget's priority queue instead of waiting behind them in the pool's FIFO."""
    with _lock:
        pool = _pools.get(owner)
        if pool is None:
            spare = 1 if owner in _shares else 0
            pool = ThreadPoolExecutor(
                max_workers=max(1, workers) + spare, thread_name_prefix=type(owner).__name__
            )
            _pools[owner] = pool
            weakref.finalize(owner, pool.shutdown, wait=False)
        return pool


async def run_on(owner: Any, workers: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in ``owner``'s pool. Safe to cancel: the call finishes
    in its thread and the result is dropped."""
    return await run_on_at(None, owner, workers, fn, *args, **kwargs)


async def run_on_at(
    priority: int | None, owner: Any, workers: int, fn: Callable[..., T], *args: Any,
    ticket: Ticket | None = None, **kwargs: Any,
) -> T:
    """:func:`run_on` with this call's ``priority`` in the CPU budget instead of the
    one :func:`assign` gave ``owner`` (None = that one), e.g. a partial transcript
    after the finals of the same model. Safe to cancel, like :func:`run_on`. With a
    ``ticket``, :meth:`Ticket.withdraw` before the call runs makes it raise
    :class:`Withdrawn` without running."""
    run = fn if ticket is None else _ticketed(fn, ticket)
    try:
        pool = executor_for(owner, workers)
    except TypeError:  # an owner that cannot be weakly referenced: the shared pool
        return await asyncio.to_thread(run, *args, **kwargs)
    loop = asyncio.get_running_loop()
    call = _gated(owner, run, priority)
    future = loop.run_in_executor(pool, functools.partial(call, *args, **kwargs))
    with _lock:
        _queued[owner] = _queued.get(owner, 0) + 1

    def finished(_: object) -> None:
        with _lock:
            _queued[owner] = _queued.get(owner, 1) - 1

    future.add_done_callback(finished)
    return await future


def spare_for(owner: Any) -> bool:
    """Could a secondary call on ``owner`` (:meth:`~voice.cpu_budget.CpuSlots.spare`) start
    now without delaying urgent work in the CPU budget? True for an ungated owner."""
    share = _share_of(owner)
    return share is None or process_slots.spare(share[0])


def queued(owner: Any) -> int:
    """Calls submitted to ``owner``'s pool that have not finished (running or waiting)."""
    with _lock:
        try:
            return _queued.get(owner, 0)
        except TypeError:
            return 0
