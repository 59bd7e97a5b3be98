"""Oversize bodies are refused before they are read whole: each test sends a body
that crosses its cap and then *keeps the request open* (no terminating chunk, no
closing boundary). A server that read the whole body before checking would wait
for the rest and never answer; the fixed server answers as soon as the cap is
crossed. Real server on loopback, raw sockets (the client must not finish)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pipelines.meeting.meeting_jobs import SPEAKER_LIMIT
from pipelines.services import Services
from tests.api_helpers import api_settings, serve
from tests.servers import ServerThread
from web.access.client_secrets import MAX_BODY_BYTES as SECRET_BODY_BYTES
from web.meetings.uploads import REFERENCES_TOTAL_BYTES
from web.realtime.webrtc import MAX_BODY_BYTES as OFFER_BODY_BYTES

ANSWER_TIMEOUT_S = 60.0
"""How long the open request waits for the refusal (generous: a loaded machine)."""
BOUNDARY = "hostileboundary"


@pytest.fixture(scope="module")
def running(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with serve(api_settings(tmp_path_factory.mktemp("bodies")), services) as server:
        yield server


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def open_request_status(
    server: ServerThread, path: str, content_type: str, parts: Iterator[bytes]
) -> tuple[int, bytes]:
    """POST ``parts`` as a chunked body without ever ending it; the status line and
    body of whatever the server answers while the request is still open."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT_S) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(head.encode())
        try:
            for part in parts:
                sock.sendall(_chunk(part))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed while we were still sending
        answer = bytearray()
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        sock.settimeout(2)
        try:
            while data := sock.recv(65536):
                answer += data
        except (TimeoutError, ConnectionResetError):
            pass
    status_line, _, rest = bytes(answer).partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), rest


def _filler(total: int, size: int = 32 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def test_an_endless_client_secret_request_is_refused_at_its_cap(running: ServerThread) -> None:
    status, body = open_request_status(
        running,
        "/v1/realtime/client_secrets",
        "application/json",
        _filler(SECRET_BODY_BYTES + 64 * 1024),
    )
    assert status == 413 and b'"request_too_large"' in body


def test_an_endless_chunked_webrtc_offer_is_refused_at_its_cap(running: ServerThread) -> None:
    for content_type in ("application/sdp", f"multipart/form-data; boundary={BOUNDARY}"):
        status, body = open_request_status(
            running, "/v1/realtime/calls", content_type, _filler(OFFER_BODY_BYTES + 64 * 1024)
        )
        assert status == 413 and b'"request_too_large"' in body, (content_type, body)


def _field(name: str, value: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value
        + b"\r\n"
    )


def test_voice_samples_are_counted_while_the_form_is_parsed(running: ServerThread) -> None:
    """One sample more than the speaker limit (still under the form's field limit) is
    refused at once, before the file arrives."""
    sample = b"data:audio/wav;base64," + b"A" * 1000
    fields = (_field("known_speaker_references[]", sample) for _ in range(SPEAKER_LIMIT + 1))
    status, body = open_request_status(
        running, "/v1/meetings", f"multipart/form-data; boundary={BOUNDARY}", fields
    )
    assert status == 400 and b'"too_many_fields"' in body, body


def test_voice_samples_are_capped_together_while_they_arrive(running: ServerThread) -> None:
    """Samples under the per-field cap but over the total are refused on arrival."""
    big = b"data:audio/wav;base64," + b"A" * (3 << 20)
    count = REFERENCES_TOTAL_BYTES // len(big) + 2
    assert count <= SPEAKER_LIMIT
    fields = (_field("known_speaker_references[]", big) for _ in range(count + 4))
    status, body = open_request_status(
        running, "/v1/meetings", f"multipart/form-data; boundary={BOUNDARY}", fields
    )
    assert status == 413 and b'"request_too_large"' in body, body
