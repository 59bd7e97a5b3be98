"""OpenAI-compatible ``POST /v1/audio/transcriptions``.

Multipart fields as OpenAI takes them: ``file``, ``model`` (accepted, the server's
batch model is used), ``language``, ``prompt``, ``response_format`` (``json``,
``text``, ``srt``, ``vtt``, ``verbose_json``, ``diarized_json``),
``timestamp_granularities[]`` (``word``, ``segment``; for ``verbose_json``) and
``known_speaker_names[]`` with ``known_speaker_references[]`` (data URLs of
voice samples: matching speakers of ``diarized_json`` carry these names),
``stream`` (``true``: server-sent ``transcript.text.delta`` events as segments are
decoded, then ``transcript.text.done``; ``json`` and ``text`` only, see
:mod:`web.meetings.transcription_stream`), ``include[]`` (``logprobs``: one entry per
word with the log of Whisper's word probability; ``json`` or streamed only), and
``temperature``, ``chunking_strategy`` (accepted and ignored). Bodies match the
``openai`` package's ``Transcription``, ``TranscriptionVerbose`` and
``TranscriptionDiarized`` types; ``verbose_json`` segments carry the decoder's own
statistics. ``diarized_json`` runs the meeting pipeline
without a summary; speakers are ``A``, ``B``... in order of first appearance, and a
segment with empty ``text`` is crosstalk (a voice heard over another speaker's words).

The upload goes to a scratch folder under ``data_dir`` (removed afterwards) with
the ``max_upload_mb`` limit; models run in worker threads. Errors use OpenAI's
shape (:mod:`web.api_errors`): 400 bad request or undecodable file, 413 too
large or longer than ``max_audio_minutes`` (checked before models load, from the
container or the packets, and again while decoding), 415 not audio.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from pipelines.meeting.known_speakers import embed_known
from pipelines.meeting.pipeline import MeetingOptions, MeetingPipeline
from pipelines.services import Services
from voice.audio.decode import AudioDecodeError, decode_audio
from voice.stt.base import Segment, Transcription, transcribe_async
from voice.stt.formats import to_srt, to_vtt
from web.api_errors import ApiError
from web.meetings.known_speakers_form import known_speakers
from web.meetings.languages import check_language
from web.meetings.transcription_stream import stream_response, word_logprobs
from web.meetings.upload_checks import decode_error, probe_length
from web.meetings.uploads import ReceivedForm, receive_upload

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("word", "segment")
STREAM_FORMATS = ("json", "text")
INCLUDES = ("logprobs",)


def _services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ApiError(503, "not_ready", "models are still loading")
    return services


def _choice(form: ReceivedForm) -> tuple[str, set[str]]:
    fmt = (form.get("response_format") or "json").strip()
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            "invalid_value",
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
            param="response_format",
        )
    granularities = {g.strip() for g in form.getall("timestamp_granularities")}
    if granularities - set(GRANULARITIES):
        raise ApiError(
            400,
            "invalid_value",
            "timestamp_granularities[] takes word and segment",
            param="timestamp_granularities",
        )
    return fmt, granularities or {"segment"}


def _flag(form: ReceivedForm, name: str) -> bool:
    """A boolean form field as the SDK sends it (``true``/``false``); absent = false."""
    value = (form.get(name) or "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_value", f"{name} must be true or false", param=name)
    return value in ("true", "1")


def _streaming(form: ReceivedForm, fmt: str) -> tuple[bool, bool]:
    """``(stream, logprobs)`` from ``stream`` and ``include[]``, refused where this
    server cannot answer them as asked."""
    stream = _flag(form, "stream")
    if stream and fmt not in STREAM_FORMATS:
        raise ApiError(
            400,
            "unsupported_value",
            f"stream=true answers response_format {' or '.join(STREAM_FORMATS)}, not {fmt}",
            param="stream",
        )
    include = {value.strip() for value in form.getall("include")}
    if include - set(INCLUDES):
        raise ApiError(400, "invalid_value", "include[] takes logprobs", param="include")
    logprobs = "logprobs" in include
    if logprobs and not (fmt == "json" or stream):
        raise ApiError(
            400,
            "unsupported_value",
            "include[]=logprobs needs response_format json (or stream=true)",
            param="include",
        )
    return stream, logprobs


def _usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": round(duration, 3)}


def _verbose_segment(segment: Segment) -> dict[str, Any]:
    """A ``TranscriptionSegment`` with the decoder's statistics (:class:`DecoderStats`)."""
    stats = segment.stats
    if stats is None:
        raise ApiError(
            501, "unsupported", "this transcriber reports no decoder statistics for verbose_json"
        )
    return {
        "id": segment.id,
        "seek": stats.seek,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text,
        "tokens": list(stats.tokens),
        "temperature": stats.temperature,
        "avg_logprob": round(stats.avg_logprob, 6),
        "compression_ratio": round(stats.compression_ratio, 6),
        "no_speech_prob": round(stats.no_speech_prob, 6),
    }


