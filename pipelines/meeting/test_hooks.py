"""A fault-injection hook for the worker tests, off unless ``VOICE_TEST_ONLY_JOB_HOOK`` is set.

The variable holds a JSON list of rules such as ``{"filename": "poison", "action":
"kill" | "sleep", "stage": "diarize", "attempts": [1], "seconds": 30}``; the first
that matches applies. For a job whose display
filename contains ``filename`` and whose attempt number is in ``attempts`` (all
attempts when absent), ``kill`` ends this process with SIGKILL when the job reports
``stage`` (a worker dying mid-job), and ``sleep`` holds the job for ``seconds``
after it starts (a long job to cancel). Never set it in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from pipelines.meeting.jobs import JobRunner, ProgressFn
from pipelines.meeting.store import Job

ENV = "VOICE_TEST_ONLY_JOB_HOOK"


def hooked(runner: JobRunner, spec: str | None = None) -> JobRunner:
    """``runner`` with the hook of ``spec`` (default: the environment); ``runner``
    itself when none is set."""
    raw = spec if spec is not None else os.environ.get(ENV)
    if not raw:
        return runner
    rules: list[dict[str, Any]] = json.loads(raw)

    async def run(job: Job, progress: ProgressFn) -> Mapping[str, bytes]:
        hook = next((rule for rule in rules if _matches(rule, job)), None)
        if hook is None:
            return await runner(job, progress)
        if hook["action"] == "sleep":
            progress("waiting (test hook)", 0.0)
            await asyncio.sleep(float(hook["seconds"]))
            return await runner(job, progress)

        def report(stage: str, fraction: float) -> None:
            if stage == hook["stage"]:
                os.kill(os.getpid(), signal.SIGKILL)
            progress(stage, fraction)

        return await runner(job, report)

    return run


def _matches(rule: Mapping[str, Any], job: Job) -> bool:
    attempts = rule.get("attempts")
    return rule["filename"] in (job.filename or "") and (
        attempts is None or job.attempts in attempts
    )
