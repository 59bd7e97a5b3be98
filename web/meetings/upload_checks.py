"""Checks on a received upload before it is used: can it be decoded, what is it.

:func:`inspect_upload` blocks (run it in a worker thread); :func:`decode_error`
maps :class:`~voice.audio.decode.AudioDecodeError` to the HTTP error both APIs use.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from voice.audio.decode import (
    AudioDecodeError,
    AudioInfo,
    AudioTooLongError,
    iter_decode,
    measure_duration_s,
    probe,
)
from web.api_errors import ApiError

_DECODE_ERRORS = {
    "unsupported": (415, "unsupported_format", "it is not a recognised audio or video format"),
    "no_audio": (400, "no_audio_track", "it has no audio track"),
    "empty": (400, "empty_file", "it contains no audio"),
    "truncated": (400, "truncated_file", "it ends before any audio; it looks cut short"),
    "corrupt": (400, "corrupt_file", "its audio data could not be decoded; it looks damaged"),
}


def decode_error(exc: AudioDecodeError) -> ApiError:
    """The HTTP error for an upload that cannot be decoded: 415 when it is not audio
    or video at all, 400 when it is empty, cut short, damaged or has no audio track,
    413 ``audio_too_long`` past the length limit. The message does not repeat the
    decoder's detail (it names server paths)."""
    if isinstance(exc, AudioTooLongError):
        return too_long(exc.limit_s / 60)
    status, code, why = _DECODE_ERRORS[exc.reason]
    return ApiError(status, code, f"cannot use this file: {why}", param="file")


def too_long(max_minutes: float) -> ApiError:
    """413 ``audio_too_long``: the recording is longer than ``max_minutes``."""
    return ApiError(
        413,
        "audio_too_long",
        f"the recording is longer than the limit of {max_minutes:g} minutes",
        param="file",
    )


def probe_length(path: Path, max_s: float) -> AudioInfo:
    """Probe ``path``; when its container declares no duration, measure it from the
    packets' timestamps (no decoding, stops past ``max_s`` seconds). Blocking; raises
    :class:`AudioDecodeError`, :class:`AudioTooLongError` when longer than ``max_s``.
    Cheap, so a long file is refused before models load; decoding with the limit is
    the check a file with lying timestamps cannot pass."""
    info = probe(path)
    if info.duration_s is None:
        info = replace(info, duration_s=measure_duration_s(path, max_s) or None)
    elif info.duration_s > max_s:
        raise AudioTooLongError(max_s)
    return info


def inspect_upload(path: Path, max_s: float, check_s: float = 2.0) -> AudioInfo:
    """:func:`probe_length`, then decode the first ``check_s`` seconds, so that a file
    whose header is fine but whose audio is not fails here rather than in a job.
    Blocking; raises :class:`AudioDecodeError`."""
    info = probe_length(path, max_s)
    chunks = iter_decode(path, chunk_s=check_s)
    try:
        next(chunks)
    finally:
        close = getattr(chunks, "close", None)  # a generator: release the file now
        if close is not None:
            close()
    return info


_MEDIA_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "aac": "audio/aac",
    "matroska,webm": "audio/webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "audio/mp4",
}


def media_type(info: AudioInfo, claimed: str | None) -> str:
    """The type to serve the upload with: from the detected container, else the
    client's claim when it names audio or video, else ``application/octet-stream``."""
    if info.container in _MEDIA_TYPES:
        return _MEDIA_TYPES[info.container]
    if claimed and claimed.split("/")[0] in ("audio", "video") and claimed.isascii():
        return claimed.split(";")[0].strip()
    return "application/octet-stream"


def display_filename(raw: str | None) -> str | None:
    """The client's filename cut to its last path component, without control
    characters, at most 200 characters; for display only."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:200] or None
