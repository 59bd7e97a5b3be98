"""Silero VAD v6 on onnxruntime alone (no torch).

The model takes 512 new samples at 16 kHz (32 ms) preceded by the last 64
samples of the previous frame, plus a recurrent state. Two exports are
supported, found without importing either package (``silero_vad``'s
``__init__`` imports torch):

* ``silero_vad/data/silero_vad.onnx`` (package ``silero-vad``): inputs
  ``input`` (1, 576), ``state`` (2, 1, 128), ``sr`` (int64 scalar);
* ``faster_whisper/assets/silero_vad_v6.onnx`` (package ``faster-whisper``):
  inputs ``input`` (1, 576), ``h`` and ``c`` (1, 1, 128 each).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64

_CANDIDATES = (
    ("silero_vad", Path("data/silero_vad.onnx")),
    ("faster_whisper", Path("assets/silero_vad_v6.onnx")),
)


def find_silero_model() -> Path:
    """Path of a bundled Silero v6 ONNX model; FileNotFoundError naming the packages to install."""
    for package, relative in _CANDIDATES:
        spec = importlib.util.find_spec(package)  # locates, does not import
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder) / relative
            if path.is_file():
                return path
    raise FileNotFoundError(
        "no Silero VAD model found: install silero-vad or faster-whisper, or pass model_path"
    )


class SileroClassifier:
    """:class:`~voice.vad.base.SpeechClassifier` running Silero v6 (32 ms frames, 16 kHz).

    One intra-op and one inter-op thread: about 0.1 ms per frame. Stateful;
    one instance per stream, not thread-safe.
    """

    sample_rate = SAMPLE_RATE
    frame_samples = FRAME_SAMPLES

    def __init__(self, model_path: Path | None = None) -> None:
        self.model_path = model_path or find_silero_model()
        self.model_name = "silero-v6" if model_path is None else f"silero:{model_path}"
        """Names the model in :class:`~voice.vad.base.FrameProbabilities` (the bundled
        v6 model, or the file given)."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in self._session.get_inputs()}
        if {"input", "state", "sr"} <= names:
            self._split_state = False
        elif {"input", "h", "c"} <= names:
            self._split_state = True
        else:
            raise ValueError(
                f"{self.model_path}: not a Silero v5/v6 model (inputs {sorted(names)})"
            )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        if len(frame) != FRAME_SAMPLES:
            raise ValueError(f"expected {FRAME_SAMPLES} samples, got {len(frame)}")
        x = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None, :]
        out, self._state = self._run(x, self._state)
        self._context = x[0, -CONTEXT_SAMPLES:]
        return float(out[0])

    def fresh_state(self, lanes: int) -> _LaneState:
        """The state of ``lanes`` new streams (for :mod:`voice.vad.lanes`)."""
        return _LaneState(
            np.zeros((2, lanes, 128), dtype=np.float32),
            np.zeros((lanes, CONTEXT_SAMPLES), dtype=np.float32),
        )

    def step(self, frames: np.ndarray, state: object) -> tuple[np.ndarray, _LaneState]:
        """Scores of one frame per stream (``lanes`` x 512) and the streams' next state;
        the classifier's own stream is untouched."""
        if not isinstance(state, _LaneState):
            raise TypeError("state must come from fresh_state or step")
        x = np.concatenate([state.context, frames.astype(np.float32, copy=False)], axis=1)
        out, rnn = self._run(x, state.rnn)
        return out, _LaneState(rnn, x[:, -CONTEXT_SAMPLES:])

    def _run(self, x: np.ndarray, rnn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model call on ``x`` (batch x 576) from ``rnn`` (2 x batch x 128)."""
        if self._split_state:
            out, h, c = self._session.run(None, {"input": x, "h": rnn[:1], "c": rnn[1:]})
            rnn = np.concatenate([h, c]).astype(np.float32, copy=False)
        else:
            out, rnn = self._session.run(None, {"input": x, "state": rnn, "sr": self._sr})
        return np.asarray(out, dtype=np.float32).reshape(-1), rnn


@dataclass(frozen=True, slots=True)
class _LaneState:
    """Recurrent state (2 x lanes x 128) and last 64 samples of each lane."""

    rnn: np.ndarray
    context: np.ndarray
