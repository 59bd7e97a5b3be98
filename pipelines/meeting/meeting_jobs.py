"""The job runner for meetings: a stored upload through :class:`MeetingPipeline`.

Job options (JSON, as stored with the job) are ``language``, ``num_speakers``,
``min_speakers``, ``max_speakers``, ``summarize`` and ``known_speaker_names``
(their voice samples are files in the job's upload folder, see
:mod:`pipelines.meeting.known_speakers`); :func:`meeting_options` checks them. Results are ``transcript.json`` (:meth:`TranscriptDocument.to_dict`)
and, when a summary was made, ``summary.json`` (:meth:`MeetingSummary.to_dict`).
Models come from a :class:`MeetingModels` provider (the server's ``Services``);
their lazy loading blocks, so it runs in a worker thread. The upload is read
through :meth:`~pipelines.meeting.job_blobs.JobBlobs.fetched`: in place when local,
from a scratch copy (removed afterwards) with shared storage.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from pipelines.meeting.blob_store import BlobNotFound
from pipelines.meeting.document import TranscriptDocument
from pipelines.meeting.job_blobs import JobBlobs
from pipelines.meeting.job_files import JobFiles
from pipelines.meeting.jobs import JobError, JobRunner, ProgressFn
from pipelines.meeting.known_speakers import (
    KnownSpeaker,
    embed_known,
    read_references,
    reference_names,
)
from pipelines.meeting.pipeline import MeetingOptions, MeetingPipeline
from pipelines.meeting.store import Job, JobState
from pipelines.meeting.summarize import SummaryOptions
from voice.audio.decode import AudioDecodeError, AudioTooLongError
from voice.diarize.base import Diarizer, SpeakerEmbedder
from voice.llm import ChatClient
from voice.stt.base import Transcriber

TRANSCRIPT = "transcript.json"
SUMMARY = "summary.json"
SUMMARY_STAGE = "summarize"
"""The progress stage of a job writing its summary (its transcript is stored)."""
SPEAKER_LIMIT = 32
"""Largest speaker count accepted in options."""


class MeetingModels(Protocol):
    """Where the runner gets its models; the properties may block while loading."""

    @property
    def batch_transcriber(self) -> Transcriber: ...

    @property
    def diarizer(self) -> Diarizer: ...

    @property
    def speaker_embedder(self) -> SpeakerEmbedder: ...

    @property
    def llm(self) -> ChatClient: ...


def meeting_options(raw: Mapping[str, Any]) -> MeetingOptions:
    """Job options as :class:`MeetingOptions`; ``ValueError`` names a bad one."""
    counts: dict[str, int | None] = {}
    for name in ("num_speakers", "min_speakers", "max_speakers"):
        value = raw.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= SPEAKER_LIMIT
        ):
            raise ValueError(f"{name} must be a whole number from 1 to {SPEAKER_LIMIT}")
        counts[name] = value
    if counts["num_speakers"] is not None and (
        counts["min_speakers"] is not None or counts["max_speakers"] is not None
    ):
        raise ValueError("give either num_speakers or min_speakers/max_speakers, not both")
    low, high = counts["min_speakers"], counts["max_speakers"]
    if low is not None and high is not None and low > high:
        raise ValueError(f"min_speakers ({low}) exceeds max_speakers ({high})")
    names = raw.get("known_speaker_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError("known_speaker_names must be a list of non-empty names")
    if len({n.strip() for n in names}) != len(names) or len(names) > SPEAKER_LIMIT:
        raise ValueError(f"known_speaker_names must be unique, at most {SPEAKER_LIMIT}")
    language = raw.get("language")
    if language is not None and not (isinstance(language, str) and 2 <= len(language) <= 8):
        raise ValueError("language must be a language code such as 'en'")
    return MeetingOptions(
        language=language,
        num_speakers=counts["num_speakers"],
        min_speakers=low,
        max_speakers=high,
        summarize=bool(raw.get("summarize", True)),
    )


def meeting_runner(
    models: MeetingModels,
    files: JobFiles | JobBlobs,
    max_audio_s: float | None = None,
    summary_options: SummaryOptions | None = None,
) -> JobRunner:
    """A :data:`~pipelines.meeting.jobs.JobRunner` for meeting jobs reading uploads
    from ``files`` (a :class:`JobFiles` is the local folder). Safe to cancel: the
    pipeline stops its stages and nothing but the early transcript is written. A
    recording longer than ``max_audio_s`` seconds fails the job with ``audio_too_long``."""
    blobs = JobBlobs.of(files)

    async def run(job: Job, progress: ProgressFn) -> Mapping[str, bytes]:
        try:
            options = meeting_options(job.options)
        except ValueError as exc:
            raise JobError("invalid_options", str(exc)) from exc
        options = replace(options, max_audio_s=max_audio_s)
        progress("loading models", 0.0)
        transcriber = await asyncio.to_thread(lambda: models.batch_transcriber)
        diarizer = await asyncio.to_thread(lambda: models.diarizer)
        names = list(job.options.get("known_speaker_names") or [])

        async def publish(document: TranscriptDocument) -> None:
            await blobs.write_results(job.id, {TRANSCRIPT: _json(document.to_dict())})

        try:
            async with blobs.fetched(job.id, reference_names(len(names))) as folder:
                embedder = None
                if names:
                    embedder = await asyncio.to_thread(lambda: models.speaker_embedder)
                    known = await _known(embedder, folder, names)
                    options = replace(options, known_speakers=known)
                pipeline = MeetingPipeline(
                    transcriber, diarizer, models.llm, embedder=embedder,
                    summary_options=summary_options,
                )
                result = await pipeline.run(folder / "original", options, progress, publish)
        except BlobNotFound as exc:
            if str(exc.args[0]).endswith("/original"):
                raise JobError("upload_missing", "the uploaded file is gone") from exc
            raise JobError("known_speakers_missing", "a known speaker's voice sample is gone") from exc
        except AudioTooLongError as exc:
            raise JobError(
                "audio_too_long", f"the recording is longer than {exc.limit_s / 60:g} minutes"
            ) from exc
        except AudioDecodeError as exc:  # its detail names server paths: keep it out
            raise JobError(
                f"audio_{exc.reason}", f"the audio could not be decoded ({exc.reason})"
            ) from exc
        out = {TRANSCRIPT: _json(result.document.to_dict())}
        if result.summary is not None:
            out[SUMMARY] = _json(result.summary.to_dict())
        return out

    return run


async def _known(
    embedder: SpeakerEmbedder, folder: Path, names: list[str]
) -> tuple[KnownSpeaker, ...]:
    try:
        refs = await asyncio.to_thread(read_references, folder, len(names))
        return await asyncio.to_thread(embed_known, embedder, names, refs)
    except FileNotFoundError as exc:
        raise JobError("known_speakers_missing", "a known speaker's voice sample is gone") from exc
    except ValueError as exc:
        raise JobError("invalid_known_speaker", str(exc)) from exc


def transcript_ready(job: Job) -> bool:
    """Whether ``transcript.json`` is readable: the job succeeded, or it reached the
    summary (running, or failed or cancelled while summarising)."""
    return job.state is JobState.SUCCEEDED or (
        job.stage == SUMMARY_STAGE and job.state is not JobState.QUEUED
    )


def summary_status(job: Job) -> str | None:
    """``pending`` (the transcript is not ready yet), ``running``, ``done``, or
    ``failed`` (the job failed or was cancelled before a summary was stored); None
    when no summary was asked for."""
    if not job.options.get("summarize", True):
        return None
    if job.state is JobState.SUCCEEDED:
        return "done"
    if job.state.final:
        return "failed"
    return "running" if job.state is JobState.RUNNING and job.stage == SUMMARY_STAGE else "pending"


def _json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=1).encode()
