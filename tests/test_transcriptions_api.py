"""``POST /v1/audio/transcriptions`` through the ``openai`` SDK against the real
server (Whisper tiny.en, the real diarizer), on real recordings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
from openai import APIStatusError, BadRequestError, OpenAI
from openai.types.audio import TranscriptionDiarized, TranscriptionVerbose

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
