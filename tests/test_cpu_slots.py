"""The process CPU gate never makes live conversation wait for background work that
is already running (a meeting window or a diarization pass takes seconds), while
background work still starts only when the budget has room."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from voice.cpu_budget import BACKGROUND, FIRST_AUDIO, REALTIME, CpuSlots, urgent


def test_realtime_does_not_wait_for_a_running_background_call() -> None:
    slots = CpuSlots(1)
    meeting_in, meeting_may_end = threading.Event(), threading.Event()
    realtime_done = threading.Event()
    second_meeting_in = threading.Event()

    def meeting(entered: threading.Event) -> None:
        with slots.hold(1, BACKGROUND):
            entered.set()
            meeting_may_end.wait(10)

    first = threading.Thread(target=meeting, args=(meeting_in,))
    first.start()
    assert meeting_in.wait(5)

    def final() -> None:
        with slots.hold(1, REALTIME):
            assert slots.busy_realtime == 1
        realtime_done.set()

    live = threading.Thread(target=final)
    live.start()
    # The realtime call runs and ends while the meeting still holds its slot.
    assert realtime_done.wait(5)
    assert not meeting_may_end.is_set()

    # Another background call waits: the budget is full.
    second = threading.Thread(target=meeting, args=(second_meeting_in,))
    second.start()
    time.sleep(0.2)
    assert not second_meeting_in.is_set()
    assert (slots.busy, slots.busy_realtime) == (1, 0)

    meeting_may_end.set()
    for t in (first, live, second):
        t.join(5)
    assert second_meeting_in.is_set()
    assert (slots.busy, slots.busy_realtime) == (0, 0)


def test_realtime_calls_still_share_the_budget_among_themselves() -> None:
    slots = CpuSlots(1)
    inside = 0
    peak = 0
    lock = threading.Lock()

    def final() -> None:
        nonlocal inside, peak
        with slots.hold(1, REALTIME):
            with lock:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.02)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=final) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert peak == 1 and slots.busy == 0


def test_a_reservation_counts_an_outside_process_while_it_works() -> None:
    """llama.cpp answering (its own process) takes its core from the live calls; when it
    is idle, a final and a partial may run side by side on every core."""
    slots = CpuSlots(2)
    both_in = threading.Barrier(2, timeout=5)

    def live() -> None:
        with slots.hold(1, REALTIME):
            both_in.wait()  # needs the two slots at once: fails if they are serialised

    pair = [threading.Thread(target=live) for _ in range(2)]
    for t in pair:
        t.start()
    for t in pair:
        t.join(5)
    assert not both_in.broken and slots.busy == 0

    entered = threading.Event()
    with slots.reserve(1):
        assert (slots.busy, slots.busy_realtime) == (1, 1)
        blocked = threading.Thread(target=_hold_then_set, args=(slots, entered))
        with slots.hold(1, REALTIME):
            blocked.start()
            time.sleep(0.2)
            assert not entered.is_set()  # the reserved core and this call fill the budget
        assert entered.wait(5)
    blocked.join(5)
    assert (slots.busy, slots.busy_realtime) == (0, 0)
    with slots.reserve(0):
        assert slots.busy == 0


def _hold_then_set(slots: CpuSlots, entered: threading.Event) -> None:
    with slots.hold(1, REALTIME):
        entered.set()


def test_a_first_speech_piece_goes_before_live_calls_queued_earlier() -> None:
    """Under load a reply's first speech piece (:data:`FIRST_AUDIO`, asked for by the
    speech worker with :func:`urgent`) overtakes finals and later pieces already
    waiting, so each turn finishes its own work instead of waiting for everyone's."""
    slots = CpuSlots(1)
    order: list[str] = []
    release = threading.Event()
    held = threading.Event()

    def holder() -> None:
        with slots.hold(1, REALTIME):
            held.set()
            release.wait(10)

    def call(label: str, priority: int, first_piece: bool) -> None:
        with urgent(FIRST_AUDIO) if first_piece else contextlib.nullcontext(), slots.hold(
            1, priority
        ):
            order.append(label)

    busy = threading.Thread(target=holder)
    busy.start()
    assert held.wait(5)
    waiting = []
    for label, priority, first_piece in (
        ("final of session a", REALTIME, False),
        ("second piece of session b", REALTIME, False),
        ("first piece of session c", REALTIME, True),
    ):
        waiting.append(threading.Thread(target=call, args=(label, priority, first_piece)))
        waiting[-1].start()
        _until(lambda n=len(waiting): slots.waiting == n)
    release.set()
    for t in (busy, *waiting):
        t.join(5)
    assert order == ["first piece of session c", "final of session a", "second piece of session b"]
    # urgent() only raises a call's priority, and only inside the block.
    with urgent(FIRST_AUDIO), slots.hold(1, BACKGROUND):
        assert slots.busy_realtime == 1
    with slots.hold(1, BACKGROUND):
        assert slots.busy_realtime == 0


def test_spare_cores_only_when_nobody_waits_and_one_stays_free() -> None:
    """A partial transcript runs only on cores nobody else needs: no call is waiting, and
    with it running one core is still free for an urgent call (one core: it is free)."""
    two = CpuSlots(2)
    assert two.spare(1)
    with two.reserve(1):  # llama.cpp answering takes a core
        assert not two.spare(1)
    assert two.spare(4)  # a wider call counts as the one core it could get beside the free one
    with two.hold(1, BACKGROUND):  # background work does not count against live calls
        assert two.spare(1)
    entered, release = threading.Event(), threading.Event()

    def hold_both() -> None:
        with two.hold(2, REALTIME):
            entered.set()
            release.wait(10)

    full = threading.Thread(target=hold_both)
    full.start()
    assert entered.wait(5)
    queued = threading.Thread(target=_hold_then_set, args=(two, threading.Event()))
    queued.start()
    _until(lambda: two.waiting == 1)
    assert not two.spare(1)
    release.set()
    for t in (full, queued):
        t.join(5)
    assert two.spare(1)
    one = CpuSlots(1)
    assert one.spare(1)
    with one.hold(1, REALTIME):
        assert not one.spare(1)
    assert CpuSlots(0).spare(8)  # unlimited


def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` (a state of the gate, changed by other threads) until true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.005)
