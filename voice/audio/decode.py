"""Decode uploaded audio or video files to float32 mono PCM with PyAV.

Any container and codec FFmpeg reads is accepted (wav, flac, mp3, m4a/aac,
ogg/opus, webm, mp4/mkv video...); only the first audio track is decoded and
other tracks are skipped without decoding. Channels are averaged to mono and
the result resampled (soxr) to the requested rate in Hz.

Damaged input. FFmpeg decodes a file cut short up to the cut: half of a WAV,
MP3, FLAC, Ogg or WebM file yields about half of its audio, and that is
returned (packets that fail to decode are skipped and logged). Only when no
sample at all can be decoded is :class:`AudioDecodeError` raised: ``truncated``
when the data ends inside the headers (or an MP4's index, written last by
most encoders, is missing), ``corrupt`` when a known format's data is
unreadable, ``unsupported`` for something that is not audio or video (text,
images), ``no_audio`` for a video without an audio track and ``empty`` for an
empty file or a valid file holding no samples.

Length limit. Given ``max_s``, decoding stops as soon as more than ``max_s``
seconds of audio came out and raises :class:`AudioTooLongError` (reason
``too_long``). The check counts decoded samples, not what the container claims
(browser-recorded WebM declares no duration, and a header may lie), so memory
and time are bounded by the limit whatever the file holds.

All functions block; run them in a worker thread from async code.
"""

from __future__ import annotations

import errno
import io
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import av
import av.error
import numpy as np

from voice.audio.resample import StreamResampler
from voice.audio.sniff import SNIFF_BYTES, cut_short, media_family

log = logging.getLogger(__name__)

AudioSource = str | Path | bytes | BinaryIO
DecodeFailure = Literal["empty", "truncated", "corrupt", "unsupported", "no_audio", "too_long"]

_MESSAGES: dict[str, str] = {
    "empty": "the file contains no audio samples",
    "truncated": "the file ends before any audio could be decoded; it looks cut short",
    "corrupt": "the audio data could not be decoded; the file looks damaged",
    "unsupported": "not a recognised audio or video format",
    "no_audio": "the file has no audio track",
    "too_long": "the recording is longer than the limit",
}
_NOT_MEDIA_FORMATS = {"image2", "tty", "gif", "webp_pipe", "apng", "bin"}


class AudioDecodeError(Exception):
    """An upload could not be decoded; ``reason`` says why in one word."""

    def __init__(self, reason: DecodeFailure, detail: str = "") -> None:
        self.reason: DecodeFailure = reason
        message = f"{reason}: {_MESSAGES[reason]}"
        super().__init__(f"{message} ({detail})" if detail else message)


class AudioTooLongError(AudioDecodeError):
    """More than ``limit_s`` seconds of audio were decoded (or measured); decoding stopped there."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        super().__init__("too_long", f"over {limit_s:g} s")


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What :func:`probe` found: ``duration_s`` (None when the container doesn't say),
    the audio track's ``sample_rate`` (Hz), ``channels``, ``codec`` and the ``container`` format."""

    duration_s: float | None
    sample_rate: int
    channels: int
    codec: str
    container: str


@contextmanager
def _binary(source: AudioSource) -> Iterator[BinaryIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, str | Path):
        with open(source, "rb") as file:
            yield file
    else:
        yield source


def _is_eof(exc: BaseException) -> bool:
    return isinstance(exc, EOFError) or getattr(exc, "errno", None) == errno.EIO


def _open_failure(
    exc: Exception, family: str | None, file: BinaryIO, start: int
) -> AudioDecodeError:
    """Why FFmpeg could not open ``file`` (whose first bytes look like ``family``)."""
    if family is None:
        if _is_eof(exc) and not file.seekable():
            return AudioDecodeError("truncated", "the stream ended while probing its format")
        return AudioDecodeError("unsupported", str(exc))
    if _is_eof(exc) or cut_short(family, file, start):
        return AudioDecodeError("truncated", f"{family} data ends early")
    return AudioDecodeError("corrupt", f"{family}: {exc}")


@contextmanager
def _open_audio(
    source: AudioSource,
) -> Iterator[tuple[av.container.InputContainer, av.AudioStream]]:
    """Open ``source`` and its first audio stream, or raise :class:`AudioDecodeError`."""
    with _binary(source) as file:
        head, family, start = b"", None, 0
        if file.seekable():
            start = file.tell()
            head = file.read(SNIFF_BYTES)
            file.seek(start)
            if not head:
                raise AudioDecodeError("empty", "0 bytes")
            family = media_family(head)
        try:
            # tags are untrusted bytes: undecodable ones are replaced, never an exception
            container = av.open(file, "r", metadata_errors="replace")
        except av.error.FFmpegError as exc:
            raise _open_failure(exc, family, file, start) from exc
        with container:
            if not container.streams.audio:
                name = container.format.name
                if family is None and (name in _NOT_MEDIA_FORMATS or name.endswith("_pipe")):
                    raise AudioDecodeError("unsupported", f"detected {name}")
                raise AudioDecodeError("no_audio", f"{name} container")
            yield container, container.streams.audio[0]


