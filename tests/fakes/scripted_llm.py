"""A real OpenAI-compatible HTTP server that answers from a script, for tests.

It serves ``POST /v1/chat/completions`` (streamed as server-sent events, or as
one JSON body) and ``GET /v1/models`` with uvicorn in a background thread on a
free loopback port, so it works from sync and async tests alike::

    with ScriptedLlmServer([Turn.call("calculate", {"expression": "2+2"}),
                            Turn.say("It is four.", when=after_tool_result("4"))]) as llm:
        client = ChatClient(LlmOptions(base_url=llm.base_url))
        ...
        assert llm.chat_requests[1].body["messages"][-1]["role"] == "tool"

Each chat request takes the first unused turn whose ``when`` matches its last
message (``default`` once the script is used up). Every request is recorded
(:class:`RecordedRequest`). Faults: :meth:`fail_next` answers the next requests
with an HTTP error; a turn's ``first_chunk_delay_s``, ``chunk_delay_s`` and
``disconnect_after`` and ``end_after`` shape its stream. Requests are validated like OpenAI does
(400 for a tool message that answers no earlier tool call, for example).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.fakes.llm_script import Rendered, Turn, render, validate_request


@dataclass
class RecordedRequest:
    """One request the server received. ``disconnected``: the client went away before
    the response ended; ``finished`` is set once the server is done with it."""

    method: str
    path: str
    body: dict[str, Any]
    status: int = 200
    chunks_sent: int = 0
    disconnected: bool = False
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools", []))


class _CutConnection(Exception):
    """Raised mid-response so that uvicorn drops the connection (a disconnect fault)."""


def _hide_scripted_cuts(record: logging.LogRecord) -> bool:
    """Keep uvicorn from logging our deliberate disconnects as application errors."""
    return not (record.exc_info and isinstance(record.exc_info[1], _CutConnection))


class ScriptedLlmServer:
    """See the module docstring. ``chunk_delay_s``: default pause between chunks (s);
    ``args_chunk_chars``: size of streamed tool-argument fragments."""

    def __init__(self, script: list[Turn] | None = None, *, default: Turn | None = None,
                 model: str = "scripted-model", chunk_delay_s: float = 0.0,
                 args_chunk_chars: int = 7, reject_stream_options: bool = False,
                 reject_response_format: bool = False) -> None:
        self.model = model
        self.default = default
        self.chunk_delay_s = chunk_delay_s
        self.args_chunk_chars = args_chunk_chars
        self.reject_stream_options = reject_stream_options
        self.reject_response_format = reject_response_format
        self._lock = threading.Lock()
        self._turns: list[Turn] = list(script or [])
        self._failures: list[tuple[int, str, float | None]] = []
        self._requests: list[RecordedRequest] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- script and faults ------------------------------------------------
    def add(self, *turns: Turn) -> None:
        """Append turns to the script."""
        with self._lock:
            self._turns.extend(turns)

    @contextlib.contextmanager
    def scripted(self, *turns: Turn) -> Iterator[None]:
        """:meth:`add` for the ``with`` block only: turns it did not use are dropped on the
        way out, so a server shared by many tests never answers a later test with them."""
        self.add(*turns)
        try:
            yield
        finally:
            with self._lock:
                self._turns = [t for t in self._turns if not any(t is mine for mine in turns)]

    def fail_next(self, status: int = 500, count: int = 1, *, message: str | None = None,
                  retry_after_s: float | None = None) -> None:
        """Answer the next ``count`` requests with HTTP ``status`` (turns are not used)."""
        with self._lock:
            text = message or f"scripted failure (HTTP {status})"
            self._failures.extend([(status, text, retry_after_s)] * count)

    @contextlib.contextmanager
    def failing(self, status: int = 500, count: int = 1, **kwargs: Any) -> Iterator[None]:
        """:meth:`fail_next` for the ``with`` block only: failures it did not use are
        dropped on the way out, even when the block raised, so a server shared by many
        tests never carries one test's fault into the next."""
        self.fail_next(status, count, **kwargs)
        try:
            yield
        finally:
            with self._lock:
                self._failures.clear()

    # --- observations ------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def remaining_turns(self) -> int:
        with self._lock:
            return len(self._turns)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Start serving (blocks until the port accepts connections, at most 10 s)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])
        # No log_config/log_level: uvicorn would otherwise reconfigure process-wide loggers.
        config = uvicorn.Config(app, log_level=None, access_log=False, lifespan="off",
                                log_config=None, timeout_graceful_shutdown=1)
        logging.getLogger("uvicorn.error").addFilter(_hide_scripted_cuts)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="scripted-llm", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the scripted LLM server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving, dropping open streams; waits for the thread (at most 5 s)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ScriptedLlmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ScriptedLlmServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # --- HTTP handlers (run in the server thread) --------------------------
    async def _models(self, request: Request) -> Response:
        self._record(request, {})
        return JSONResponse({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}]})

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = self._record(request, body if isinstance(body, dict) else {})
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            status, message, retry_after = failure
            headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
            return _error(record, status, message, "server_error", headers)
        problem = validate_request(body) if isinstance(body, dict) else "request body must be JSON"
        if problem is None and self.reject_stream_options and "stream_options" in body:
            problem = "Unrecognized request argument supplied: stream_options"
        if problem is None and self.reject_response_format and "response_format" in body:
            problem = "response_format is not supported by this server"
        if problem is not None:
            return _error(record, 400, problem, "invalid_request_error")
        turn = self._take_turn(body["messages"][-1])
        if turn is None:
            return _error(record, 500, "scripted server: no turn matches the last message "
                          f"{body['messages'][-1]!r}", "server_error")
        stream = bool(body.get("stream"))
        include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
        rendered = render(turn, request_id=f"chatcmpl-{len(self._requests):06d}",
                          model=str(body["model"]), messages=body["messages"],
                          include_usage=include_usage, args_chunk_chars=self.args_chunk_chars)
        if not stream:
            await asyncio.sleep(turn.first_chunk_delay_s)
            if turn.hold is not None:
                await asyncio.to_thread(turn.hold.wait, 120)
            record.finished.set()
            return JSONResponse(rendered.completion)
        delay = self.chunk_delay_s if turn.chunk_delay_s is None else turn.chunk_delay_s
        return _SseResponse(record, rendered, turn, delay)

    def _record(self, request: Request, body: dict[str, Any]) -> RecordedRequest:
        record = RecordedRequest(request.method, request.url.path, body)
        with self._lock:
            self._requests.append(record)
        return record

    def _take_turn(self, last: dict[str, Any]) -> Turn | None:
        with self._lock:
            for index, turn in enumerate(self._turns):
                if turn.when is None or turn.when(last):
                    return self._turns.pop(index)
        return self.default


