"""The observability pieces without a server: the realtime event observer on a scripted
timeline, request ids, error codes, the log filter and formatter, the LLM probe's cache."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from prometheus_client import generate_latest

from voice.settings import load_settings
from web.operations.health import LlmProbe
from web.operations.http_middleware import error_code, request_id_from
from web.operations.logs import CONTENT_LOGGER, log_context, make_handler
from web.operations.metrics import Metrics
from web.operations.metrics_realtime import SessionObserver


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_observer_measures_a_barge_in_from_the_event_timeline() -> None:
    metrics, clock = Metrics(), FakeClock()
    observer = SessionObserver(metrics, "ws", clock=clock)
    for event in (
        {"type": "input_audio_buffer.committed"},
        {"type": "response.created", "response": {"id": "r1"}},
        {"type": "voice.latency", "latency_ms": {"speech_stopped": 500.0, "stt_final": 700.0,
                                                 "llm_first_token": None,
                                                 "first_audio_sent": 1500.0}},
        {"type": "response.output_audio.delta"},
    ):
        observer.observe(event)
    clock.now = 101.0
    observer.observe({"type": "input_audio_buffer.speech_started"})  # the user barges in
    clock.now = 101.2
    observer.observe({"type": "response.output_audio.delta"})  # 200 ms more audio went out
    clock.now = 101.5
    observer.observe({"type": "response.done", "response": {
        "status": "cancelled", "status_details": {"reason": "turn_detected"}}})
    observer.observe({"type": "error", "error": {"code": "invalid_json"}})
    observer.closed()
    observer.closed()

    assert sample(metrics, "voice_realtime_sessions_total", transport="ws") == 1
    assert sample(metrics, "voice_realtime_sessions_active", transport="ws") == 0
    assert sample(metrics, "voice_realtime_user_turns_total", transport="ws") == 1
    assert sample(metrics, "voice_realtime_responses_total", status="cancelled") == 1
    assert sample(metrics, "voice_realtime_voice_to_voice_seconds_sum") == 1.5
    assert sample(metrics, "voice_realtime_turn_latency_seconds_count", stage="stt_final") == 1
    assert sample(metrics, "voice_realtime_turn_latency_seconds_count", stage="llm_first_token") == 0
    assert abs(sample(metrics, "voice_realtime_barge_in_stop_seconds_sum") - 0.2) < 1e-9
    assert abs(sample(metrics, "voice_realtime_barge_in_cancel_seconds_sum") - 0.5) < 1e-9
    assert sample(metrics, "voice_realtime_errors_total", code="invalid_json") == 1


def test_speech_outside_a_response_is_not_a_barge_in() -> None:
    metrics = Metrics()
    observer = SessionObserver(metrics, "webrtc", clock=FakeClock())
    observer.observe({"type": "input_audio_buffer.speech_started"})
    observer.observe({"type": "response.created"})
    observer.observe({"type": "response.done", "response": {
        "status": "cancelled", "status_details": {"reason": "turn_detected"}}})
    assert sample(metrics, "voice_realtime_barge_in_stop_seconds_count") == 0
    assert sample(metrics, "voice_realtime_sessions_active", transport="webrtc") == 0


def test_two_apps_have_separate_registries() -> None:
    one, two = Metrics(), Metrics()
    one.stt_done("batch", 10.0, 1.0)
    assert sample(one, "voice_stt_real_time_factor_sum", use="batch") == 0.1
    assert sample(two, "voice_stt_real_time_factor_count", use="batch") == 0
    assert b"voice_stt_real_time_factor" in generate_latest(one.registry)


def test_request_ids_are_kept_only_when_sane() -> None:
    def scope(value: bytes) -> dict[str, object]:
        return {"headers": [(b"x-request-id", value)]}

    assert request_id_from(scope(b"abc-123.x:y_z")) == "abc-123.x:y_z"
    for bad in (b"", b"a b", b"x" * 129, b"\xff\xfe", b"id\nInjected: 1"):
        made = request_id_from(scope(bad))
        assert made != bad.decode("latin-1") and len(made) == 32


def test_error_codes_come_from_openai_style_bodies() -> None:
    assert error_code(b'{"error": {"code": "meeting_not_found"}}') == "meeting_not_found"
    for body in (b"", b"not json", b"[]", b'{"error": "x"}', b'{"error": {"code": null}}'):
        assert error_code(body) == "unknown"


def test_json_logs_carry_ids_and_drop_content_unless_allowed() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.ops.units")
    content = logging.getLogger(CONTENT_LOGGER)
    body_logger = logging.getLogger("openai._base_client")
    handler = make_handler(load_settings(log_format="json", log_content=False), stream)
    for lg in (logger, content, body_logger):
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False
    try:
        with log_context(session_id="sess_1"):
            logger.info("opened")
            content.info("user said: %s", "my secret words")
            body_logger.debug("Request options: %s", {"json_data": "my secret words"})
        with log_context(job_id="job_1"):
            logger.warning("late")
    finally:
        for lg in (logger, content, body_logger):
            lg.removeHandler(handler)
            lg.propagate = True
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["message"], r.get("session_id"), r.get("job_id")) for r in lines] == [
        ("opened", "sess_1", None), ("late", None, "job_1")]
    assert "request_id" not in lines[0]
    assert "secret" not in stream.getvalue()


def test_content_appears_only_with_log_content() -> None:
    stream = io.StringIO()
    content = logging.getLogger(CONTENT_LOGGER)
    handler = make_handler(load_settings(log_format="text", log_content=True), stream)
    content.addHandler(handler)
    content.setLevel(logging.INFO)
    try:
        with log_context(request_id="r1"):
            content.info("user said: %s", "hello world")
    finally:
        content.removeHandler(handler)
    assert "hello world" in stream.getvalue() and "request_id=r1" in stream.getvalue()


def test_the_llm_probe_is_cached_and_reports_an_unreachable_endpoint() -> None:
    clock = FakeClock()
    probe = LlmProbe("http://127.0.0.1:9/v1", "k", timeout_s=1.0, cache_s=5.0, clock=clock)

    async def run() -> list[bool]:
        first = await probe.check()
        assert not first.ok and "127.0.0.1:9/v1/models" in (first.reason or "")
        second = await probe.check()
        clock.now += 6
        third = await probe.check()
        return [first is second, second is third]

    assert asyncio.run(run()) == [True, False]
