"""Server logs: one JSON object per line (or plain text), each carrying the id of
the request, realtime session or meeting job it belongs to.

The ids live in context variables: :func:`log_context` sets them for a block, and
tasks and worker threads started inside inherit them (``asyncio`` copies the
context into new tasks, ``asyncio.to_thread`` into the thread). :class:`ContextFilter`
copies them onto every record. Transcripts and LLM text are never logged unless
``log_content`` is set: the ``web.content`` logger is the only one that writes
them, and the debug logs of the HTTP client libraries (which hold request bodies)
are dropped along with it. uvicorn's own and access logs go through the same handler.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from voice.settings import Settings

CONTEXT_FIELDS = ("request_id", "session_id", "job_id")
_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in CONTEXT_FIELDS
}
CONTENT_LOGGER = "web.content"
"""The one logger that may carry user or model text; silent unless ``log_content``."""
_BODY_LOGGERS = ("openai", "httpx", "httpcore")
"""Libraries whose debug logs include request and response bodies."""


@contextlib.contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Set ``request_id`` / ``session_id`` / ``job_id`` for the block (and what it starts)."""
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def set_log_context(**ids: str | None) -> None:
    """Set ids for the rest of the current task (for code that cannot wrap a block)."""
    for name, value in ids.items():
        _VARS[name].set(value)


def current_ids() -> dict[str, str]:
    """The ids set in the current context (unset ones left out)."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Adds the context ids to each record; drops content records unless allowed."""

    def __init__(self, log_content: bool) -> None:
        super().__init__()
        self.log_content = log_content

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.log_content and (
            record.name == CONTENT_LOGGER
            or (record.levelno < logging.INFO and record.name.startswith(_BODY_LOGGERS))
        ):
            return False
        for name in CONTEXT_FIELDS:
            setattr(record, name, _VARS[name].get())
        return True


class _Json(JsonFormatter):
    """python-json-logger's formatter, leaving out unset ids."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in log_data.items() if not (k in CONTEXT_FIELDS and v is None)}


def make_formatter(fmt: str) -> logging.Formatter:
    """``json``: keys time, level, logger, message, the ids, exc_info; ``text``: one line."""
    if fmt == "json":
        return _Json(
            "{asctime}{levelname}{name}{message}",
            style="{",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            reserved_attrs=[*_RESERVED, "color_message"],
        )
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(ids)s] %(message)s")


class _TextIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ids = " ".join(f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS
                              if getattr(record, n, None)) or "-"
        return True


_RESERVED = [
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelname",
    "levelno", "lineno", "module", "msecs", "message", "msg", "name", "pathname", "process",
    "processName", "relativeCreated", "stack_info", "thread", "threadName", "taskName", "ids",
]


def make_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter and filters of ``settings``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(settings.log_content))
    handler.addFilter(_TextIds())
    handler.setFormatter(make_formatter(settings.log_format))
    return handler


def configure_logging(settings: Settings) -> None:
    """Route this process's logs (Python warnings included) through one handler
    (:func:`uvicorn_log_config`); for ``voice serve``, before anything logs."""
    logging.config.dictConfig(uvicorn_log_config(settings))
    logging.captureWarnings(True)


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=...)``: one handler on
    the root logger, with uvicorn's loggers (access log included) propagating to it."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"default": {"()": make_handler, "settings": settings}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
