"""Prometheus metrics of one app, served at ``GET /metrics``.

Every metric lives in a registry the :class:`Metrics` object owns (not the
process-wide default), so several apps in one process (tests) do not collide.
Where the numbers come from:

* realtime sessions, turns, latencies, barge-ins and ``error`` events: the
  events a session sends, seen by :mod:`web.operations.metrics_realtime`;
* STT real-time factor: the shared models' timings
  (:attr:`~pipelines.services.Services.stt_watchers`, :meth:`Metrics.stt_done`);
* meeting jobs: the job snapshots the queue publishes (:meth:`Metrics.job_update`)
  and, at each scrape, the count of queued and running jobs in the store;
* HTTP requests and error responses: :mod:`web.operations.http_middleware`;
* process (RSS, open fds, CPU), garbage collector, and the event loop's task count.

Times are seconds, as Prometheus expects.
"""

from __future__ import annotations

import asyncio

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from pipelines.meeting.store import Job, JobState

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)
"""Seconds; from a fast barge-in stop to a slow voice-to-voice turn on a small CPU."""
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
JOB_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600, 7200)


class Metrics:
    """The app's instruments. Thread-safe (prometheus-client locks internally)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        process_collector.ProcessCollector(registry=r)
        platform_collector.PlatformCollector(registry=r)
        gc_collector.GCCollector(registry=r)

        self.sessions_active = Gauge(
            "voice_realtime_sessions_active", "Realtime sessions open now.", ["transport"],
            registry=r,
        )
        self.sessions = Counter(
            "voice_realtime_sessions", "Realtime sessions opened.", ["transport"], registry=r
        )
        self.user_turns = Counter(
            "voice_realtime_user_turns", "User audio turns committed.", ["transport"], registry=r
        )
        self.responses = Counter(
            "voice_realtime_responses", "Responses ended, by final status.", ["status"],
            registry=r,
        )
        self.failed_responses = Counter(
            "voice_realtime_failed_responses",
            "Responses that ended failed, by cause (the error code: cut_off, timeout, "
            "unavailable, bad_request, bad_response, or the error type).",
            ["cause"], registry=r,
        )
        self.turn_latency = Histogram(
            "voice_realtime_turn_latency_seconds",
            "Time from the end of the user's speech to each stage of the answer "
            "(speech_stopped, stt_final, llm_first_token, tts_first_audio, first_audio_sent).",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.voice_to_voice = Histogram(
            "voice_realtime_voice_to_voice_seconds",
            "End of the user's speech to the first agent audio sent.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.barge_in_stop = Histogram(
            "voice_realtime_barge_in_stop_seconds",
            "Barge-ins: confirmed user speech (speech_started) to the last agent audio sent "
            "(0 when the audio was already held).",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.barge_in_cancel = Histogram(
            "voice_realtime_barge_in_cancel_seconds",
            "Barge-ins: confirmed user speech to the interrupted response's response.done.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.realtime_errors = Counter(
            "voice_realtime_errors", "Realtime error events sent, by code.", ["code"], registry=r
        )
        self.stt_rtf = Histogram(
            "voice_stt_real_time_factor",
            "Transcription compute time divided by audio length, per call.",
            ["use"], buckets=RTF_BUCKETS, registry=r,
        )
        self.stt_audio = Counter(
            "voice_stt_audio_seconds", "Seconds of audio transcribed.", ["use"], registry=r
        )
        self.jobs_in_state = Gauge(
            "voice_meeting_jobs", "Meeting jobs queued or running now.", ["state"], registry=r
        )
        self.jobs_finished = Counter(
            "voice_meeting_jobs_finished", "Meeting jobs ended, by outcome.", ["outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "voice_meeting_job_duration_seconds",
            "Meeting job processing time (start to end; queue wait excluded), by outcome.",
            ["outcome"], buckets=JOB_BUCKETS, registry=r,
        )
        self.http_requests = Counter(
            "voice_http_requests", "HTTP requests answered.", ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "voice_http_request_duration_seconds", "HTTP request handling time.", ["route"],
            registry=r,
        )
        self.http_errors = Counter(
            "voice_http_errors", "HTTP error responses, by status and error code.",
            ["status", "code"], registry=r,
        )
        self.tasks = Gauge("voice_asyncio_tasks", "Tasks on the server's event loop.", registry=r)

    # --- hooks ------------------------------------------------------------------
    def stt_done(self, use: str, audio_s: float, compute_s: float) -> None:
        """A transcription of ``audio_s`` seconds took ``compute_s`` (a Services STT watcher)."""
        if audio_s > 0:
            self.stt_rtf.labels(use).observe(compute_s / audio_s)
            self.stt_audio.labels(use).inc(audio_s)

    def job_update(self, job_id: str, job: Job | None) -> None:
        """A queue published a snapshot: count and time jobs that reached a final state."""
        if job is None or not job.state.final or job.finished_at is None:
            return
        outcome = str(job.state)
        self.jobs_finished.labels(outcome).inc()
        if job.started_at is not None:
            self.job_duration.labels(outcome).observe(max(0.0, job.finished_at - job.started_at))

    async def refresh(self, app: Starlette) -> None:
        """Update the gauges read at scrape time (job counts, WebRTC calls, tasks)."""
        self.tasks.set(len(asyncio.all_tasks()))
        calls = getattr(app.state, "webrtc_calls", None)
        self.sessions_active.labels("webrtc").set(len(calls) if calls is not None else 0)
        meetings = getattr(app.state, "meetings", None)
        if meetings is not None:
            for state in (JobState.QUEUED, JobState.RUNNING):
                jobs = await meetings.store.list(states=[state], limit=100_000)
                self.jobs_in_state.labels(str(state)).set(len(jobs))


def metrics_of(app: Starlette) -> Metrics | None:
    """The app's :class:`Metrics` (None when observability is not installed)."""
    return getattr(app.state, "metrics", None)


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format."""
    metrics: Metrics = request.app.state.metrics
    await metrics.refresh(request.app)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
