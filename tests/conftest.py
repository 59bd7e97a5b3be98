"""Shared test helpers: the real audio in ../shared/data and loaders for it."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR
