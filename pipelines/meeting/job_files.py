"""Where a job's files live under ``data_dir``, and writing them safely.

The upload is ``uploads/<job_id>/original`` (the client's filename is kept in the
job record for display only, never used as a path) and results are
``results/<job_id>/<name>``, each written atomically (:func:`write_atomic`).
An upload folder holding :data:`SPOOL_MARKER` is a live recording being spooled
(or one a crash interrupted): it may have no job row yet, and the orphan sweep
leaves it to :mod:`pipelines.meeting.spool_recovery`.
Everything here blocks: call it from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.meeting.store import is_job_id

SPOOL_MARKER = "spool.json"
"""In an upload folder: a live recording whose job is not stored yet (JSON: the job's
owner and title)."""


@dataclass(frozen=True, slots=True)
class JobFiles:
    """Where a job's files live under ``data_dir``. Methods that touch the disk block."""

    data_dir: Path

    def upload_dir(self, job_id: str) -> Path:
        return self.data_dir / "uploads" / _checked(job_id)

    def upload(self, job_id: str) -> Path:
        """The uploaded recording, exactly as received."""
        return self.upload_dir(job_id) / "original"

    def results_dir(self, job_id: str) -> Path:
        return self.data_dir / "results" / _checked(job_id)

    def result(self, job_id: str, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise ValueError(f"bad result name {name!r}")
        return self.results_dir(job_id) / name

    def write_results(self, job_id: str, files: Mapping[str, bytes]) -> None:
        """Write each result atomically into the job's results folder. Blocking."""
        for name, data in files.items():
            write_atomic(self.result(job_id, name), data)

    def spool_marker(self, job_id: str) -> Path:
        return self.upload_dir(job_id) / SPOOL_MARKER

    def sync_upload(self, job_id: str) -> None:
        """fsync every file of the job's upload folder and the folders above it, so
        that a job row committed afterwards never points at a file a power loss
        took away. Blocking."""
        folder = self.upload_dir(job_id)
        for path in folder.iterdir():
            if path.is_file():
                _fsync(path, os.O_RDONLY)
        for path in (folder, folder.parent):
            _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))

    def remove(self, job_id: str) -> None:
        """Delete the job's upload and results (missing ones are fine). Blocking."""
        for folder in (self.upload_dir(job_id), self.results_dir(job_id)):
            shutil.rmtree(folder, ignore_errors=True)

    def sweep_orphans(self, known_ids: Collection[str]) -> list[str]:
        """Remove job folders whose id is not in ``known_ids`` (left by an upload cut
        short by a crash, or a delete interrupted between files and row); a spooling
        live recording (:data:`SPOOL_MARKER`) is kept. The store commits with
        ``synchronous=FULL`` and :meth:`sync_upload` runs before the row is written,
        so a job that was accepted always has its row here. Blocking;
        call only while no upload is being received. Returns the removed ids."""
        removed: set[str] = set()
        for parent in (self.data_dir / "uploads", self.data_dir / "results"):
            if not parent.is_dir():
                continue
            for child in parent.iterdir():
                if (
                    child.is_dir()
                    and is_job_id(child.name)
                    and child.name not in known_ids
                    and not (child / SPOOL_MARKER).exists()
                ):
                    shutil.rmtree(child, ignore_errors=True)
                    removed.add(child.name)
        return sorted(removed)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one,
    never a part (temporary file in the same folder, fsync, rename). Blocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
