"""The BlobStore contract, on the local folder and on a real S3-compatible server
(SeaweedFS ``weed mini`` on loopback): whole-blob writes and reads, streams,
missing keys, deleting a job removes its objects, and the age-based orphan sweep."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pipelines.meeting.blob_s3 import S3BlobStore
from pipelines.meeting.blob_store import (
    BlobNotFound,
    BlobStore,
    LocalBlobStore,
    blob_store,
    delete_job,
    result_key,
    sweep_orphans,
    upload_key,
)
from pipelines.meeting.job_files import SPOOL_MARKER
from pipelines.meeting.store import new_job_id
from tests.s3_server import S3Server
from voice.settings import load_settings

BUCKET = "voice-blobs"
HOUR_S = 3600.0


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with S3Server(BUCKET) as server, pytest.MonkeyPatch.context() as env:
        for name, value in server.env().items():
            env.setenv(name, value)
        server.wait_for_bucket()
        yield server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return blob_store(load_settings(data_dir=tmp_path / "data"))
    server: S3Server = request.getfixturevalue("s3")
    settings = load_settings(
        data_dir=tmp_path / "data",
        blob_url=f"s3://{BUCKET}/{tmp_path.name}",  # a prefix of this test's own
        s3_endpoint_url=server.endpoint_url,
    )
    made = blob_store(settings)
    assert isinstance(made, S3BlobStore) and made.prefix == f"{tmp_path.name}/"
    return made


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def test_blobs_are_written_read_streamed_and_downloaded(
    store: BlobStore, tmp_path: Path
) -> None:
    job = new_job_id()
    recording = tmp_path / "meeting.webm"
    recording.write_bytes(bytes(range(256)) * 40)  # 10 KiB
    await store.put_file(upload_key(job), recording)
    await store.put_bytes(result_key(job, "transcript.json"), b'{"segments": []}')
    await store.put_bytes(result_key(job, "transcript.json"), b'{"segments": [1]}')  # replaces

    assert await store.read_bytes(upload_key(job)) == recording.read_bytes()
    assert await store.read_bytes(result_key(job, "transcript.json")) == b'{"segments": [1]}'
    pieces = await collect(store.stream(upload_key(job), chunk_bytes=4096))
    assert [len(p) for p in pieces] == [4096, 4096, 2048]
    assert b"".join(pieces) == recording.read_bytes()
    copy = tmp_path / "worker" / "original"
    await store.download(upload_key(job), copy)
    assert copy.read_bytes() == recording.read_bytes()
    assert await store.exists(upload_key(job))
    assert not await store.exists(result_key(job, "summary.json"))


async def test_missing_blobs_and_bad_keys_are_clear_errors(store: BlobStore, tmp_path: Path) -> None:
    missing = result_key(new_job_id(), "summary.json")
    with pytest.raises(BlobNotFound):
        await store.read_bytes(missing)
    with pytest.raises(BlobNotFound):
        await collect(store.stream(missing))
    with pytest.raises(BlobNotFound):
        await store.download(missing, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    for bad in ("../etc/passwd", "uploads//x", "/abs", "uploads/./x", ""):
        with pytest.raises(ValueError):
            await store.put_bytes(bad, b"x")
    with pytest.raises(ValueError):
        result_key(new_job_id(), "../escape")


async def test_deleting_a_job_removes_its_objects_and_no_other(store: BlobStore) -> None:
    gone, kept = new_job_id(), new_job_id()
    for job in (gone, kept):
        await store.put_bytes(upload_key(job), b"audio")
        await store.put_bytes(result_key(job, "transcript.json"), b"{}")
        await store.put_bytes(result_key(job, "summary.json"), b"{}")
    assert await delete_job(store, gone) == 3
    assert not await store.exists(upload_key(gone))
    assert set(await store.folders("results/")) == {kept}
    assert set(await store.folders("uploads/")) == {kept}
    assert await store.read_bytes(result_key(kept, "summary.json")) == b"{}"
    assert await delete_job(store, gone) == 0  # deleting twice is fine


async def test_the_orphan_sweep_removes_only_old_folders_without_a_job(store: BlobStore) -> None:
    known, orphan, spooling = new_job_id(), new_job_id(), new_job_id()
    for job in (known, orphan, spooling):
        await store.put_bytes(upload_key(job), b"audio")
    await store.put_bytes(result_key(orphan, "transcript.json"), b"{}")
    await store.put_bytes(f"uploads/{spooling}/{SPOOL_MARKER}", b'{"owner": null}')
    changed = await store.folders("uploads/")
    assert abs(changed[orphan] - time.time()) < 120  # the store's clock is ours, roughly

    # Just written: another replica may still be receiving it, so nothing goes.
    assert await sweep_orphans(store, {known}, min_age_s=HOUR_S) == []
    assert await store.exists(upload_key(orphan))
    # An hour later the orphan goes (upload and results); the job and the spool stay.
    later = lambda: time.time() + 2 * HOUR_S  # noqa: E731
    assert await sweep_orphans(store, {known}, min_age_s=HOUR_S, now=later) == [orphan]
    assert not await store.exists(upload_key(orphan))
    assert not await store.exists(result_key(orphan, "transcript.json"))
    assert set(await store.folders("uploads/")) == {known, spooling}


def test_the_local_store_keeps_today_s_file_layout(tmp_path: Path) -> None:
    job = new_job_id()
    store = LocalBlobStore(tmp_path)
    assert store.path(upload_key(job)) == tmp_path / "uploads" / job / "original"
    assert store.path(result_key(job, "summary.json")) == tmp_path / "results" / job / "summary.json"
