"""JSON errors in OpenAI's shape, shared by the HTTP APIs.

Body: ``{"error": {"type": ..., "code": ..., "message": ..., "param": ...}}``.
Handlers raise :class:`ApiError`; routes turn it into a response with
:func:`error_response` (or :meth:`ApiError.response`).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)
_TYPES = {404: "not_found_error", 409: "conflict_error", 500: "server_error"}


class ApiError(Exception):
    """An HTTP error with a stable ``code`` and a human ``message``; ``param`` names
    the request field at fault, when there is one."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, param=self.param)


def error_response(
    status: int, code: str, message: str, *, param: str | None = None
) -> JSONResponse:
    """The JSON error response; ``type`` follows the status (``invalid_request_error``
    for other 4xx)."""
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"type": kind, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status)


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


async def http_exception_response(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (unknown route, wrong method, a form it cannot
    parse) in the same JSON shape; installed as the app's ``HTTPException`` handler."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    response = error_response(exc.status_code, code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def unexpected_error_response(request: Request, exc: Exception) -> Response:
    """A bug: 500 ``server_error`` JSON naming the request id (the client can quote it),
    with the traceback logged under that id. Installed as the app's ``Exception``
    handler; Starlette re-raises ``exc`` after sending it, for the server's own log."""
    request_id = getattr(request.state, "request_id", None)
    log.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    suffix = f" (request id {request_id})" if request_id else ""
    response = error_response(500, "internal_error", f"the server failed{suffix}")
    if request_id:
        response.headers["x-request-id"] = request_id
    return response
