"""Run the real application on a loopback port in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, app: Any, *, startup_timeout_s: float = 120.0, **config: Any) -> None:
        self.port = free_port()
        self._config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **config
        )
        self.server = uvicorn.Server(self._config)
        self._thread = threading.Thread(target=self.server.run, name="test-server", daemon=True)
        self._timeout = startup_timeout_s

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("test server failed to start (see its log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("test server did not start in time")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
