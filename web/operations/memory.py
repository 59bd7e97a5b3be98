"""Give freed heap memory back to the operating system, now and then.

The models run in worker threads, and glibc's allocator keeps what those threads
free in per-thread arenas instead of returning it. Under concurrent realtime
sessions the soak test (``bench/soak.py``) saw the server's RSS climb about 9 MB
per session although no object outlived its session; with the trim the climb was
less than half of that and levelled off. :func:`trimming` runs ``malloc_trim(0)``
in a worker thread every ``interval_s`` seconds while the server is up. Where the C library has no
``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()


M_ARENA_MAX = -8
"""``mallopt`` parameter number of glibc's arena cap (``MALLOC_ARENA_MAX``)."""


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``count`` (call before threads start; no-op where
    there is no ``mallopt``). By default glibc gives threads up to 8 arenas per core, and
    the model worker threads, the job threads and the event loop each fragment their
    own: over a mixed soak (sessions beside meeting jobs) idle RSS after a trim rose
    ~40 MB per round with the default and ~29 MB with 2 arenas, from ~100 MB lower.
    ``MALLOC_ARENA_MAX`` in the environment, read by glibc itself, wins (nothing is
    changed then). Meeting mode (``bench/meeting.py``'s 11-minute recording, transcription
    beside diarization): peak RSS 1337 MB with the default, 1232 MB with 2 arenas, the
    same speed."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, count))


def trim_heap() -> bool:
    """Return free heap pages of every arena to the OS (blocking, milliseconds)."""
    return bool(MALLOC_TRIM(0)) if MALLOC_TRIM is not None else False


@contextlib.asynccontextmanager
async def trimming(interval_s: float) -> AsyncIterator[None]:
    """Trim the heap every ``interval_s`` seconds while inside (0 = never). The task is
    owned here: cancelled and awaited on the way out."""
    if interval_s <= 0 or MALLOC_TRIM is None:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(trim_heap)

    task = asyncio.create_task(loop(), name="heap-trim")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
