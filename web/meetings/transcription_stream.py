"""``POST /v1/audio/transcriptions`` with ``stream=true``: server-sent events as OpenAI sends them.

Each Whisper segment becomes one ``transcript.text.delta`` event as soon as its window is
decoded (the segments of one 30 s window arrive together), then one
``transcript.text.done`` carries the whole text; the deltas joined give exactly that text.
With ``include[]=logprobs`` every delta carries its words' log-probabilities and the done
event all of them (:func:`word_logprobs`). Events are ``data: <json>`` lines, read by the
``openai`` SDK's ``audio.transcriptions.create(..., stream=True)``; a failure after the
stream started is an ``{"error": ...}`` event, which the SDK raises as ``APIError``.

A client that goes away stops the decoding at the next segment (the worker thread is
told through the segment sink), so an abandoned stream does not keep a core busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

import numpy as np
from starlette.responses import StreamingResponse

from voice.stt.base import Segment, Transcriber, transcribe_async

log = logging.getLogger(__name__)

_MIN_PROBABILITY = 1e-12
"""Floor under a word probability before its logarithm (a 0 would be -inf, not JSON)."""


def word_logprobs(segments: Iterable[Segment]) -> list[dict[str, Any]]:
    """OpenAI's ``logprobs`` entries, one per recognised word: ``token`` the word,
    ``bytes`` its UTF-8 bytes, ``logprob`` the natural log of Whisper's word probability
    (the mean probability of the word's tokens, from faster-whisper's alignment)."""
    return [
        {
            "token": word.text,
            "bytes": list(word.text.encode()),
            "logprob": round(math.log(max(word.probability, _MIN_PROBABILITY)), 6),
        }
        for segment in segments
        for word in segment.words
    ]


def _event(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


class _ClientGone(Exception):
    """Raised in the worker thread by the segment sink: the stream was abandoned."""


async def transcription_events(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    language: str | None,
    prompt: str | None,
    logprobs: bool,
) -> AsyncIterator[bytes]:
    """The SSE body: a delta per non-empty segment as it is decoded, then done.

    Safe to cancel or close at any await: the transcription is cancelled
    (:func:`transcribe_async` returns at once) and its thread stops at the next segment.
    """
    loop = asyncio.get_running_loop()
    decoded: asyncio.Queue[Segment | None] = asyncio.Queue()
    gone = threading.Event()

    def sink(segment: Segment) -> None:  # worker thread
        if gone.is_set():
            raise _ClientGone
        loop.call_soon_threadsafe(decoded.put_nowait, segment)

    task = asyncio.ensure_future(
        transcribe_async(
            transcriber, audio, word_timestamps=logprobs, language=language,
            prompt=prompt, on_segment=sink,
        )
    )
    # After every segment: the thread schedules each put before it returns.
    task.add_done_callback(lambda _: decoded.put_nowait(None))
    try:
        spoken = 0
        while (segment := await decoded.get()) is not None:
            if not segment.text:
                continue
            delta: dict[str, Any] = {
                "type": "transcript.text.delta",
                "delta": segment.text if spoken == 0 else " " + segment.text,
            }
            if logprobs:
                delta["logprobs"] = word_logprobs([segment])
            spoken += 1
            yield _event(delta)
        try:
            result = task.result()
        except Exception:
            log.exception("streamed transcription failed")
            yield _event({"error": {"type": "server_error", "code": "transcription_failed",
                                    "message": "the transcription failed", "param": None}})
            return
        done: dict[str, Any] = {"type": "transcript.text.done", "text": result.text}
        if logprobs:
            done["logprobs"] = word_logprobs(result.segments)
        yield _event(done)
    finally:
        gone.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def stream_response(
    transcriber: Transcriber,
    audio: np.ndarray,
    *,
    language: str | None,
    prompt: str | None,
    logprobs: bool,
) -> StreamingResponse:
    """The ``text/event-stream`` response of :func:`transcription_events`."""
    body = transcription_events(
        transcriber, audio, language=language, prompt=prompt, logprobs=logprobs
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
