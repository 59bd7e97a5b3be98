"""``POST /v1/audio/transcriptions`` through the ``openai`` SDK against the real
server (Whisper tiny.en, the real diarizer), on real recordings: every response
format, streamed events, log-probabilities and the decoder's statistics."""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest
from openai import APIStatusError, BadRequestError, OpenAI
from openai.types.audio import (
    TranscriptionDiarized,
    TranscriptionStreamEvent,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
)

from pipelines.services import Services
from tests.api_helpers import (
    BAD_UPLOADS,
    MIB,
    api_settings,
    close_services,
    leftovers,
    load_services,
    request,
    serve,
)
from tests.conftest import data_path, reference_text
from tests.servers import ServerThread
from voice.stt.base import Segment, SttCapabilities, Transcriber, Transcription

JFK = "openai-whisper/jfk.wav"
TWO_SPEAKERS = "pyannote-audio/sample.wav"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    loaded = load_services(api_settings(tmp_path_factory.mktemp("models")))
    yield loaded
    close_services(loaded)


@pytest.fixture(scope="module")
def server(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve(api_settings(tmp_path_factory.mktemp("server")), services) as running:
        yield running


def client(server: ServerThread) -> OpenAI:
    return OpenAI(base_url=f"{server.http_url}/v1", api_key="test-key", max_retries=0)


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return float(jiwer.wer(words(reference), words(hypothesis)))


def test_sdk_json_text_srt_vtt(server: ServerThread) -> None:
    sdk, reference = client(server), reference_text(JFK)
    with data_path(JFK).open("rb") as audio:
        plain = sdk.audio.transcriptions.create(file=audio, model="whisper-1")
    assert wer(reference, plain.text) <= 0.15, plain.text
    assert plain.usage is not None and plain.usage.type == "duration"
    assert plain.usage.seconds == pytest.approx(11.0, abs=0.1)

    rendered = {}
    for fmt in ("text", "srt", "vtt"):
        with data_path(JFK).open("rb") as audio:
            rendered[fmt] = sdk.audio.transcriptions.create(
                file=audio, model="whisper-1", response_format=fmt, language="en"
            )
        assert isinstance(rendered[fmt], str)
    assert wer(reference, rendered["text"]) <= 0.15
    srt, vtt = str(rendered["srt"]), str(rendered["vtt"])
    assert srt.startswith("1\n00:00:00,000 --> 00:00:")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:")
    cue_text = " ".join(
        line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit()
    )
    assert wer(reference, cue_text) <= 0.15


def test_sdk_verbose_json_with_words_and_segments(server: ServerThread) -> None:
    with data_path(JFK).open("rb") as audio:
        result = client(server).audio.transcriptions.create(
            file=audio,
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert isinstance(result, TranscriptionVerbose)
    assert wer(reference_text(JFK), result.text) <= 0.15
    assert result.language == "en" and result.duration == pytest.approx(11.0, abs=0.1)
    assert result.segments and result.words
    assert result.segments[0].start < 1.0 and result.segments[-1].end <= 11.1
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in result.words)
    assert words(" ".join(w.word for w in result.words)) == words(result.text)
    assert any(w.word.lower().strip(",.") == "country" for w in result.words)


def test_sdk_diarized_json_finds_two_speakers(server: ServerThread) -> None:
    with data_path(TWO_SPEAKERS).open("rb") as audio:
        result = client(server).audio.transcriptions.create(
            file=audio,
            model="gpt-4o-transcribe-diarize",
            response_format="diarized_json",
            chunking_strategy="auto",
        )
    assert isinstance(result, TranscriptionDiarized)
    assert result.task == "transcribe" and result.duration == pytest.approx(30.0, abs=0.1)
    speakers = {s.speaker for s in result.segments}
    assert len(speakers) >= 2, speakers
    assert speakers <= {"A", "B", "C", "D"} and result.segments[0].speaker == "A"
    assert all(s.type == "transcript.text.segment" and s.text for s in result.segments)
    assert all(0 <= s.start < s.end <= 30.1 for s in result.segments)
    assert len({s.id for s in result.segments}) == len(result.segments)
    reference = data_path(TWO_SPEAKERS).with_suffix(".txt").read_text()
    assert wer(reference, result.text) <= 0.5, result.text


@pytest.mark.parametrize(("name", "content", "status", "code"), BAD_UPLOADS)
def test_bad_files_get_openai_errors(
    server: ServerThread, name: str, content: bytes, status: int, code: str
) -> None:
    with pytest.raises(APIStatusError) as caught:
        client(server).audio.transcriptions.create(file=(name, content), model="whisper-1")
    assert caught.value.status_code == status
    body = caught.value.response.json()["error"]
    assert body["code"] == code and body["type"] == "invalid_request_error"
    assert body["param"] == "file" and body["message"]
    assert "/" not in body["message"]  # no server paths in messages


def test_request_errors(server: ServerThread) -> None:
    with pytest.raises(BadRequestError) as caught, data_path(JFK).open("rb") as audio:
        client(server).audio.transcriptions.create(
            file=audio,
            model="whisper-1",
            response_format="mp3",  # type: ignore[arg-type]
        )
    assert caught.value.response.json()["error"]["param"] == "response_format"
    no_file = request(
        "POST",
        f"{server.http_url}/v1/audio/transcriptions",
        data={"model": "x"},
        files={"other": ("a", b"1")},
    )
    assert no_file.status_code == 400 and no_file.json()["error"]["code"] == "missing_file"
    not_form = request("POST", f"{server.http_url}/v1/audio/transcriptions", json={"file": "x"})
    assert not_form.status_code == 400


def test_oversized_upload_is_refused_and_nothing_is_kept(
    services: Services, tmp_path: Path
) -> None:
    settings = api_settings(tmp_path, max_upload_mb=1)
    with serve(settings, services) as small:
        with pytest.raises(APIStatusError) as caught:
            client(small).audio.transcriptions.create(
                file=("big.wav", b"\0" * (3 * MIB)), model="whisper-1"
            )
        assert caught.value.status_code == 413
        assert caught.value.response.json()["error"]["code"] == "file_too_large"
        # Just over the limit, with the size inside the form allowance: caught while streaming.
        with pytest.raises(APIStatusError) as streamed:
            client(small).audio.transcriptions.create(
                file=("big.wav", b"\0" * (MIB + 10)), model="whisper-1"
            )
        assert streamed.value.status_code == 413
        # The server still answers on the same client afterwards.
        with data_path("lhotse/LJ002-0020.wav").open("rb") as audio:
            ok = client(small).audio.transcriptions.create(file=audio, model="whisper-1")
        assert ok.text
    assert leftovers(settings.data_dir) == []


class FirstSegmentGate:
    """The batch transcriber, holding the decoder after its first segment until the
    client has read a delta: a server that sent nothing before the end would never
    open it (the hold then runs out and :attr:`held_to_the_end` says so)."""

    def __init__(self, inner: Transcriber) -> None:
        self.inner = inner
        self.client_read = threading.Event()
        self.held_to_the_end = False

    @property
    def capabilities(self) -> SttCapabilities:
        return self.inner.capabilities

    def transcribe(self, audio: np.ndarray, **kw: Any) -> Transcription:
        sink = kw.pop("on_segment")
        first = True

        def hold(segment: Segment) -> None:
            nonlocal first
            sink(segment)
            if first:
                first = False
                self.held_to_the_end = not self.client_read.wait(60.0)

        return self.inner.transcribe(audio, on_segment=hold, **kw)


@contextlib.contextmanager
def gated(services: Services) -> Iterator[FirstSegmentGate]:
    plain = services.batch_transcriber
    gate = FirstSegmentGate(plain)
    services._batch_transcriber = gate  # type: ignore[assignment]
    try:
        yield gate
    finally:
        services._batch_transcriber = plain


def test_sdk_stream_sends_segments_as_they_are_decoded(
    server: ServerThread, services: Services
) -> None:
    events: list[TranscriptionStreamEvent] = []
    with gated(services) as gate, data_path(JFK).open("rb") as audio:
        stream = client(server).audio.transcriptions.create(
            file=audio, model="gpt-4o-mini-transcribe", stream=True, include=["logprobs"]
        )
        for event in stream:
            events.append(event)
            gate.client_read.set()
    assert not gate.held_to_the_end, "the first delta came only after decoding ended"
    deltas = [e for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    done = events[-1]
    assert isinstance(done, TranscriptionTextDoneEvent) and len(deltas) == len(events) - 1
    assert len(deltas) >= 2 and "".join(d.delta for d in deltas) == done.text
    assert wer(reference_text(JFK), done.text) <= 0.15, done.text
    # Logprobs: one per word, the deltas' together are the done event's.
    streamed = [p for d in deltas for p in d.logprobs or []]
    assert done.logprobs and [p.token for p in streamed] == [p.token for p in done.logprobs]
    assert len(done.logprobs) == len(done.text.split())
    values = [p.logprob for p in done.logprobs if p.logprob is not None]
    assert len(values) == len(done.logprobs) and all(v <= 0 for v in values)
    assert len(set(values)) > len(values) // 2  # real per-word values, not a constant
    assert math.exp(sum(values) / len(values)) > 0.5  # tiny.en is fairly sure on this clip


def test_verbose_json_carries_the_decoders_statistics(server: ServerThread) -> None:
    with data_path(TWO_SPEAKERS).open("rb") as audio:
        result = client(server).audio.transcriptions.create(
            file=audio, model="whisper-1", response_format="verbose_json"
        )
    segments = result.segments or []
    assert len(segments) >= 5
    windows = {s.seek: (s.avg_logprob, s.compression_ratio, s.no_speech_prob) for s in segments}
    # 30 s of speech takes two 30 s Whisper windows (the first ends at its last timestamp);
    # each window has its own statistics, shared by the segments decoded in it.
    assert len(windows) >= 2 and len(set(windows.values())) == len(windows), windows
    for seg in segments:
        assert seg.start >= seg.seek / 100 - 0.02 and seg.end > seg.start
        assert -1.5 < seg.avg_logprob < 0 and 0 <= seg.no_speech_prob < 0.6
        assert 0.5 < seg.compression_ratio < 2.4 and seg.temperature == 0.0
        assert seg.tokens and all(0 <= t < 51_864 for t in seg.tokens)  # Whisper's vocabulary
        assert len(seg.tokens) >= len(seg.text.split())
    assert len({tuple(s.tokens) for s in segments}) > len(segments) // 2


def test_json_logprobs_are_real_word_probabilities(server: ServerThread) -> None:
    clip = "deepspeech/LDC93S1.wav"
    with data_path(clip).open("rb") as audio:
        result = client(server).audio.transcriptions.create(
            file=audio, model="whisper-1", include=["logprobs"]
        )
    assert wer(reference_text(clip), result.text) <= 0.2, result.text
    assert result.logprobs and len(result.logprobs) == len(result.text.split())
    assert words(" ".join(p.token or "" for p in result.logprobs)) == words(result.text)
    values = [p.logprob for p in result.logprobs if p.logprob is not None]
    assert all(v <= 0 for v in values) and min(values) < max(values)
    assert all(p.bytes == list((p.token or "").encode()) for p in result.logprobs)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream": "true", "response_format": "srt"}, "stream"),
        ({"stream": "maybe"}, "stream"),
        ({"include[]": "tokens"}, "include"),
        ({"include[]": "logprobs", "response_format": "verbose_json"}, "include"),
    ],
)
def test_stream_and_include_refused_clearly(
    server: ServerThread, fields: dict[str, str], param: str
) -> None:
    refused = request(
        "POST",
        f"{server.http_url}/v1/audio/transcriptions",
        data={"model": "whisper-1", **fields},
        files={"file": ("jfk.wav", data_path(JFK).read_bytes())},
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == param and error["message"]
