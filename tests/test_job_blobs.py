"""JobBlobs, the meeting flow's view of its files, with a store that is not this process's
folder (as S3 is; here a second local folder, so no server is needed): a published upload
leaves no staged copy, a runner's scratch copy is removed when it is done, results and
deletes go to the store, and the start-up sweep only touches this process's own folder.
The same flow on real S3 runs in tests/test_job_workers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.meeting.blob_store import LocalBlobStore, result_key, upload_key
from pipelines.meeting.job_blobs import SCRATCH, JobBlobs
from pipelines.meeting.job_files import SPOOL_MARKER, JobFiles
from pipelines.meeting.store import new_job_id


@pytest.fixture
def blobs(tmp_path: Path) -> JobBlobs:
    return JobBlobs(JobFiles(tmp_path / "replica"), LocalBlobStore(tmp_path / "shared"))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


async def test_an_upload_is_published_fetched_into_scratch_and_deleted(
    blobs: JobBlobs, tmp_path: Path
) -> None:
    assert blobs.shared and blobs.local_upload(new_job_id()) is not None
    job = new_job_id()
    staged = blobs.files.upload_dir(job)
    staged.mkdir(parents=True)
    (staged / "original").write_bytes(b"RIFF recording")
    (staged / "known-0").write_bytes(b"voice sample")
    (staged / SPOOL_MARKER).write_text("{}")  # a live recording's marker is not published

    await blobs.publish_upload(job)
    assert files_under(tmp_path / "shared") == [f"uploads/{job}/known-0", f"uploads/{job}/original"]
    assert files_under(staged) == [SPOOL_MARKER]  # its owner removes the marker
    assert await blobs.has_upload(job)

    async with blobs.fetched(job, ["known-0"]) as folder:
        assert folder.parent == blobs.files.data_dir / SCRATCH
        assert (folder / "original").read_bytes() == b"RIFF recording"
        assert (folder / "known-0").read_bytes() == b"voice sample"
    assert not folder.exists()

    await blobs.write_results(job, {"transcript.json": b"{}"})
    assert await blobs.read_result(job, "transcript.json") == b"{}"
    assert await blobs.read_result(job, "summary.json") is None
    await blobs.remove(job)
    assert files_under(tmp_path / "shared") == []
    assert not staged.exists()


async def test_the_start_up_sweep_touches_only_this_process_s_own_folder(
    blobs: JobBlobs, tmp_path: Path
) -> None:
    known, leftover, other = new_job_id(), new_job_id(), new_job_id()
    for job in (known, leftover):  # staged here by an upload a crash cut short
        blobs.files.upload_dir(job).mkdir(parents=True)
        blobs.files.upload(job).write_bytes(b"x")
    dead_scratch = blobs.files.data_dir / SCRATCH / f"{other}.999999999.tmp"
    dead_scratch.mkdir(parents=True)
    await blobs.store.put_bytes(upload_key(other), b"another replica's upload, no row yet")
    await blobs.store.put_bytes(result_key(known, "transcript.json"), b"{}")

    assert await blobs.sweep_at_start([known]) == sorted([known, leftover])
    assert files_under(blobs.files.data_dir) == []
    assert files_under(tmp_path / "shared") == sorted(
        [f"uploads/{other}/original", f"results/{known}/transcript.json"]
    )
    assert await blobs.sweep_orphans([known]) == []  # too young to be an orphan


async def test_a_local_store_is_read_in_place_and_swept_at_start(tmp_path: Path) -> None:
    blobs = JobBlobs.of(JobFiles(tmp_path))
    assert not blobs.shared
    job, orphan = new_job_id(), new_job_id()
    for one in (job, orphan):
        blobs.files.upload_dir(one).mkdir(parents=True)
        blobs.files.upload(one).write_bytes(b"x")
    await blobs.publish_upload(job)  # fsync in place: nothing moves
    async with blobs.fetched(job) as folder:
        assert folder == blobs.files.upload_dir(job)
    assert blobs.local_upload(job) == blobs.files.upload(job)
    assert await blobs.sweep_at_start([job]) == [orphan]
    assert files_under(tmp_path) == [f"uploads/{job}/original"]
