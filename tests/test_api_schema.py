"""Schemathesis against the running server: requests generated from ``/openapi.json``
(valid and invalid ones) must never get a 5xx, and every response must match the
document (status code, content type, body schema). Bounded: a few examples per route.

Two servers: the loopback default (no keys), and one with API keys where every
request carries a key and the ``{id}`` of meeting routes names a real meeting
(a finished one, or a queued one for cancel and delete), so the fuzzed queries
and bodies reach the handlers instead of stopping at 401 or 404."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from pipelines.services import Services
from tests.api_helpers import api_settings, request, serve
from tests.conftest import data_path
from tests.servers import ServerThread
from web.operations.openapi import openapi_document

KEY = "sk-schema-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
JFK = "openai-whisper/jfk.wav"
DESTRUCTIVE = {("DELETE", "/v1/meetings/{id}"), ("POST", "/v1/meetings/{id}/cancel")}


@schemathesis.serializer("application/sdp")
def _sdp(ctx: object, value: object) -> bytes:
    """An SDP offer is plain text; generated values are sent as their text."""
    return str(value).encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.exclude(path="/metrics").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_documented_promises(case: schemathesis.Case, server: ServerThread) -> None:
    case.call_and_validate(base_url=server.http_url, timeout=30, checks=CHECKS)


class Meetings:
    """A keyed server with a finished meeting and a supply of queued ones."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.finished = self.upload()
        self._wait_until_done(self.finished)

    def upload(self) -> str:
        response = request(
            "POST",
            f"{self.server.http_url}/v1/meetings",
            headers=AUTH,
            data={"summarize": "false"},
            files={"file": ("jfk.wav", data_path(JFK).read_bytes(), "audio/wav")},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def _wait_until_done(self, job_id: str, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = request("GET", f"{self.server.http_url}/v1/meetings/{job_id}", headers=AUTH)
            if job.json()["state"] == "succeeded":
                return
            assert job.json()["state"] in ("queued", "running"), job.text
            time.sleep(0.5)
        pytest.fail(f"meeting {job_id} did not finish in {timeout_s} s")


@pytest.fixture(scope="module")
def meetings(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Meetings]:
    settings_ = api_settings(
        tmp_path_factory.mktemp("schema-keyed"), api_keys=[KEY], rate_limit_per_minute=0
    )
    with serve(settings_, services) as running:
        yield Meetings(running)


@schema.exclude(path="/metrics").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_with_keys_and_real_meetings_the_api_keeps_its_promises(
    case: schemathesis.Case, meetings: Meetings
) -> None:
    if "id" in (case.path_parameters or {}):
        destructive = (case.method.upper(), case.path) in DESTRUCTIVE
        job_id = meetings.upload() if destructive else meetings.finished
        case.path_parameters = {**case.path_parameters, "id": job_id}
    case.headers = {**(case.headers or {}), **AUTH}
    case.call_and_validate(base_url=meetings.server.http_url, timeout=60, checks=CHECKS)
