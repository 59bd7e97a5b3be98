"""ASGI middleware for HTTP requests: a request id for the logs, and metrics.

:class:`RequestIdMiddleware` takes the client's ``X-Request-Id`` when it is a
sane token (else makes one), sets it as the log context for the request (see
:func:`web.operations.logs.log_context`) and echoes it in the response headers.

:class:`HttpMetricsMiddleware` counts requests by method, route template and
status, times them, and counts error responses by status and the ``code`` of
their JSON error body (the first 4 KiB of a JSON body are read for it).
WebSocket and lifespan traffic passes through both untouched.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.operations.logs import log_context
from web.operations.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ERROR_BODY_MAX = 4096


def request_id_from(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it is 1–128 chars of ``[A-Za-z0-9._:-]``, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)


def route_label(scope: Scope) -> str:
    """The matched route's path template (bounded cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def error_code(body: bytes) -> str:
    """``error.code`` of an OpenAI-style JSON error body; ``unknown`` when absent."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "unknown"
    error = data.get("error") if isinstance(data, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else "unknown"


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        is_json = False
        body = bytearray()
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            route = route_label(scope)
            m = self.metrics
            m.http_requests.labels(scope.get("method", "?"), route, str(status)).inc()
            m.http_duration.labels(route).observe(time.perf_counter() - start)
            if status >= 400:
                code = error_code(bytes(body)) if is_json else "unknown"
                m.http_errors.labels(str(status), code).inc()

        async def observed(message: Message) -> None:
            nonlocal status, is_json
            if message["type"] == "http.response.start":
                status = int(message["status"])
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                is_json = content_type.startswith(b"application/json")
            elif message["type"] == "http.response.body":
                if status >= 400 and is_json and len(body) < _ERROR_BODY_MAX:
                    body.extend(message.get("body", b"")[: _ERROR_BODY_MAX - len(body)])
                if not message.get("more_body", False):
                    record()
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            status = 500
            raise
        finally:
            record()