def _claimed_duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream, problems: list[Exception]
) -> Iterator[av.AudioFrame]:
    """Decoded frames. A packet that fails to decode is skipped; a demuxer error ends
    the stream (after flushing the decoder). Both are appended to ``problems``."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:  # unreadable from here on: flush what we have
            problems.append(exc)
            with suppress(av.error.FFmpegError):
                yield from stream.codec_context.decode(None)
            return
        try:
            yield from packet.decode()
        except av.error.FFmpegError as exc:
            problems.append(exc)


def _mono_pcm(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    rate: int,
    problems: list[Exception],
) -> Iterator[np.ndarray]:
    """float32 mono pieces at ``rate`` Hz, in order, of whatever length the decoder gives.
    A frame the converter refuses (a damaged file's nonsense layout or rate) is
    skipped and appended to ``problems``; the next frame gets a fresh converter."""
    to_float = av.AudioResampler(format="fltp")  # keeps layout and rate
    resampler: StreamResampler | None = None
    for frame in _frames(container, stream, problems):
        try:
            planars = to_float.resample(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            problems.append(exc)
            to_float = av.AudioResampler(format="fltp")
            continue
        for planar in planars:
            mono = planar.to_ndarray().mean(axis=0, dtype=np.float32)
            if resampler is None or resampler.src_rate != planar.sample_rate:
                if resampler is not None:
                    yield resampler.flush()
                resampler = StreamResampler(planar.sample_rate, rate, np.float32)
            yield resampler.process(mono)
    if resampler is not None:
        yield resampler.flush()


def iter_decode(
    source: AudioSource,
    sample_rate: int = 16000,
    chunk_s: float = 30.0,
    *,
    max_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode lazily into float32 mono chunks of ``chunk_s`` seconds at ``sample_rate`` Hz.

    Every chunk but the last has exactly ``round(chunk_s * sample_rate)`` samples;
    memory stays bounded by about one chunk whatever the file's length. Errors
    (:class:`AudioDecodeError`) are raised from the first ``next()``. A path is
    opened here and closed when the generator finishes or is closed (``close()``
    it to stop early); a file object is read from its current position and left
    open. A file that decodes only in part (cut short, damaged packets) yields
    what decoded and logs a warning. With ``max_s``, :class:`AudioTooLongError` is
    raised once more than ``max_s`` seconds came out (chunks before it were yielded).
    """
    if sample_rate <= 0 or chunk_s <= 0:
        raise ValueError("sample_rate and chunk_s must be positive")
    if max_s is not None and max_s <= 0:
        raise ValueError("max_s must be positive")
    chunk = max(1, round(chunk_s * sample_rate))
    limit = None if max_s is None else math.floor(max_s * sample_rate)
    pending: list[np.ndarray] = []
    held = 0
    total = 0
    problems: list[Exception] = []
    with _open_audio(source) as (container, stream):
        for piece in _mono_pcm(container, stream, sample_rate, problems):
            pending.append(piece)
            held += len(piece)
            if limit is not None and total + held > limit:
                raise AudioTooLongError(max_s or 0.0)
            while held >= chunk:
                joined = np.concatenate(pending)
                total += chunk
                yield joined[:chunk]
                pending, held = [joined[chunk:]], held - chunk
        if problems:
            log.warning("%d decode error(s), the last: %s", len(problems), problems[-1])
            if total + held == 0:
                reason: DecodeFailure = "truncated" if _is_eof(problems[-1]) else "corrupt"
                raise AudioDecodeError(reason, str(problems[-1])) from problems[-1]
        if total + held == 0:
            if _claimed_duration_s(container, stream) > 0:
                raise AudioDecodeError("truncated", "the header announces audio that is missing")
            raise AudioDecodeError("empty", f"{container.format.name} with 0 samples")
        if held:
            yield np.concatenate(pending)


def decode_audio(
    source: AudioSource, sample_rate: int = 16000, *, max_s: float | None = None
) -> np.ndarray:
    """Decode a whole file to float32 mono samples at ``sample_rate`` Hz (see module
    notes); :class:`AudioTooLongError` past ``max_s`` seconds, before holding more."""
    return np.concatenate(list(iter_decode(source, sample_rate, chunk_s=60.0, max_s=max_s)))


def probe(source: AudioSource) -> AudioInfo:
    """Describe the first audio track without decoding it; raises :class:`AudioDecodeError`."""
    with _open_audio(source) as (container, stream):
        duration = _claimed_duration_s(container, stream)
        return AudioInfo(
            duration_s=duration if duration > 0 else None,
            sample_rate=stream.codec_context.sample_rate,
            channels=stream.codec_context.channels,
            codec=stream.codec_context.name,
            container=container.format.name,
        )


def measure_duration_s(source: AudioSource, max_s: float | None = None) -> float:
    """The first audio track's length in seconds from its packets' timestamps, read
    without decoding (fast: for a file whose container declares no duration). Raises
    :class:`AudioTooLongError` as soon as a packet ends past ``max_s`` seconds, and
    :class:`AudioDecodeError` when the file cannot be opened. Packets that are
    unreadable end the measurement. Blocking.

    A file can still decode to more audio than its timestamps say; decoding with
    ``max_s`` (:func:`iter_decode`) is the check that cannot be fooled.
    """
    with _open_audio(source) as (container, stream):
        time_base = stream.time_base
        first: int | None = None
        end = 0
        try:
            for packet in container.demux(stream):
                if packet.pts is None or time_base is None:
                    continue
                first = packet.pts if first is None else min(first, packet.pts)
                end = max(end, packet.pts + (packet.duration or 0))
                if max_s is not None and float((end - first) * time_base) > max_s:
                    raise AudioTooLongError(max_s)
        except av.error.FFmpegError as exc:
            log.warning("measuring stopped at an unreadable packet: %s", exc)
        return 0.0 if first is None or time_base is None else float((end - first) * time_base)
