"""Schemathesis against the running server: requests generated from ``/openapi.json``
(valid and invalid ones) must never get a 5xx, and every response must match the
document (status code, content type, body schema). Bounded: a few examples per route."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import ServerThread
from web.operations.openapi import openapi_document


@schemathesis.serializer("application/sdp")
def _sdp(ctx: object, value: object) -> bytes:
    """An SDP offer is plain text; generated values are sent as their text."""
    return str(value).encode("utf-8", "surrogatepass")


schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
]


@schema.exclude(path="/metrics").parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_documented_promises(case: schemathesis.Case, server: ServerThread) -> None:
    case.call_and_validate(base_url=server.http_url, timeout=30, checks=CHECKS)
