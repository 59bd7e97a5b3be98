"""End-of-turn model: Pipecat's Smart-Turn v3.2 (BSD-2-Clause) on onnxruntime.

The model file ``smart-turn-v3.2-cpu.onnx`` ships inside the ``pipecat-ai``
wheel (installed with ``--no-deps``; only the file is used, found without
importing pipecat). It reads the last 8 s of an utterance at 16 kHz as
Whisper-style log-mel features (80 mels, 800 frames of 10 ms, waveform
normalised to zero mean and unit variance first) and returns the probability
that the speaker has finished their turn. Features come from faster-whisper's
numpy :class:`FeatureExtractor`, so no torch or transformers at run time.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 8 * SAMPLE_RATE
"""The model sees the last 8 s (128000 samples); shorter audio is left-padded with silence."""
_MODEL_FILE = Path("audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
_FRAMES = 800


def find_smart_turn_model() -> Path:
    """Path of the Smart-Turn v3.2 ONNX file in the installed ``pipecat-ai`` wheel."""
    spec = importlib.util.find_spec("pipecat")  # locates, does not import
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _MODEL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        "no Smart-Turn model found: pip install --no-deps 'pipecat-ai==1.14.0' (see scripts/setup.sh)"
    )


def smart_turn_available() -> bool:
    """Whether the turn model file is installed."""
    try:
        find_smart_turn_model()
    except FileNotFoundError:
        return False
    return True


class SmartTurnModel:
    """Probability that an utterance is complete. One intra-op thread; about 0.1 s per
    call on one CPU core, so call it in a worker thread (:func:`voice.workers.run_on`).
    Stateless between calls; the ONNX session is thread-safe."""

    workers = 1
    """Calls it can run at once within the CPU budget."""

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path or find_smart_turn_model()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._features = FeatureExtractor(
            feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=160, chunk_length=8, n_fft=400
        )

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) float32 log-mel features of the last 8 s of 16 kHz float audio."""
        window = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
        if len(window) < WINDOW_SAMPLES:
            window = np.pad(window, (WINDOW_SAMPLES - len(window), 0))
        window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
        return self._features(window, padding=0)[:, :_FRAMES].astype(np.float32)

    def probability(self, audio: np.ndarray) -> float:
        """P(turn complete) in [0, 1] for mono 16 kHz float32 (or int16) audio ending now.

        Blocking (about 0.1 s)."""
        if audio.dtype == np.int16:
            audio = audio.astype(np.float32) / 32768.0
        out = self._session.run(None, {"input_features": self.features(audio)[None]})[0]
        return float(np.asarray(out).reshape(-1)[0])


_shared: SmartTurnModel | None = None
_shared_lock = threading.Lock()


def turn_model_available() -> bool:
    """Whether the turn model is installed (cached after the first look)."""
    global _available
    if _available is None:
        _available = smart_turn_available()
    return _available


_available: bool | None = None


def _load_shared() -> SmartTurnModel:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SmartTurnModel()
        return _shared


async def shared_turn_model() -> SmartTurnModel:
    """The process-wide turn model, loaded in a worker thread on first use. Safe to cancel."""
    if _shared is not None:
        return _shared
    return await asyncio.to_thread(_load_shared)
