"""Waiting in async tests for state that other threads change (the CPU gate, model workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` every 10 ms until true; fail the test after ``timeout_s`` seconds."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"not reached in {timeout_s} s")
