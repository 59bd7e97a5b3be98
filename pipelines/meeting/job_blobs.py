"""A job's files as the queue, the runner and the routes see them: received locally,
kept in a :class:`~pipelines.meeting.blob_store.BlobStore`.

An upload (or a live recording) is always received into this process's own folder,
``data_dir/uploads/<job_id>/`` (:class:`~pipelines.meeting.job_files.JobFiles`, the
*staging* folder). :meth:`JobBlobs.publish_upload` then makes it the job's upload
before the job row is committed:

- **local** (no ``VOICE_BLOB_URL``): the staging folder *is* the store; publishing
  fsyncs it, and a runner reads it in place. Exactly the layout and behaviour of
  one machine, with the orphan sweep at start-up.
- **shared** (S3): publishing copies every file of the folder (the recording,
  voice samples, a live transcript; never the spool marker) to
  ``uploads/<job_id>/<name>`` and removes the staging folder. A runner downloads
  what it needs into a scratch folder of its own (:meth:`JobBlobs.fetched`) and
  deletes it afterwards, so workers share no folder with the servers. Orphans
  are swept by age on a timer (:data:`ORPHAN_MIN_AGE_S`), never by a start-up
  sweep that could take another replica's upload in flight.

Every coroutine runs its blocking work in a worker thread and is safe to cancel
(a staged or scratch copy is removed; an object already sent stays, for the
orphan sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipelines.meeting.blob_store import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    delete_job,
    result_key,
    sweep_orphans,
    upload_key,
)
from pipelines.meeting.job_files import SPOOL_MARKER, JobFiles

log = logging.getLogger(__name__)

ORPHAN_MIN_AGE_S = 86400.0
"""Shared storage: a job folder without a job row is swept once unchanged this long
(seconds). Far longer than any upload takes between its first object and its row."""
ORPHAN_SWEEP_INTERVAL_S = 3600.0
"""How often the age-based orphan sweep runs (seconds)."""
SCRATCH = "scratch"
"""Folder under ``data_dir`` holding a runner's downloaded copies (shared storage)."""


class StoreFailed(OSError):
    """The blob store could not be written or read (the message says why)."""


@dataclass(frozen=True)
class JobBlobs:
    """``files``: this process's folder layout under ``data_dir`` (staging, scratch);
    ``store``: where accepted uploads and results live."""

    files: JobFiles
    store: BlobStore

    @classmethod
    def of(cls, files: JobFiles | JobBlobs, store: BlobStore | None = None) -> JobBlobs:
        """``files`` as :class:`JobBlobs` (a :class:`JobFiles` gets ``store``, by
        default the local folder of its ``data_dir``)."""
        if isinstance(files, JobBlobs):
            return files
        return cls(files, store if store is not None else LocalBlobStore(files.data_dir))

    @property
    def shared(self) -> bool:
        """True when the store is not this process's own ``data_dir`` (S3)."""
        return not (
            isinstance(self.store, LocalBlobStore) and self.store.root == self.files.data_dir
        )

    def local_upload(self, job_id: str) -> Path | None:
        """The accepted upload as a local file, when the store is local (else None)."""
        if isinstance(self.store, LocalBlobStore):
            return self.store.path(upload_key(job_id))
        return None

    async def publish_upload(self, job_id: str) -> None:
        """Make the staged upload folder the job's upload (durable before the row is
        written). Raises :class:`StoreFailed` when the store refuses it."""
        if not self.shared:
            await asyncio.to_thread(self.files.sync_upload, job_id)
            return
        folder = self.files.upload_dir(job_id)
        names = await asyncio.to_thread(_staged_names, folder)
        try:
            for name in names:
                await self.store.put_file(_upload_item(job_id, name), folder / name)
        except BlobStoreError as exc:
            raise StoreFailed(str(exc)) from exc
        await asyncio.to_thread(_remove_staged, folder)

    async def has_upload(self, job_id: str) -> bool:
        return await self.store.exists(upload_key(job_id))

    @contextlib.asynccontextmanager
    async def fetched(self, job_id: str, names: Collection[str] = ()) -> AsyncIterator[Path]:
        """A local folder holding the job's ``original`` and the upload files ``names``
        (e.g. ``known-0``): the upload folder itself when local, else a scratch copy
        removed on the way out. Raises :class:`BlobNotFound` for a missing one."""
        if not self.shared:
            yield self.files.upload_dir(job_id)
            return
        root = self.files.data_dir / SCRATCH
        await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
        folder = Path(
            await asyncio.to_thread(tempfile.mkdtemp, prefix=f"{job_id}.{os.getpid()}.", dir=root)
        )
        try:
            for name in ("original", *names):
                await self.store.download(_upload_item(job_id, name), folder / name)
            yield folder
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def write_results(self, job_id: str, results: Mapping[str, bytes]) -> None:
        """Store each result whole (readers see the old one or the new one). Raises
        :class:`StoreFailed` (an ``OSError``) when it cannot."""
        try:
            for name, data in results.items():
                await self.store.put_bytes(result_key(job_id, name), data)
        except BlobStoreError as exc:
            raise StoreFailed(str(exc)) from exc

    async def read_result(self, job_id: str, name: str) -> bytes | None:
        """A result's bytes; None when the job has no such result."""
        try:
            return await self.store.read_bytes(result_key(job_id, name))
        except BlobNotFound:
            return None

    async def remove(self, job_id: str) -> None:
        """Delete the job's upload and results, and any staged copy of it here."""
        await delete_job(self.store, job_id)
        if self.shared:
            await asyncio.to_thread(self.files.remove, job_id)

    async def sweep_at_start(self, known_ids: Collection[str]) -> list[str]:
        """The start-up sweep of this process's own folder: files of unknown jobs when
        local (no upload can be in flight yet), staged leftovers and scratch copies of
        a killed run when shared. Call before any upload is received."""
        if not self.shared:
            return await asyncio.to_thread(self.files.sweep_orphans, known_ids)
        await self.sweep_scratch()
        return await asyncio.to_thread(self.files.sweep_orphans, ())  # all staged are leftovers

    async def sweep_scratch(self) -> None:
        """Remove the scratch copies of runs whose process is gone (killed mid-job)."""
        await asyncio.to_thread(_sweep_scratch, self.files.data_dir / SCRATCH)

    async def sweep_orphans(self, known_ids: Collection[str]) -> list[str]:
        """The age-based sweep of the store (see :func:`~pipelines.meeting.blob_store.
        sweep_orphans`); safe on any replica or worker at any time."""
        removed = await sweep_orphans(self.store, known_ids, min_age_s=ORPHAN_MIN_AGE_S)
        if removed:
            log.info("removed the files of %d job(s) without a record", len(removed))
        return removed


def _upload_item(job_id: str, name: str) -> str:
    """The key of one file of a job's upload folder (``original`` is :func:`upload_key`)."""
    return upload_key(job_id).rsplit("/", 1)[0] + "/" + name


def _staged_names(folder: Path) -> list[str]:
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.name != SPOOL_MARKER and not p.name.startswith(".")
    )


def _remove_staged(folder: Path) -> None:
    """Remove the staged copy, keeping a spool marker (its owner removes it)."""
    for path in folder.iterdir():
        if path.name != SPOOL_MARKER:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _sweep_scratch(root: Path) -> None:
    """Remove scratch copies whose process is gone (a worker killed mid-job)."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        parts = folder.name.split(".")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and _alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
