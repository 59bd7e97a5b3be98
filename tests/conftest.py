"""Shared test helpers: the real audio in ../shared/data and loaders for it."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipelines.services import Services
from tests import strict_events
from tests.api_helpers import module_services
from tests.fakes.llm_script import Turn
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from voice.settings import load_settings
from web.app import create_app

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

LONGEST_MODULES = (
    "test_live_speakers", "test_browser", "test_soak", "test_stt", "test_job_workers",
    "test_speech_recall", "test_client_frameworks_defaults", "test_embedded_defaults",
    "test_barge_in", "test_diarize", "test_realtime_ws", "test_durability_server",
    "test_client_openai_agents", "test_embedded_llm_load", "test_meeting", "test_semantic_vad",
)
"""Modules by wall time, longest first (``--durations=0``): they start first, so that with
``pytest -n 3 --dist loadfile`` (scripts/test.sh) the workers end close together."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run :data:`LONGEST_MODULES` first, in that order; the rest keep theirs."""
    rank = {name: n for n, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def data_path(relative: str) -> Path:
    """Path of a file in ../shared/data; fails the test clearly when it is missing."""
    path = DATA_DIR / relative
    if not path.exists():
        pytest.fail(f"test data missing: {path} (../shared/data must sit beside the checkout)")
    return path


def load_clip(relative: str) -> np.ndarray:
    """A 16 kHz mono 16-bit WAV from ../shared/data as float32 samples in [-1, 1)."""
    with wave.open(str(data_path(relative)), "rb") as wav:
        assert wav.getframerate() == 16000 and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def reference_text(relative_wav: str) -> str:
    """The ``<stem>.txt`` reference transcript beside a clip."""
    return data_path(relative_wav).with_suffix(".txt").read_text().strip()


@pytest.fixture(scope="session", autouse=True)
def strict_clients() -> Iterator[None]:
    """Route every realtime WebSocket client's messages through :mod:`tests.strict_events`
    (for the whole run, so module fixtures' clients are checked too)."""
    with pytest.MonkeyPatch.context() as patch:
        strict_events.install(patch)
        yield


@pytest.fixture(autouse=True)
def strict_server_events(strict_clients: None) -> Iterator[None]:
    """Every realtime server event a test receives must validate strictly against the
    ``openai`` SDK (see :mod:`tests.strict_events`); the test fails on the first that does not."""
    yield
    found, strict_events.violations[:] = list(strict_events.violations), []
    if found:
        pytest.fail("non-conforming server event: " + found[0], pytrace=False)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLlmServer]:
    """A scripted OpenAI-compatible LLM server shared by the realtime tests.

    Tests add turns with ``when=`` matchers on their own words, so they don't collide.
    """
    with ScriptedLlmServer(default=Turn.say("Hello there. How can I help?")) as server:
        yield server


@pytest.fixture(scope="module")
def services(
    llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """Models for one module's API servers (Whisper tiny.en in both roles), loaded once;
    servers made with :func:`tests.api_helpers.serve` share them."""
    yield from module_services(tmp_path_factory.mktemp("models"), llm.base_url)


@pytest.fixture(scope="session")
def server(llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The real application (real STT, VAD and TTS; the scripted LLM) on a loopback port,
    loaded once for every realtime, WebRTC and browser test."""
    settings = load_settings(
        llm_base_url=llm.base_url,
        cache_dir=tmp_path_factory.mktemp("cache"),
        data_dir=tmp_path_factory.mktemp("data"),
        realtime_max_event_bytes=256 * 1024,
        webrtc_host_addresses=["127.0.0.1"],
        rate_limit_per_minute=0,  # shared by many tests; limits are tested on servers of their own
    )
    with ServerThread(create_app(settings), ws_max_size=1024 * 1024) as running:
        yield running


@pytest.fixture(scope="session")
def embedded_defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The app as ``voice serve`` runs it with no settings (the embedded llama.cpp LLM,
    Whisper tiny.en live and base for meetings, Piper): only the data and cache folders
    are the test's own. Started once for every module that tests the defaults."""
    base = tmp_path_factory.mktemp("defaults")
    settings = load_settings(cache_dir=base / "cache", data_dir=base / "data")
    assert settings.llm_base_url is None  # the embedded LLM, as a user gets it
    with ServerThread(create_app(settings), startup_timeout_s=300) as running:
        yield running
