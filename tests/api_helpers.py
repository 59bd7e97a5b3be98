"""Helpers shared by the HTTP API tests: models loaded once per module, servers
that reuse them (so a second server on the same data folder starts in a moment),
and sample uploads that are broken in known ways."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from pipelines.services import Services
from tests.servers import ServerThread
from voice.settings import Settings, load_settings
from web.app import create_app

MIB = 1 << 20
TIMEOUT_S = 60.0
"""HTTP timeout for test requests (a loaded 2-core machine answers slowly)."""


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.request`` with :data:`TIMEOUT_S` unless a timeout is given."""
    kwargs.setdefault("timeout", TIMEOUT_S)
    return httpx.request(method, url, **kwargs)


def api_settings(base: Path, **overrides: Any) -> Settings:
    """Settings for API tests: the small English model for both realtime and batch
    (one model in memory), data under ``base``."""
    values: dict[str, Any] = {
        "cache_dir": base / "cache",
        "data_dir": base / "data",
        "stt_model": "tiny.en",
        "realtime_stt_model": "tiny.en",
        "llm_base_url": "http://127.0.0.1:9/v1",  # never called unless a test sets one
    }
    values.update(overrides)
    return load_settings(**values)


def load_services(settings: Settings) -> Services:
    """Load the models once (blocking); the servers below share them."""
    return asyncio.run(Services.start(settings, warm_up=False))


def close_services(services: Services) -> None:
    with contextlib.suppress(Exception):  # its HTTP pool may belong to a server's loop
        asyncio.run(services.aclose())


def module_services(base: Path, llm_base_url: str) -> Iterator[Services]:
    """The body of a module-scoped ``services`` fixture (``yield from`` it): models
    loaded once under ``base``, talking to the LLM at ``llm_base_url``."""
    loaded = load_services(api_settings(base, llm_base_url=llm_base_url))
    try:
        yield loaded
    finally:
        close_services(loaded)


@contextlib.contextmanager
def serve(settings: Settings, services: Services) -> Iterator[ServerThread]:
    """The real app on a loopback port with already-loaded ``services``."""
    with ServerThread(create_app(settings, services)) as server:
        yield server


def leftovers(data_dir: Path) -> list[Path]:
    """Files under ``data_dir`` other than the job database."""
    return [p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith("jobs.sqlite3")]


def mp3_bytes(seconds: float = 3.0) -> bytes:
    """A valid MP3 (a tone), encoded here with PyAV."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        pcm = (np.sin(np.arange(int(16000 * seconds)) / 10) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def corrupt_mp3() -> bytes:
    """An MP3 whose header is intact and whose audio data is noise: undecodable."""
    data = mp3_bytes()
    return data[:64] + np.random.default_rng(0).bytes(len(data) - 64)


BAD_UPLOADS: list[tuple[str, bytes, int, str]] = [
    # (filename, content, status, error code)
    ("notes.txt", b"Minutes of the meeting\nAlice: hello\n" * 20, 415, "unsupported_format"),
    ("empty.wav", b"", 400, "empty_file"),
    ("broken.mp3", corrupt_mp3(), 400, "corrupt_file"),
]
