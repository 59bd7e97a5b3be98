"""A live recording spooled to disk as it arrives: a 16 kHz mono 16-bit WAV file.

The file starts with a WAV header whose sizes say "unknown" (``0xFFFFFFFF``, as
streamed WAV does); every chunk of samples is written straight through to the
file (no buffering in this process), so a killed server leaves all the audio it
had received, and memory stays bounded whatever the length of the meeting.
:meth:`RecordingSpool.finish` writes the real sizes and fsyncs; after a crash,
:func:`repair_wav` does the same from the file's length.

Writing blocks, so :meth:`RecordingSpool.append` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np

RATE = 16000
"""Sample rate (Hz) of a spool."""
HEADER_BYTES = 44
_UNKNOWN = 0xFFFFFFFF


def _header(data_bytes: int) -> bytes:
    riff = _UNKNOWN if data_bytes == _UNKNOWN else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class RecordingSpool:
    """One recording being written to ``path``. Create with :meth:`create`; then
    :meth:`append` from one task at a time and :meth:`finish` (or :meth:`discard`)
    once. ``samples`` counts what was appended (16 kHz samples)."""

    def __init__(self, path: Path, file: BinaryIO) -> None:
        self.path = path
        self.samples = 0
        self._file: BinaryIO | None = file
        self._lock = threading.Lock()
        """Orders a write still running in a cancelled append's thread before finish."""

    @classmethod
    def create(cls, path: Path) -> RecordingSpool:
        """A new spool at ``path`` (which must not exist) holding only the header. Blocking."""
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "xb", buffering=0)  # noqa: SIM115 - owned by the spool until finish
        file.write(_header(_UNKNOWN))
        return cls(path, file)

    @property
    def duration_s(self) -> float:
        return self.samples / RATE

    async def append(self, pcm: np.ndarray) -> None:
        """Write int16 samples at 16 kHz. Safe to cancel: the write still completes
        in its thread (before any :meth:`finish`)."""
        data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        self.samples += len(data) // 2
        await asyncio.to_thread(self._write, data)

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._file is not None:
                self._file.write(data)

    async def finish(self) -> Path:
        """Write the real sizes into the header, fsync and close; returns the path."""
        await asyncio.to_thread(self._finish)
        return self.path

    def _finish(self) -> None:
        with self._lock:
            if self._file is None:
                return
            file, self._file = self._file, None
            with file:
                size = file.seek(0, os.SEEK_END) - HEADER_BYTES
                file.seek(0)
                file.write(_header(size - size % 2))
                os.fsync(file.fileno())

    async def discard(self) -> None:
        """Close and delete the file."""
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        self.path.unlink(missing_ok=True)


def repair_wav(path: Path) -> int:
    """Make a spool that a crash left open a valid WAV: write its real sizes (an odd
    trailing byte is cut) and fsync. Returns the number of samples. Blocking;
    ``ValueError`` when the file is not a spool."""
    with open(path, "r+b") as file:
        head = file.read(HEADER_BYTES)
        if len(head) < HEADER_BYTES or head[:4] != b"RIFF" or head[36:40] != b"data":
            raise ValueError(f"{path} is not a recording spool")
        size = file.seek(0, os.SEEK_END) - HEADER_BYTES
        size -= size % 2
        file.truncate(HEADER_BYTES + size)
        file.seek(0)
        file.write(_header(size))
        os.fsync(file.fileno())
    return size // 2
