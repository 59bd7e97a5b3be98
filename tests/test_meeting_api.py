"""Meeting jobs over HTTP against the real server: upload → queued job → results,
followed over server-sent events; cancel, delete, speaker renaming; a restart in
the middle of a job; and uploads that must be refused without leaving anything.

Models are real (Whisper tiny.en, the diarizer); the LLM that writes summaries
is the scripted OpenAI-compatible server from ``tests/fakes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.services import Services
from tests.api_helpers import (
    BAD_UPLOADS,
    MIB,
    api_settings,
    leftovers,
    request,
    serve,
)
from tests.conftest import data_path, reference_text
from tests.fakes.llm_script import Turn
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_transcriptions_api import wer

JFK = "openai-whisper/jfk.wav"
LONGER = "pyannote-audio/sample.wav"
SUMMARY = {
    "title": "Inaugural address",
    "key_points": [
        {"text": "Citizens should ask what they can do for their country.", "citations": [0]}
    ],
    "decisions": [],
    "action_items": [],
    "open_questions": [],
}
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLlmServer]:
    with ScriptedLlmServer(default=Turn.say(json.dumps(SUMMARY))) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    services: Services, llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    settings = api_settings(tmp_path_factory.mktemp("server"), llm_base_url=llm.base_url)
    with serve(settings, services) as running:
        yield running


def upload(server: ServerThread, relative: str, **fields: str) -> httpx.Response:
    path = data_path(relative)
    with path.open("rb") as audio:
        return request(
            "POST",
            f"{server.http_url}/v1/meetings",
            files={"file": (path.name, audio)},
            data=fields,
            timeout=60,
        )


def raw_get(server: ServerThread, path: str) -> tuple[int, bytes]:
    """``GET path`` sent byte for byte over a socket (no client-side path normalisation);
    returns the status and the body."""
    host, port = server.http_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def get(server: ServerThread, path: str, **kwargs: Any) -> httpx.Response:
    return request("GET", f"{server.http_url}{path}", **kwargs)


def wait_for(server: ServerThread, job_id: str, predicate: Any, timeout_s: float = 180) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = get(server, f"/v1/meetings/{job_id}")
        assert response.status_code == 200, response.text  # the job never vanishes
        job = response.json()
        if predicate(job):
            return job
        assert job["state"] not in FINAL, f"ended before the awaited state: {job}"
        time.sleep(0.1)
    raise AssertionError(f"timed out; last state {job}")


def follow_events(server: ServerThread, job_id: str) -> list[dict[str, Any]]:
    """The ``job`` events of the SSE stream until a final state."""
    seen: list[dict[str, Any]] = []
    with httpx.stream(
        "GET", f"{server.http_url}/v1/meetings/{job_id}/events", timeout=180
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "job":
                seen.append(json.loads(line.removeprefix("data: ")))
                if seen[-1]["state"] in FINAL:
                    break
    return seen


def test_upload_to_summary_with_progress_renaming_and_delete(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    created = upload(server, JFK, summarize="true")
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["state"] == "queued" and job["filename"] == "jfk.wav"
    assert job["duration"] == pytest.approx(11.0, abs=0.1)
    assert created.headers["location"] == f"/v1/meetings/{job['id']}"
    events = follow_events(server, job["id"])
    progress = [e["progress"] for e in events]
    assert events[-1]["state"] == "succeeded", events[-1]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress), progress
    assert {"transcribe", "diarize"} & {e["stage"] for e in events}
    base = f"/v1/meetings/{job['id']}"

    doc = get(server, f"{base}/transcript").json()
    assert doc["format"] == "meeting-transcript" and doc["speakers"]
    text = " ".join(s["text"] for s in doc["segments"])
    assert wer(reference_text(JFK), text) <= 0.2, text
    first = next(iter(doc["speakers"]))
    for fmt, ctype, marker in (
        ("txt", "text/plain", "Speaker 1:"),
        ("srt", "application/x-subrip", " --> "),
        ("vtt", "text/vtt", "WEBVTT"),
        ("md", "text/markdown", "# Meeting transcript"),
    ):
        rendered = get(server, f"{base}/transcript", params={"format": fmt})
        assert rendered.status_code == 200 and rendered.headers["content-type"].startswith(ctype)
        assert marker in rendered.text and "country" in rendered.text

    summary = get(server, f"{base}/summary").json()
    assert summary["title"] == SUMMARY["title"] and summary["method"]["key_points"] == "llm"
    assert summary["key_points"][0]["citations"] == [0]
    assert "country" in json.dumps(llm.chat_requests[-1].messages)
    markdown = get(server, f"{base}/summary", params={"format": "md"}).text
    assert markdown.startswith("# Inaugural address") and "[00:00:0" in markdown

    audio = get(server, f"{base}/audio")
    assert audio.content == data_path(JFK).read_bytes()
    assert audio.headers["content-type"] == "audio/wav"
    part = get(server, f"{base}/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == audio.content[100:200]

    renamed = request("PATCH", f"{server.http_url}{base}/speakers", json={first: "Alice"})
    assert renamed.status_code == 200 and renamed.json()["speakers"][first] == "Alice"
    assert get(server, f"{base}/transcript", params={"format": "txt"}).text.startswith("Alice: ")
    assert "<v Alice>" in get(server, f"{base}/transcript", params={"format": "vtt"}).text
    assert get(server, f"{base}/transcript").json()["speakers"][first] == "Alice"
    unknown = request("PATCH", f"{server.http_url}{base}/speakers", json={"SPEAKER_99": "Bob"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_speaker"

    listed = get(server, "/v1/meetings").json()["data"]
    assert job["id"] in [m["id"] for m in listed]
    deleted = request("DELETE", f"{server.http_url}{base}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert get(server, base).status_code == 404
    assert get(server, f"{base}/audio").status_code == 404
    assert request("DELETE", f"{server.http_url}{base}").status_code == 404


def test_transcript_is_readable_while_the_summary_is_written(
    server: ServerThread, llm: ScriptedLlmServer
) -> None:
    """The summary runs after the transcript and never holds it back: while the LLM's
    summary request is held in flight, the job says ``summary_status: running`` and the
    transcript is served; the summary is 409 until it is done."""
    release = threading.Event()
    llm.add(Turn.say(json.dumps(SUMMARY), hold=release))
    created = upload(server, JFK)
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["summary_status"] == "pending" and job["transcript_ready"] is False
    base = f"/v1/meetings/{job['id']}"
    try:
        running = wait_for(server, job["id"], lambda j: j["summary_status"] == "running")
        assert running["state"] == "running" and running["transcript_ready"] is True
        transcript = get(server, f"{base}/transcript")
        assert transcript.status_code == 200, transcript.text
        assert "country" in " ".join(s["text"] for s in transcript.json()["segments"])
        assert "country" in get(server, f"{base}/transcript", params={"format": "txt"}).text
        pending = get(server, f"{base}/summary")
        assert pending.status_code == 409
        assert pending.json()["error"]["code"] == "result_not_ready"
        assert not llm.chat_requests[-1].finished.is_set()  # the summary is still being written
    finally:
        release.set()
    done = wait_for(server, job["id"], lambda j: j["state"] == "succeeded")
    assert done["summary_status"] == "done" and done["transcript_ready"] is True
    assert get(server, f"{base}/summary").json()["title"] == SUMMARY["title"]
    assert request("DELETE", f"{server.http_url}{base}").status_code == 200


def hold_jobs(server: ServerThread) -> threading.Event:
    """From now on, jobs that start on ``server`` wait (``running``, nothing done) until
    the returned event is set, so a test acts on a running job without racing its
    completion. The wait is cancellable, as the real runner is."""
    queue = server.server.config.app.state.meetings.queue
    real, gate = queue._executor.runner, threading.Event()

    async def held(job: Any, pump: Any) -> Any:
        while not gate.is_set():  # noqa: ASYNC110 (set from the test's own thread)
            await asyncio.sleep(0.05)
        return await real(job, pump)

    queue._executor.runner = held
    return gate


def test_cancel_running_job_then_delete(server: ServerThread) -> None:
    gate = hold_jobs(server)
    try:
        job = upload(server, LONGER, summarize="false").json()
        base = f"/v1/meetings/{job['id']}"
        wait_for(server, job["id"], lambda j: j["state"] == "running")
        early = get(server, f"{base}/transcript")
        cancelled = request("POST", f"{server.http_url}{base}/cancel")
    finally:
        gate.set()  # later jobs on this shared server pass straight through
    assert early.status_code == 409 and early.json()["error"]["code"] == "result_not_ready"
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = request("POST", f"{server.http_url}{base}/cancel")
    assert again.status_code == 409
    gone = get(server, f"{base}/transcript")
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "result_unavailable"
    assert request("DELETE", f"{server.http_url}{base}").status_code == 200
    assert get(server, base).status_code == 404


def test_restart_mid_job_resumes_it(
    services: Services, llm: ScriptedLlmServer, tmp_path: Path
) -> None:
    """The server stops while a job runs; a new one on the same data resumes it."""
    settings = api_settings(tmp_path, llm_base_url=llm.base_url)
    with serve(settings, services) as first:
        hold_jobs(first)  # never released: the server stops with the job running
        job = upload(first, JFK, summarize="false").json()
        wait_for(first, job["id"], lambda j: j["state"] == "running")
    with serve(settings, services) as second:
        assert get(second, "/v1/meetings").json()["data"][0]["id"] == job["id"]
        resumed = wait_for(second, job["id"], lambda j: j["state"] in FINAL)
        assert resumed["state"] == "succeeded", resumed
        assert resumed["attempts"] == 2
        doc = get(second, f"/v1/meetings/{job['id']}/transcript").json()
        text = " ".join(s["text"] for s in doc["segments"])
        assert wer(reference_text(JFK), text) <= 0.2, text


@pytest.mark.parametrize(("name", "content", "status", "code"), BAD_UPLOADS)
def test_bad_uploads_are_refused_and_leave_nothing(
    server: ServerThread, name: str, content: bytes, status: int, code: str
) -> None:
    before = get(server, "/v1/meetings").json()["data"]
    response = request("POST", f"{server.http_url}/v1/meetings", files={"file": (name, content)})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"]
    assert get(server, "/v1/meetings").json()["data"] == before
    uploads = server.server.config.app.state.settings.data_dir / "uploads"
    assert {p.name for p in uploads.iterdir()} <= {m["id"] for m in before}


def test_oversized_upload_gets_413_and_leaves_nothing(services: Services, tmp_path: Path) -> None:
    settings = api_settings(tmp_path, max_upload_mb=1)
    with serve(settings, services) as small:
        for size in (3 * MIB, MIB + 10):  # refused from Content-Length / while streaming
            response = request(
                "POST", f"{small.http_url}/v1/meetings", files={"file": ("big.wav", b"\0" * size)}
            )
            assert response.status_code == 413, response.text
            assert response.json()["error"]["code"] == "file_too_large"
        assert get(small, "/v1/meetings").json()["data"] == []
        # A client that hangs up mid-upload: the partial file is removed.
        with partial_upload(small, declared=MIB - 1000, sent=3 * MIB // 4):
            assert until(lambda: leftovers(settings.data_dir)), "no partial file was written"
        assert until(lambda: not leftovers(settings.data_dir)), leftovers(settings.data_dir)
    assert leftovers(settings.data_dir) == []


def until(condition: Any, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def partial_upload(server: ServerThread, *, declared: int, sent: int) -> Iterator[None]:
    """Start a multipart upload of ``declared`` bytes, send ``sent``, and hang up on exit."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/meetings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {len(head) + declared}\r\n\r\n".encode()
            + head
            + b"\1" * sent
        )
        yield