def _error(record: RecordedRequest, status: int, message: str, kind: str,
           headers: dict[str, str] | None = None) -> Response:
    record.status = status
    record.finished.set()
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": None}}, status_code=status, headers=headers)


class _SseResponse(Response):
    """Streams rendered chunks as ``data:`` lines, watching for the client leaving."""

    def __init__(self, record: RecordedRequest, rendered: Rendered, turn: Turn,
                 chunk_delay_s: float) -> None:
        super().__init__(media_type="text/event-stream", headers={"cache-control": "no-cache"})
        self.record, self.rendered, self.turn, self.chunk_delay_s = (
            record, rendered, turn, chunk_delay_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            payloads = [f"data: {json.dumps(c)}\n\n" for c in self.rendered.chunks]
            if self.turn.end_after is not None:  # cut short, but ended cleanly
                payloads = payloads[: self.turn.end_after]
            for index, payload in enumerate([*payloads, "data: [DONE]\n\n"]):
                delay = self.turn.first_chunk_delay_s if index == 0 else self.chunk_delay_s
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), delay)
                if gone.is_set():
                    self.record.disconnected = True
                    return
                if index == self.turn.disconnect_after:
                    raise _CutConnection("scripted disconnect")
                await send({"type": "http.response.body", "body": payload.encode(),
                            "more_body": True})
                self.record.chunks_sent += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            self.record.finished.set()