def _verbose(result: Transcription, granularities: set[str]) -> dict[str, Any]:
    """``TranscriptionVerbose``: segments with Whisper's own statistics, words with times."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": result.language,
        "duration": round(result.duration, 3),
        "text": result.text,
        "usage": _usage(result.duration),
    }
    if "segment" in granularities:
        body["segments"] = [_verbose_segment(s) for s in result.segments]
    if "word" in granularities:
        body["words"] = [
            {"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
            for s in result.segments
            for w in s.words
        ]
    return body


def _letter(index: int) -> str:
    """``A``..``Z``, then ``AA``, ``AB``...: OpenAI's labels for unknown speakers."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


async def _diarized(
    services: Services, path: Path, language: str | None, form: ReceivedForm, max_s: float
) -> dict[str, Any]:
    """``TranscriptionDiarized`` from the meeting pipeline (no summary); speakers matching
    a known voice are named, the others lettered. Decoding stops past ``max_s`` seconds."""
    names, samples = known_speakers(form)
    transcriber = await asyncio.to_thread(lambda: services.batch_transcriber)
    diarizer = await asyncio.to_thread(lambda: services.diarizer)
    options = MeetingOptions(language=language, summarize=False, max_audio_s=max_s)
    embedder = None
    if names:
        embedder = await asyncio.to_thread(lambda: services.speaker_embedder)
        try:
            known = await asyncio.to_thread(embed_known, embedder, names, samples)
        except ValueError as exc:
            raise ApiError(
                400, "invalid_value", str(exc), param="known_speaker_references"
            ) from None
        options = replace(options, known_speakers=known)
    pipeline = MeetingPipeline(transcriber, diarizer, None, embedder=embedder)
    result = await pipeline.run(path, options)
    document = result.document
    letters = {
        label: name if name in names else _letter(i)
        for i, (label, name) in enumerate(document.speakers.items())
    }
    segments = [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{s.id}",
            "speaker": letters[s.speaker],
            "start": round(s.start, 3),
            "end": round(s.end, 3),
            "text": s.text,
        }
        for s in document.segments
    ]
    return {
        "task": "transcribe",
        "duration": round(document.duration, 3),
        "text": " ".join(s.text for s in document.segments if s.text.strip()),
        "segments": segments,
        "usage": _usage(document.duration),
    }


async def _transcribe(request: Request, form: ReceivedForm) -> Response:
    if form.file_path is None:
        raise ApiError(400, "missing_file", "send the audio as form field 'file'", param="file")
    fmt, granularities = _choice(form)
    stream, logprobs = _streaming(form, fmt)
    language = check_language(form.get("language"))
    prompt = (form.get("prompt") or "").strip() or None
    services = _services(request)
    max_s = request.app.state.settings.max_audio_minutes * 60
    try:
        await asyncio.to_thread(probe_length, form.file_path, max_s)
    except AudioDecodeError as exc:
        raise decode_error(exc) from None
    if fmt == "diarized_json":
        try:
            return JSONResponse(await _diarized(services, form.file_path, language, form, max_s))
        except AudioDecodeError as exc:
            raise decode_error(exc) from None
    try:
        audio = await asyncio.to_thread(decode_audio, form.file_path, max_s=max_s)
    except AudioDecodeError as exc:  # AudioTooLongError included: 413 audio_too_long
        raise decode_error(exc) from None
    transcriber = await asyncio.to_thread(lambda: services.batch_transcriber)
    if stream:
        return stream_response(
            transcriber, audio, language=language, prompt=prompt, logprobs=logprobs
        )
    words = logprobs or (fmt == "verbose_json" and "word" in granularities)
    result = await transcribe_async(
        transcriber, audio, word_timestamps=words, language=language, prompt=prompt
    )
    if fmt == "json":
        body: dict[str, Any] = {"text": result.text, "usage": _usage(result.duration)}
        if logprobs:
            body["logprobs"] = word_logprobs(result.segments)
        return JSONResponse(body)
    if fmt == "verbose_json":
        return JSONResponse(_verbose(result, granularities))
    if fmt == "text":
        return PlainTextResponse(result.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(to_srt(result), media_type="application/x-subrip")
    return PlainTextResponse(to_vtt(result), media_type="text/vtt")


async def create_transcription(request: Request) -> Response:
    """``POST /v1/audio/transcriptions`` (module docstring)."""
    settings = request.app.state.settings
    scratch_root = settings.data_dir / "scratch"
    scratch = Path(await asyncio.to_thread(_mkdtemp, scratch_root))
    try:
        form = await receive_upload(
            request, scratch / "upload", max_bytes=settings.max_upload_mb << 20
        )
        return await _transcribe(request, form)
    except ApiError as exc:
        return exc.response()
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


def _mkdtemp(root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(dir=root, prefix="transcription-")


def routes() -> list[BaseRoute]:
    """The HTTP routes of this feature, mounted by :func:`web.app.create_app`."""
    return [Route("/v1/audio/transcriptions", create_transcription, methods=["POST"])]
