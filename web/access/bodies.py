"""Request bodies read with a cap: refused as soon as they cross it, never read whole first.

A declared ``Content-Length`` over the cap is refused before any byte is read;
a chunked body is counted as it arrives and refused the moment it passes the
cap, so a client cannot make the server buffer more than ``max_bytes``.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive

from web.api_errors import ApiError


def body_too_large(max_bytes: int) -> ApiError:
    """413 ``request_too_large``."""
    return ApiError(413, "request_too_large", f"the request body exceeds {max_bytes} bytes")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, at most ``max_bytes``; :class:`ApiError` 413 past it (before
    reading more), 400 ``client_disconnected`` when the client goes away. Safe to
    cancel."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise body_too_large(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            if len(body) + len(chunk) > max_bytes:
                raise body_too_large(max_bytes)
            body += chunk
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the request was interrupted") from None
    return bytes(body)


def replay(body: bytes) -> Receive:
    """An ASGI ``receive`` that hands out ``body`` (already read) as the request body,
    for parsers that read from a :class:`Request` (``Request(scope, replay(body))``)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
