"""Running a meeting outside the server (the ``voice meeting`` command, benchmarks):
loading what the pipeline needs and writing its results to a folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from pipelines.llm_endpoint import open_llm
from pipelines.meeting.pipeline import MeetingPipeline, MeetingResult
from pipelines.meeting.summarize import SummaryOptions
from voice import cpu_budget
from voice.settings import Settings
from voice.stt import WhisperTranscriber

TRANSCRIPT_FORMATS = ("json", "srt", "vtt", "md", "txt")


def output_files(result: MeetingResult) -> dict[str, str]:
    """File name -> text: ``transcript.{json,srt,vtt,md,txt}`` and, with a summary,
    ``summary.json`` and ``summary.md``."""
    files = {f"transcript.{fmt}": result.document.render(fmt) for fmt in TRANSCRIPT_FORMATS}
    if result.summary is not None:
        files["summary.json"] = (
            json.dumps(result.summary.to_dict(), ensure_ascii=False, indent=2) + "\n"
        )
        files["summary.md"] = result.summary.to_markdown(result.document)
    return files


def write_outputs(result: MeetingResult, out_dir: Path) -> list[Path]:
    """Write :func:`output_files` into ``out_dir`` (created if needed). Blocking."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in output_files(result).items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@contextlib.asynccontextmanager
async def local_pipeline(settings: Settings, *, use_llm: bool) -> AsyncIterator[MeetingPipeline]:
    """A :class:`MeetingPipeline` on this machine's models.

    Loads the batch transcriber (``stt_model``) and the diarizer
    (``diarize_backend``) in worker threads, as the server's ``Services`` does, with
    torch's threads sized for a meeting-only process
    (:func:`~voice.cpu_budget.meeting_only_torch_threads`).
    With ``use_llm`` (summaries wanted) and ``summarize_with_llm`` (settings),
    connects to ``llm_base_url`` or, when
    none is set, starts the embedded llama.cpp server for the duration of the
    block (stopped on exit, also when cancelled); without it summaries, if any,
    are extractive. Safe to cancel.
    """
    from voice.diarize import make_diarizer  # imports torch: only when a meeting is run

    cores = settings.cpu_cores or cpu_budget.available_cores()
    threads = cpu_budget.meeting_only_torch_threads(cores)
    await asyncio.to_thread(cpu_budget.use_torch_threads, threads)  # imports torch
    loading = asyncio.gather(
        asyncio.to_thread(WhisperTranscriber.from_settings, settings, False),
        asyncio.to_thread(make_diarizer, settings),
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            wanted = use_llm and settings.summarize_with_llm
            client = (await stack.enter_async_context(open_llm(settings)))[0] if wanted else None
            transcriber, diarizer = await loading
            options = SummaryOptions.from_settings(settings)
            yield MeetingPipeline(transcriber, diarizer, client, summary_options=options)
    finally:
        if not loading.done():
            loading.cancel()
            with contextlib.suppress(BaseException):
                await loading
