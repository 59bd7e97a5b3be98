"""Realtime session metrics, read from the events a session sends.

A :class:`SessionObserver` taps a session's outbound events (the session's
``tap``: every event in full, before the client's view drops extensions it did
not ask for) and turns them into numbers, without touching the session itself:

* ``input_audio_buffer.committed``: a user turn;
* ``voice.latency``: the turn's latency waterfall (ms from the end of speech);
* ``response.done``: responses by status, failed ones also by cause (the error's
  code); with status ``cancelled`` and reason
  ``turn_detected`` (a barge-in) also the barge-in figures, measured on this
  side from ``input_audio_buffer.speech_started`` during the response;
* ``error``: errors by code.

With ``log_content`` it also logs what the user and the agent said, to the
``web.content`` logger (nothing else in the server logs text). Pure logic plus
a clock; safe to call from the session's tasks (one event loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from web.operations.logs import CONTENT_LOGGER

if TYPE_CHECKING:
    from web.operations.metrics import Metrics

content_log = logging.getLogger(CONTENT_LOGGER)


class SessionObserver:
    """Metrics of one realtime session on ``transport`` (``ws`` or ``webrtc``).

    ``metrics`` is the app's :class:`~web.operations.metrics.Metrics`; ``clock`` returns seconds.
    """

    def __init__(
        self,
        metrics: Metrics,
        transport: str,
        *,
        log_content: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._m = metrics
        self.transport = transport
        self._log_content = log_content
        self._clock = clock
        self._in_response = False
        self._speech_at: float | None = None
        self._last_audio_at: float | None = None
        self._closed = False
        metrics.sessions.labels(transport).inc()
        if transport == "ws":  # WebRTC calls are counted from the call registry at scrape time
            metrics.sessions_active.labels(transport).inc()

    def closed(self) -> None:
        """The session ended (idempotent)."""
        if not self._closed and self.transport == "ws":
            self._m.sessions_active.labels(self.transport).dec()
        self._closed = True

    def observe(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            self._last_audio_at = self._clock()
        elif kind == "response.created":
            self._in_response, self._speech_at, self._last_audio_at = True, None, None
        elif kind == "input_audio_buffer.speech_started":
            if self._in_response and self._speech_at is None:
                self._speech_at = self._clock()
        elif kind == "input_audio_buffer.committed":
            self._m.user_turns.labels(self.transport).inc()
        elif kind == "response.done":
            self._response_done(event.get("response") or {})
        elif kind == "voice.latency":
            self._latency(event.get("latency_ms") or {})
        elif kind == "error":
            code = (event.get("error") or {}).get("code") or "unknown"
            self._m.realtime_errors.labels(str(code)).inc()
        elif self._log_content:
            self._content(kind, event)

    def _response_done(self, response: dict[str, Any]) -> None:
        status = str(response.get("status") or "unknown")
        self._m.responses.labels(status).inc()
        details = response.get("status_details") or {}
        reason = details.get("reason")
        if status == "failed":
            error = details.get("error") or {}
            cause = error.get("code") or error.get("type") or "unknown"
            self._m.failed_responses.labels(str(cause)).inc()
        if status == "cancelled" and reason == "turn_detected" and self._speech_at is not None:
            now = self._clock()
            last = self._last_audio_at
            self._m.barge_in_stop.observe(max(0.0, last - self._speech_at) if last else 0.0)
            self._m.barge_in_cancel.observe(max(0.0, now - self._speech_at))
        self._in_response, self._speech_at, self._last_audio_at = False, None, None

    def _latency(self, latency_ms: dict[str, Any]) -> None:
        for stage, ms in latency_ms.items():
            if isinstance(ms, int | float):
                self._m.turn_latency.labels(stage).observe(max(0.0, ms / 1000.0))
        v2v = latency_ms.get("first_audio_sent")
        if isinstance(v2v, int | float):
            self._m.voice_to_voice.observe(max(0.0, v2v / 1000.0))

    def _content(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "conversation.item.input_audio_transcription.completed":
            content_log.info("user said: %s", event.get("transcript"))
        elif kind in ("response.output_audio_transcript.done", "response.output_text.done"):
            content_log.info("agent said: %s", event.get("transcript") or event.get("text"))
