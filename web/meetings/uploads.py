"""Receive a ``multipart/form-data`` upload straight to disk, with a size limit.

The body is parsed as it arrives (python-multipart's streaming parser); the one
file part goes to a path the server chose, in chunks written from a worker
thread, so memory stays at about :data:`FLUSH_BYTES` whatever the upload's
size. The limit is enforced as soon as it is crossed: a declared
``Content-Length`` that cannot fit is refused before any byte is read, and a
file part that grows past the limit stops the upload at once. Other fields are
counted and measured as they arrive too (:data:`MAX_FIELDS`, at most
``SPEAKER_LIMIT`` voice samples of :data:`REFERENCE_LIMIT_BYTES` each and
:data:`REFERENCES_TOTAL_BYTES` together). On any failure
the partial file is removed. The client's filename is returned for display
only; it never becomes part of a path.

:func:`receive_upload` is safe to cancel (the partial file is removed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from pipelines.meeting.meeting_jobs import SPEAKER_LIMIT
from web.api_errors import ApiError

FLUSH_BYTES = 256 * 1024
"""Buffered file bytes written to disk at a time."""
FIELD_LIMIT_BYTES = 64 * 1024
"""Largest accepted non-file field value..."""
REFERENCE_LIMIT_BYTES = 4 * 1024 * 1024
"""...except voice samples (``known_speaker_references[]`` data URLs)..."""
REFERENCES_TOTAL_BYTES = 16 * 1024 * 1024
"""...which together may not exceed this (counted as they arrive)."""
REFERENCE_FIELD = "known_speaker_references"
FORM_OVERHEAD_BYTES = 1 << 20
"""Allowance for boundaries, headers and small fields on top of the file limit."""
MAX_FIELDS = 64


@dataclass
class ReceivedForm:
    """The fields of a form (values in order, ``name[]`` arrays merged with ``name``)
    and where its file went. ``filename`` is the client's name, for display only."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file_path: Path | None = None
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int = 0

    def get(self, name: str) -> str | None:
        values = self.getall(name)
        return values[-1] if values else None

    def getall(self, name: str) -> list[str]:
        return self.fields.get(name.removesuffix("[]"), [])


def too_large(max_bytes: int) -> ApiError:
    mb = max_bytes / (1 << 20)
    return ApiError(
        413, "file_too_large", f"the file exceeds the {mb:g} MB upload limit", param="file"
    )


class _Receiver:
    """Parser callbacks: collects fields, buffers the file part for the async side."""

    def __init__(self, file_field: str, dest: Path, max_bytes: int) -> None:
        self.form = ReceivedForm()
        self.pending = bytearray()
        self._file_field = file_field
        self._dest = dest
        self._max = max_bytes
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._in_file = False
        self._value = bytearray()
        self._fields = 0
        self._references = 0
        self._reference_bytes = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_name.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._in_file = {}, None, False
        self._value.clear()

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(
            self._header_value
        )
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise ApiError(400, "invalid_multipart", "a form part has no name")
        self._name = name.decode("utf-8", "replace")
        if self._name == self._file_field:
            if self.form.file_path is not None:
                raise ApiError(
                    400, "invalid_multipart", "more than one file was sent", param=self._file_field
                )
            self._in_file = True
            self.form.file_path = self._dest
            raw_name = options.get(b"filename")
            self.form.filename = raw_name.decode("utf-8", "replace") if raw_name else None
            ctype = self._headers.get("content-type")
            self.form.content_type = ctype.decode("latin-1") if ctype else None
        else:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise ApiError(400, "too_many_fields", f"more than {MAX_FIELDS} form fields")
            if self._name.startswith(REFERENCE_FIELD):
                self._references += 1
                if self._references > SPEAKER_LIMIT:
                    raise ApiError(
                        400,
                        "too_many_fields",
                        f"more than {SPEAKER_LIMIT} known_speaker_references[]",
                        param=self._name,
                    )

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.form.size_bytes += end - start
            if self.form.size_bytes > self._max:
                raise too_large(self._max)
            self.pending.extend(data[start:end])
        else:
            self._value.extend(data[start:end])
            reference = (self._name or "").startswith(REFERENCE_FIELD)
            if reference:
                self._reference_bytes += end - start
                if self._reference_bytes > REFERENCES_TOTAL_BYTES:
                    raise ApiError(
                        413,
                        "request_too_large",
                        f"the voice samples exceed {REFERENCES_TOTAL_BYTES >> 20} MB together",
                        param=self._name,
                    )
            if len(self._value) > (REFERENCE_LIMIT_BYTES if reference else FIELD_LIMIT_BYTES):
                raise ApiError(
                    400,
                    "field_too_large",
                    f"form field {self._name!r} is too large",
                    param=self._name,
                )

    def _part_end(self) -> None:
        if not self._in_file and self._name is not None:
            try:
                value = bytes(self._value).decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(
                    400, "invalid_multipart", f"field {self._name!r} is not UTF-8", param=self._name
                ) from None
            self.form.fields.setdefault(self._name.removesuffix("[]"), []).append(value)
        self._in_file = False


def _boundary(request: Request) -> bytes:
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(400, "invalid_content_type", "send the request as multipart/form-data")
    return options[b"boundary"]


async def receive_upload(
    request: Request, dest: Path, *, max_bytes: int, file_field: str = "file"
) -> ReceivedForm:
    """Parse the request body, writing the ``file_field`` part to ``dest`` (its folder
    is created). Raises :class:`ApiError` (400 malformed, 413 too large); on any error
    or cancellation ``dest`` is removed. The form's ``file_path`` is None when no file
    part was sent."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise too_large(max_bytes)
    receiver = _Receiver(file_field, dest, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    file: BinaryIO | None = None
    try:
        async for chunk in _body(request):
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise ApiError(400, "invalid_multipart", f"malformed form data: {exc}") from None
            if len(receiver.pending) >= FLUSH_BYTES:
                if file is None:
                    file = await asyncio.to_thread(_create, dest)
                await asyncio.to_thread(file.write, bytes(receiver.pending))
                receiver.pending.clear()
        parser.finalize()
        if receiver.form.file_path is not None:
            if file is None:
                file = await asyncio.to_thread(_create, dest)
            done, file = file, None
            await asyncio.to_thread(_finish, done, bytes(receiver.pending))
        return receiver.form
    except BaseException:
        if file is not None:
            await asyncio.to_thread(file.close)
        await asyncio.to_thread(_unlink, dest)
        raise


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body; a client that goes away mid-upload becomes a 400 (which
    nobody reads) instead of an unhandled exception."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the upload was interrupted") from None


def _create(dest: Path) -> BinaryIO:
    dest.parent.mkdir(parents=True, exist_ok=True)
    return open(dest, "xb")


def _finish(file: BinaryIO, tail: bytes) -> None:
    with file:
        file.write(tail)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
