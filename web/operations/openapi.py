"""``GET /openapi.json``: the hand-written OpenAPI 3 document of the HTTP routes.

The document (``web/operations/openapi.json``) is written by hand so it states what the
routes promise (error bodies, status codes, formats); a test checks that it
names every HTTP route of the app, and schemathesis checks the server against it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

DOCUMENT = Path(__file__).with_name("openapi.json")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The parsed document (read once)."""
    data: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return data


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document())
