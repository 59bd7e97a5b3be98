"""Where uploads and results are kept: the :class:`BlobStore` protocol, the local
folder of today (:class:`LocalBlobStore`), and the choice between it and S3.

A blob is named by a key of ``/``-separated segments, laid out like the folders of
:class:`~pipelines.meeting.job_files.JobFiles`: ``uploads/<job_id>/original`` and
``results/<job_id>/<name>`` (:func:`upload_key`, :func:`result_key`). With
``VOICE_BLOB_URL=s3://bucket/prefix`` the same keys live in S3-compatible object
storage (:mod:`pipelines.meeting.blob_s3`, imported only then), shared by every
server and worker. Every method is a coroutine that runs its blocking work in a
worker thread; cancelling one returns at once, while a request already sent
finishes in its thread.

:func:`sweep_orphans` is age-based: a job folder with no job row is removed only
once nothing in it has changed for ``min_age_s``, so a sweep never removes an
upload another replica is receiving right now.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Protocol

from pipelines.meeting.job_files import SPOOL_MARKER, write_atomic
from pipelines.meeting.store import is_job_id
from voice.settings import Settings

CHUNK_BYTES = 1 << 20
"""Bytes per piece when streaming a blob."""
JOB_FOLDERS = ("uploads", "results")


class BlobNotFound(LookupError):
    """No blob has this key."""


class BlobStoreError(RuntimeError):
    """The store failed (unreachable, refused, out of space); the message says how."""


class BlobStore(Protocol):
    """Blobs by key. Writes replace whole blobs atomically (readers see the old one or
    the new one); reads of a missing key raise :class:`BlobNotFound`."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store the local file ``source`` under ``key``."""
        ...

    async def put_bytes(self, key: str, data: bytes) -> None: ...

    async def read_bytes(self, key: str) -> bytes: ...

    async def download(self, key: str, target: Path) -> None:
        """Copy the blob to the local file ``target`` (its folder is made)."""
        ...

    def stream(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The blob in pieces of at most ``chunk_bytes`` (raises :class:`BlobNotFound`
        on the first iteration when missing)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix`` (which ends with ``/``);
        returns how many were deleted."""
        ...

    async def folders(self, prefix: str) -> dict[str, float]:
        """The next key segments under ``prefix`` (``uploads/`` -> job ids), each with
        the newest change (Unix seconds) of a blob beneath it."""
        ...


def check_key(key: str) -> str:
    """``key`` when it is a relative ``/``-separated name without empty, ``.`` or
    ``..`` segments; else :class:`ValueError` (keys never come from clients as is)."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
        raise ValueError(f"bad blob key {key!r}")
    return key


def _check_prefix(prefix: str) -> str:
    if not prefix.endswith("/"):
        raise ValueError(f"a blob prefix ends with '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


def upload_key(job_id: str) -> str:
    """The uploaded recording of a job, exactly as received."""
    return f"uploads/{_job(job_id)}/original"


def result_key(job_id: str, name: str) -> str:
    if "/" in name or name.startswith("."):
        raise ValueError(f"bad result name {name!r}")
    return f"results/{_job(job_id)}/{name}"


def _job(job_id: str) -> str:
    if not is_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


async def delete_job(store: BlobStore, job_id: str) -> int:
    """Delete a job's upload and results; returns how many blobs went."""
    counts = [await store.delete_prefix(f"{folder}/{_job(job_id)}/") for folder in JOB_FOLDERS]
    return sum(counts)


async def sweep_orphans(
    store: BlobStore,
    known_ids: Collection[str],
    *,
    min_age_s: float,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Remove job folders whose id is not in ``known_ids`` and in which nothing changed
    for ``min_age_s`` seconds (``now``: Unix seconds). An upload folder holding a
    spool marker (a live recording, left to spool recovery) is kept. Returns the
    removed ids, sorted. Safe to run on any replica at any time."""
    removed: set[str] = set()
    for folder in JOB_FOLDERS:
        for job_id, changed in (await store.folders(f"{folder}/")).items():
            if (
                not is_job_id(job_id)
                or job_id in known_ids
                or now() - changed < min_age_s
                or await store.exists(f"uploads/{job_id}/{SPOOL_MARKER}")
            ):
                continue
            await store.delete_prefix(f"{folder}/{job_id}/")
            removed.add(job_id)
    return sorted(removed)


class LocalBlobStore:
    """Blobs as files under ``root`` (the server's ``data_dir``), written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file behind ``key`` (for code that needs a local path)."""
        return self.root / check_key(key)

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(_copy_atomic, source, self.path(key))

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(write_atomic, self.path(key), data)

    async def read_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(key) from None

    async def download(self, key: str, target: Path) -> None:
        source = self.path(key)
        if not await asyncio.to_thread(source.is_file):
            raise BlobNotFound(key)
        await asyncio.to_thread(_copy_atomic, source, target)

    async def stream(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        try:
            file = await asyncio.to_thread(self.path(key).open, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFound(key) from None
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_bytes):
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, _check_prefix(prefix))

    def _delete_prefix(self, prefix: str) -> int:
        folder = self.root / prefix
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    async def folders(self, prefix: str) -> dict[str, float]:
        return await asyncio.to_thread(self._folders, _check_prefix(prefix))

    def _folders(self, prefix: str) -> dict[str, float]:
        parent = self.root / prefix
        if not parent.is_dir():
            return {}
        found: dict[str, float] = {}
        for child in parent.iterdir():
            times = [_mtime(p) for p in (child, *child.rglob("*"))]
            found[child.name] = max(times)
        return found


def _mtime(path: Path) -> float:
    """Modification time (Unix seconds); 0 for a file removed meanwhile."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy so that readers of ``target`` never see a part (temporary file, rename);
    nothing to do when both name the same file. Blocking."""
    if target.exists() and source.samefile(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def blob_store(settings: Settings) -> BlobStore:
    """The store ``settings`` name: S3 when ``blob_url`` is set (boto3 imported only
    then; building the client reads its configuration: call at start-up), else the
    files under ``data_dir``."""
    if settings.blob_url:
        from pipelines.meeting.blob_s3 import S3BlobStore

        return S3BlobStore.from_url(settings.blob_url, endpoint_url=settings.s3_endpoint_url)
    return LocalBlobStore(settings.data_dir)
