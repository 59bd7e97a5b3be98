"""``VOICE_MAX_AUDIO_MINUTES`` is enforced while decoding, on every path, with memory
bounded by the limit: a long Opus WebM that declares no duration (as browsers
record it) is refused with ``413 audio_too_long`` by plain and diarized
transcription and by the meeting upload, and the meeting job's decoder stops at
the limit too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.meeting.pipeline import PLANNING_VAD
from pipelines.meeting.stages import decode_with_vad
from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.conftest import data_path
from tests.long_webm import long_webm
from tests.servers import ServerThread
from voice.audio.decode import (
    AudioTooLongError,
    decode_audio,
    iter_decode,
    measure_duration_s,
    probe,
)
from voice.vad import make_classifier

JFK = "openai-whisper/jfk.wav"  # 11 s
LIMIT_MINUTES = 2.0
HOUR_MB = 3.5
"""An hour of the test's Opus noise is about 2 MB; decoded to 16 kHz float32 it is
230 MB, and the decoder's 48 kHz frames pass through on the way."""
MEMORY_BOUND_MB = 150
"""Loose: decoding the whole hour cost about 450 MB here; the 2-minute limit ~10 MB."""


@pytest.fixture(scope="module")
def hour_webm() -> bytes:
    data = long_webm(60)
    assert len(data) < HOUR_MB * (1 << 20)
    return data


def test_the_webm_declares_no_duration_but_holds_an_hour(hour_webm: bytes) -> None:
    assert probe(hour_webm).duration_s is None
    assert measure_duration_s(hour_webm) == pytest.approx(3600, abs=1)
    with pytest.raises(AudioTooLongError) as raised:
        measure_duration_s(hour_webm, max_s=300)
    assert raised.value.limit_s == 300 and raised.value.reason == "too_long"


def test_decoding_stops_once_the_limit_is_passed(hour_webm: bytes) -> None:
    chunks = iter_decode(hour_webm, 16000, chunk_s=30.0, max_s=95.0)
    seen = 0
    with pytest.raises(AudioTooLongError):
        for chunk in chunks:
            seen += len(chunk)
    assert seen == 3 * 30 * 16000  # three whole chunks, then the limit inside the fourth
    jfk = data_path(JFK)
    assert len(decode_audio(jfk, max_s=12.0)) == pytest.approx(11 * 16000, abs=200)
    with pytest.raises(AudioTooLongError):
        decode_audio(jfk, max_s=10.0)


def test_the_meeting_decoder_stops_at_the_limit() -> None:
    stop = threading.Event()
    jfk = data_path(JFK)
    decoded = decode_with_vad(
        jfk, make_classifier("silero"), PLANNING_VAD, lambda f: None, stop, 12.0
    )
    assert decoded.duration == pytest.approx(11.0, abs=0.05) and decoded.speech
    with pytest.raises(AudioTooLongError):
        decode_with_vad(jfk, make_classifier("silero"), PLANNING_VAD, lambda f: None, stop, 10.0)


class PeakRss:
    """Samples this process's resident memory (the test server runs in it) every few
    ms while inside; ``growth_mb`` is the peak above the level on entry."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._base = self._peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * 4096

    def _run(self) -> None:
        while not self._stop.wait(0.003):
            self._peak = max(self._peak, self._rss())

    def __enter__(self) -> PeakRss:
        self._base = self._peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self._peak - self._base) / (1 << 20)


@pytest.fixture(scope="module")
def short_limit(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    settings = api_settings(tmp_path_factory.mktemp("short-limit"), max_audio_minutes=LIMIT_MINUTES)
    with serve(settings, services) as running:
        yield running


def _post(server: ServerThread, path: str, data: bytes, **fields: str) -> tuple[int, dict]:
    response = request(
        "POST",
        f"{server.http_url}{path}",
        data={"model": "whisper-1", "summarize": "false", **fields},
        files={"file": ("recording.webm", data, "audio/webm")},
    )
    return response.status_code, response.json()


def test_an_hour_without_duration_is_refused_under_a_memory_bound(
    short_limit: ServerThread, hour_webm: bytes
) -> None:
    with PeakRss() as memory:
        status, body = _post(short_limit, "/v1/audio/transcriptions", hour_webm)
    assert status == 413, body
    assert body["error"]["code"] == "audio_too_long" and body["error"]["param"] == "file"
    assert "2 minutes" in body["error"]["message"]
    assert memory.growth_mb < MEMORY_BOUND_MB, memory.growth_mb

    with PeakRss() as memory:
        status, body = _post(
            short_limit, "/v1/audio/transcriptions", hour_webm, response_format="diarized_json"
        )
    assert (status, body["error"]["code"]) == (413, "audio_too_long"), body
    assert memory.growth_mb < MEMORY_BOUND_MB, memory.growth_mb

    status, body = _post(short_limit, "/v1/meetings", hour_webm)
    assert (status, body["error"]["code"]) == (413, "audio_too_long"), body
    listed = request("GET", f"{short_limit.http_url}/v1/meetings").json()
    assert listed["data"] == []


def test_a_short_recording_without_duration_is_accepted_with_its_measured_length(
    short_limit: ServerThread,
) -> None:
    status, body = _post(short_limit, "/v1/meetings", long_webm(1.5))
    assert status == 202, body
    assert body["duration"] == pytest.approx(90, abs=1)
    request("DELETE", f"{short_limit.http_url}/v1/meetings/{body['id']}")
