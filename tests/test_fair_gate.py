"""The LLM's fair queue: slots, round-robin between sessions, realtime before
background work, and cancellation while waiting. Pure asyncio, no I/O."""

from __future__ import annotations

import asyncio

import pytest

from voice.llm.fair_gate import BACKGROUND, REALTIME, FairGate


async def _queue_order(gate: FairGate, requests: list[tuple[str, int]]) -> list[str]:
    """Start one holder per ``(key, priority)`` in list order while the only slot is
    taken; the order in which they then get the slot."""
    order: list[str] = []

    async def hold(key: str, priority: int, label: str) -> None:
        async with gate.slot(key, priority):
            order.append(label)

    await gate.acquire("blocker")
    tasks = []
    for n, (key, priority) in enumerate(requests):
        tasks.append(asyncio.create_task(hold(key, priority, f"{key}{n}")))
        await asyncio.sleep(0)  # queued in this order
    assert gate.waiting == len(requests)
    gate.release()
    await asyncio.gather(*tasks)
    return order


async def test_one_session_cannot_starve_another() -> None:
    gate = FairGate(1)
    # Session a queues three requests before b and c queue one each.
    order = await _queue_order(
        gate, [("a", REALTIME), ("a", REALTIME), ("a", REALTIME), ("b", REALTIME),
               ("c", REALTIME)]
    )
    assert order == ["a0", "b3", "c4", "a1", "a2"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_realtime_requests_go_before_background_ones() -> None:
    gate = FairGate(1)
    order = await _queue_order(
        gate, [("summary", BACKGROUND), ("a", REALTIME), ("summary", BACKGROUND),
               ("b", REALTIME)]
    )
    assert order == ["a1", "b3", "summary0", "summary2"]


async def test_slots_bound_holders_and_zero_means_unlimited() -> None:
    for slots, expected in ((2, 2), (0, 5)):
        gate = FairGate(slots)
        peak = 0

        async def work(key: str, gate: FairGate = gate) -> None:
            nonlocal peak
            async with gate.slot(key):
                peak = max(peak, gate.running)
                await asyncio.sleep(0.01)

        peak = 0
        await asyncio.gather(*(work(f"s{n}") for n in range(5)))
        assert peak == expected
        assert gate.running == 0


async def test_cancelled_waiter_gives_up_its_place() -> None:
    gate = FairGate(1)
    await gate.acquire("a")
    waiter = asyncio.create_task(gate.acquire("b"))
    await asyncio.sleep(0)
    assert gate.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    gate.release()
    assert gate.running == 0
    # A slot granted at the moment its waiter is cancelled is passed on, not lost.
    await gate.acquire("a")
    first = asyncio.create_task(gate.acquire("b"))
    second = asyncio.create_task(gate.acquire("c"))
    await asyncio.sleep(0)
    gate.release()  # grants "b" ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert (gate.running, gate.waiting) == (1, 0)
