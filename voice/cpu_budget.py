"""One CPU budget for the whole process: how many threads each model gets, and a
process-wide gate that keeps the busy inference threads within the cores.

:func:`plan` sizes CTranslate2 (Whisper), onnxruntime (Piper), torch (speaker
embeddings, diarization) and llama.cpp from the cores the server may use.
:class:`CpuSlots` is the gate: a model call takes as many slots as it runs
threads and waits, in priority order, while the cores are busy (live calls count
only live work, so a long meeting call never holds them up). llama.cpp runs
in its own process and is not gated: while it answers a request its threads are
counted as busy live work (:meth:`CpuSlots.reserve`), and while it is idle the
other models may use every core (a final transcription beside a partial).
Nothing here touches a model; the model modules read the plan.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

FIRST_AUDIO = -1
"""The last step before a reply is heard (the first speech piece of a response): before
every other live call, so that under load turns are finished one by one (each reply
starts once its own work is done) instead of all waiting for all the queued finals."""
REALTIME = 0
"""Live conversation (finals, speech synthesis): served first."""
LIVE_AUX = 1
"""Live but secondary (partial transcripts, speaker embeddings): after
:data:`REALTIME` calls, yet never behind background work (a turn may wait for
its speaker label)."""
BACKGROUND = 2
"""Meeting jobs: only when the budget has room."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    """Threads per model for ``cores`` cores. ``stt_workers`` realtime Whisper calls may
    run at once (a final need not wait for a partial); ``gated_slots`` is what the
    in-process models share: all cores, of which llama.cpp's ``llm_threads`` are taken
    while it answers. ``llm_batch_threads`` evaluate a prompt (before the first token,
    when the turn's other stages wait for it)."""

    cores: int
    llm_threads: int
    stt_threads: int
    stt_workers: int
    tts_threads: int
    torch_threads: int
    vad_threads: int = 1
    llm_batch_threads: int = 0

    @property
    def gated_slots(self) -> int:
        return self.cores


def plan(
    cores: int, *, llm_threads: int = 0, stt_threads: int = 0, local_llm: bool = True
) -> ThreadPlan:
    """Threads per model for ``cores`` cores; ``llm_threads``/``stt_threads`` > 0 are
    kept as given (explicit settings), 0 = sized here. Without a ``local_llm`` (a
    hosted endpoint) no core is set aside for llama.cpp.

    On small machines every model gets one thread: a second CTranslate2 or
    onnxruntime thread barely speeds a short utterance up while it takes a core
    from the other stages of the same turn (or other sessions).
    """
    cores = max(1, cores)
    llm = (llm_threads or max(1, cores // 4)) if local_llm else 0
    rest = max(1, cores - llm)
    return ThreadPlan(
        cores=cores,
        llm_threads=llm,
        llm_batch_threads=min(cores, max(llm, 2 * llm)),
        stt_threads=stt_threads or max(1, min(4, rest // 2)),
        stt_workers=2,
        tts_threads=1 if cores <= 4 else 2,
        torch_threads=max(1, min(4, rest // 4)),
    )


class CpuSlots:
    """At most ``slots`` model threads busy at once, granted by priority (then FIFO).

    Live conversation never waits for background work that is already running (a
    meeting window or a diarization pass holds its threads for seconds): a live
    (:data:`REALTIME`, :data:`LIVE_AUX`) call needs room among the live calls only, while a
    background call needs room in the whole budget. So realtime calls share the
    cores among themselves, background work starts only when the budget has room,
    and at worst a running background call briefly shares a core with live work.

    :meth:`hold` blocks the calling worker thread: use it inside model worker
    threads, never on the event loop. ``slots`` = 0 means no limit.
    """

    def __init__(self, slots: int = 0) -> None:
        self.slots = slots
        self.busy = 0
        """Slots held now, by every priority."""
        self.busy_realtime = 0
        """Slots held now by live (:data:`REALTIME`, :data:`LIVE_AUX`) calls."""
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Calls queued for slots now (not yet holding any)."""
        with self._cond:
            return len(self._queue)

    def spare(self, threads: int = 1) -> bool:
        """Could a secondary live call (:data:`LIVE_AUX`) of ``threads`` threads start now
        without delaying urgent work? True when nobody waits for the cores and, with it
        running, a core is still free for an urgent call (on a 1-core budget: the core is
        free). For work that is worth doing only on idle cores (a partial transcript):
        skip it when this is False instead of queueing. Never blocks for long (a lock)."""
        with self._cond:
            if self.slots <= 0:
                return True
            headroom = 1 if self.slots > 1 else 0
            need = max(1, min(threads, self.slots - headroom))
            return not self._queue and self.busy_realtime + need + headroom <= self.slots

    def resize(self, slots: int) -> None:
        with self._cond:
            self.slots = slots
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self, threads: int = 1, priority: int = REALTIME) -> Iterator[None]:
        """Take ``threads`` slots (at most all of them) for the block, at ``priority`` or
        the more urgent one this thread asked for (:func:`urgent`)."""
        override = getattr(_urgency, "priority", None)
        if override is not None:
            priority = min(priority, override)
        realtime = priority < BACKGROUND
        with self._cond:
            need = max(1, min(threads, self.slots)) if self.slots > 0 else threads
            ticket = (priority, next(self._order))
            heapq.heappush(self._queue, ticket)
            while not (self._queue[0] == ticket and self._fits(need, realtime)):
                self._cond.wait()
            heapq.heappop(self._queue)
            self.busy += need
            self.busy_realtime += need if realtime else 0
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.busy -= need
                self.busy_realtime -= need if realtime else 0
                self._cond.notify_all()

    @contextlib.contextmanager
    def reserve(self, threads: int) -> Iterator[None]:
        """Count ``threads`` live threads as busy for the block, without waiting for room:
        for work that runs anyway, outside the gate (llama.cpp in its own process while
        it answers). The lock is held only to count, so it may be used on the event loop.
        ``threads`` <= 0 reserves nothing."""
        if threads <= 0:
            yield
            return
        with self._cond:
            self.busy += threads
            self.busy_realtime += threads
        try:
            yield
        finally:
            with self._cond:
                self.busy -= threads
                self.busy_realtime -= threads
                self._cond.notify_all()

    def _fits(self, need: int, realtime: bool) -> bool:
        if self.slots <= 0:
            return True
        used = self.busy_realtime if realtime else self.busy
        return used + need <= self.slots


_urgency = threading.local()


@contextlib.contextmanager
def urgent(priority: int) -> Iterator[None]:
    """Calls that this thread holds in the block (:meth:`CpuSlots.hold`) take ``priority``
    where it is more urgent than their own: for a caller that knows what a model does
    not (the speech worker knows which piece is a response's first). Thread-local."""
    before = getattr(_urgency, "priority", None)
    _urgency.priority = priority if before is None else min(before, priority)
    try:
        yield
    finally:
        _urgency.priority = before


process_slots = CpuSlots()
"""The process's gate; :func:`configure` sizes it (unlimited until then)."""


def meeting_only_torch_threads(cores: int) -> int:
    """torch's threads in a process that runs meetings and nothing live (``voice worker``,
    ``voice meeting``, the meeting bench): the diarizer runs alongside the transcription,
    whose workers already fill the cores, so it gets what :func:`plan` gives torch with no
    llama.cpp core set aside (2 cores: 1 thread, as ``voice serve`` gives it). Two threads
    on 2 cores made the 11-minute bench recording 15.7-16.9x real time against
    25.2-25.6x with one (alternating runs, same hour)."""
    return plan(cores, local_llm=False).torch_threads


def use_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads (process-wide; before a torch model is loaded and
    run: senko keeps the count it finds when built). Imports torch."""
    import torch

    torch.set_num_threads(max(1, threads))


def configure(thread_plan: ThreadPlan) -> None:
    """Size :data:`process_slots` for ``thread_plan`` (called once models are planned)."""
    process_slots.resize(thread_plan.gated_slots)
