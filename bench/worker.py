"""Worker bench: how fast one ``voice worker`` turns meeting jobs around.

Starts a throwaway PostgreSQL (``tests/pg_server.py``), one ``voice worker`` process
(the configured batch model, ``stt_model``; summaries off, so the LLM is not part
of the figure) and queues real recordings from ../shared/data as meeting jobs,
all at once. Reported: each job's processing time over its audio length (the
real-time factor, RTF: 0.5 = twice as fast as real time), the overall RTF (first
start to last finish over the total audio), the worker's start-up time, and the
load average before and after (other work on the machine slows every figure).

    .venv/bin/python -m bench.worker             # → bench/results/worker.json
    .venv/bin/python -m bench.worker --model tiny.en
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from bench.common import DATA, ROOT, write_result
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.pg_queue import ProcrastinateJobQueue
from pipelines.meeting.pg_store import PostgresJobStore
from pipelines.meeting.store import JobState, new_job_id
from tests.pg_server import running_postgres
from voice.settings import load_settings

CLIPS = [
    "assembled/assembled_meeting.wav",
    "pyannote-audio/sample.wav",
    "azure-speech-sdk/katiesteve.wav",
    "realpython/harvard.wav",
    "openai-whisper/jfk.wav",
]


def duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


async def measure(url: str, root: Path, model: str | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), VOICE_DATABASE_URL=url,
               VOICE_JOB_BACKEND="procrastinate", VOICE_DATA_DIR=str(root / "data"),
               VOICE_LLM_BASE_URL="http://127.0.0.1:9/v1", VOICE_LOG_FORMAT="text")
    if model:
        env["VOICE_STT_MODEL"] = model
    store = PostgresJobStore(url)
    await store.open()
    queue = ProcrastinateJobQueue(store, JobFiles(root / "data"))
    await queue.start()
    log = (root / "worker.log").open("wb")
    spawned = time.time()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "web.cli", "worker", cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        ids = {}
        for clip in CLIPS:
            job_id = new_job_id()
            upload = queue.files.upload(job_id)
            upload.parent.mkdir(parents=True)
            shutil.copyfile(DATA / clip, upload)
            job = store.new(job_id, options={"summarize": False}, filename=clip,
                            duration_s=duration_s(DATA / clip))
            ids[job_id] = (await queue.submit(job)).duration_s
        while True:
            jobs = [await store.get(job_id) for job_id in ids]
            if all(j is not None and j.state.final for j in jobs):
                break
            await asyncio.sleep(0.5)
        first_start = min(j.started_at or 0.0 for j in jobs if j)
        last_finish = max(j.finished_at or 0.0 for j in jobs if j)
        audio = sum(j.duration_s or 0.0 for j in jobs if j)
        per_job = [
            {"clip": j.filename, "audio_s": round(j.duration_s or 0.0, 1), "state": str(j.state),
             "rtf": round(((j.finished_at or 0) - (j.started_at or 0)) / (j.duration_s or 1), 3)}
            for j in jobs if j
        ]
        assert all(j and j.state is JobState.SUCCEEDED for j in jobs), per_job
        return {
            "audio_s": round(audio, 1),
            "processing_s": round(last_finish - first_start, 1),
            "overall_rtf": round((last_finish - first_start) / audio, 3),
            "first_job_started_after_spawn_s": round(first_start - spawned, 1),
            "jobs": per_job,
        }
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), 60)
        log.close()
        await queue.stop()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="stt_model for the worker (default: the setting)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with running_postgres() as postgres, tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(measure(postgres.fresh_database("bench"), Path(tmp), args.model))
    results["model"] = args.model or load_settings().stt_model
    path = write_result(
        "worker", results, load_before=load_before, load_after=os.getloadavg()
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