def test_request_validation(server: ServerThread) -> None:
    before = get(server, "/v1/meetings").json()["data"]

    def post(fields: dict[str, str]) -> httpx.Response:
        return request(
            "POST",
            f"{server.http_url}/v1/meetings",
            data=fields,
            files={"file": ("a.wav", data_path(JFK).read_bytes())},
        )

    assert post({"num_speakers": "two"}).json()["error"]["param"] == "num_speakers"
    both = post({"num_speakers": "2", "min_speakers": "1"})
    assert both.status_code == 422 and both.json()["error"]["code"] == "invalid_value"
    assert post({"summarize": "maybe"}).status_code == 422
    missing = request(
        "POST",
        f"{server.http_url}/v1/meetings",
        data={"language": "en"},
        files={"other": ("a", b"1")},
    )
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "missing_file"
    assert get(server, "/v1/meetings/" + "0" * 32).status_code == 404
    # Dot segments sent literally (httpx would resolve them away before sending):
    # they reach the routes as ids and never become file paths.
    for path in (
        "/v1/meetings/../audio",
        "/v1/meetings/..%2F..%2F..%2Fetc%2Fpasswd/audio",
        "/v1/meetings/%2e%2e/transcript?format=txt",
        "/v1/meetings/..%2Fuploads/summary",
    ):
        status, body = raw_get(server, path)
        assert status == 404, (path, status, body[:200])
        # no route (decoded slashes) or no such meeting: either way JSON, never a file
        assert json.loads(body)["error"]["code"] in {"not_found", "meeting_not_found"}, body
    assert get(server, "/v1/meetings", params={"limit": "0"}).status_code == 422
    assert get(server, "/v1/meetings").json()["data"] == before
