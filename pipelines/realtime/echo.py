"""Echo rejection: the agent's own voice coming back through the user's microphone.

A speakerphone or a laptop without echo cancellation feeds the agent's audio
back into the input. :class:`EchoGuard` keeps the loudness envelope (10 ms
frames, dB) of the agent audio the session just sent, stamped with the clock
time it was sent, and compares the envelope of incoming audio against it at
every plausible echo delay: input whose envelope follows the sent audio that
closely is the agent, not a user. Once an echo path is found its delay is
remembered and the search narrows to it. Text is a second witness: a
transcript made of the words the agent just said is echo too.

Pure numpy, no threads; times are session clock seconds.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

FRAME_S = 0.010
"""Envelope frame length (s)."""
_FLOOR_DB = -70.0
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class EchoOptions:
    """Echo detection knobs; times in ms."""

    max_delay_ms: int = 800
    """Longest playout-to-microphone delay searched (device buffers plus the room)."""
    window_ms: int = 600
    """Input envelope compared at each check."""
    min_voiced_ms: int = 150
    """Voiced input needed in the window before it can be called echo."""
    correlation: float = 0.9
    """Envelope correlation at or above which input is the agent's echo (any delay)."""
    locked_correlation: float = 0.7
    """The same, within ``lock_ms`` of the delay at which echo was last found."""
    lock_ms: int = 50
    memory_s: float = 8.0
    """Agent audio remembered."""


def envelope_db(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Loudness (dBFS) of each whole 10 ms frame of int16 or float audio."""
    audio = samples.astype(np.float32)
    if samples.dtype == np.int16:
        audio /= 32768.0
    n = int(sample_rate * FRAME_S)
    frames = len(audio) // n
    if frames == 0:
        return np.zeros(0, dtype=np.float32)
    power = np.mean(audio[: frames * n].reshape(frames, n) ** 2, axis=1)
    return np.maximum(10.0 * np.log10(power + 1e-12), _FLOOR_DB).astype(np.float32)


class EchoGuard:
    """Per session: remembers what the agent sent and tells echo from a user."""

    def __init__(self, options: EchoOptions | None = None) -> None:
        self.options = options or EchoOptions()
        self._ref = np.zeros(0, dtype=np.float32)
        self._ref_origin: float | None = None
        """Clock time of ``_ref[0]``."""
        self._last_sent = -1e9
        self._words: deque[tuple[float, str]] = deque()
        self._delay_frames: int | None = None
        self._input = np.zeros(0, dtype=np.float32)
        self._input_end = 0.0

    # --- the agent side ------------------------------------------------------
    def agent_audio(self, samples: np.ndarray, sample_rate: int, sent_at: float) -> None:
        """Record agent audio handed to the client at clock time ``sent_at`` (s); it is
        assumed to play once everything sent before it has played."""
        env = envelope_db(samples, sample_rate)
        if len(env) == 0:
            return
        if self._ref_origin is None or sent_at - self._last_sent > self.options.memory_s:
            self._ref_origin, self._ref = sent_at, np.zeros(0, dtype=np.float32)
        # The client plays what it receives back to back: audio sent while earlier
        # audio is still playing starts when that ends, not when it was sent.
        start = max(int(round((sent_at - self._ref_origin) / FRAME_S)), len(self._ref))
        if start > len(self._ref):
            gap = np.full(start - len(self._ref), _FLOOR_DB, dtype=np.float32)
            self._ref = np.concatenate([self._ref, gap])
        self._ref = np.concatenate([self._ref[:start], env])
        self._last_sent = self._ref_origin + len(self._ref) * FRAME_S
        keep = int(self.options.memory_s / FRAME_S)
        if len(self._ref) > keep:
            cut = len(self._ref) - keep
            self._ref = self._ref[cut:]
            self._ref_origin += cut * FRAME_S

    def agent_text(self, text: str, at: float) -> None:
        """Record words the agent spoke at clock time ``at`` (s)."""
        self._words.extend((at, w) for w in _WORD.findall(text.lower()))
        while self._words and at - self._words[0][0] > self.options.memory_s:
            self._words.popleft()

    def agent_recent(self, now: float) -> bool:
        """Whether agent audio may still be echoing at ``now``."""
        return now - self._last_sent < self.options.max_delay_ms / 1000.0 + 0.5

    # --- the input side ------------------------------------------------------
    def input_audio(self, pcm: np.ndarray, sample_rate: int, received_at: float) -> None:
        """Record input audio that finished arriving at clock time ``received_at`` (s)."""
        env = envelope_db(pcm, sample_rate)
        keep = int((self.options.window_ms + 2000) / 1000 / FRAME_S)
        self._input = np.concatenate([self._input, env])[-keep:]
        self._input_end = received_at

    def is_echo(self, now: float) -> bool:
        """Whether the recent input is explained by the agent's audio."""
        if self._ref_origin is None or not self.agent_recent(now):
            return False
        n = int(self.options.window_ms / 1000 / FRAME_S)
        window = self._input[-n:]
        if len(window) < n // 2:
            return False
        loud = window > max(float(window.max()) - 30.0, -55.0)
        if loud.sum() * FRAME_S * 1000 < self.options.min_voiced_ms:
            return False
        # Flatten the microphone's background noise: it is in the input, not in the reference.
        window = np.maximum(window, float(np.percentile(self._input, 10)) + 6.0)
        corr, delay, locked = self._best_alignment(window)
        log.debug("echo check: correlation %.2f at %d ms", corr, delay * 10)
        if corr >= (self.options.locked_correlation if locked else self.options.correlation):
            self._delay_frames = delay
            return True
        return False

    def _best_alignment(self, window: np.ndarray) -> tuple[float, int, bool]:
        """Best correlation, its delay (frames) and whether that is near the known echo
        delay: searched there first, over the whole range when that fails."""
        max_delay = int(self.options.max_delay_ms / 1000 / FRAME_S)
        if self._delay_frames is not None:
            d, near = self._delay_frames, int(self.options.lock_ms / 1000 / FRAME_S)
            lags = range(max(0, d - near), min(max_delay, d + near) + 1)
            corr, delay = self._correlate(window, lags)
            if corr >= self.options.locked_correlation:
                return corr, delay, True
        return (*self._correlate(window, range(0, max_delay + 1)), False)

    def _correlate(self, window: np.ndarray, delays: range) -> tuple[float, int]:
        assert self._ref_origin is not None
        end_index = int(round((self._input_end - self._ref_origin) / FRAME_S))
        best, best_delay = -1.0, 0
        w = window - window.mean()
        w_norm = float(np.linalg.norm(w))
        if w_norm == 0.0:
            return -1.0, 0
        pad = len(window) + delays.stop
        silence = np.full(pad, _FLOOR_DB, np.float32)
        padded = np.concatenate([silence, self._ref, silence])
        for delay in delays:
            stop = end_index - delay
            start = stop - len(window)
            if start < -pad or stop > len(self._ref) + pad:
                continue
            ref = padded[start + pad : stop + pad]
            if float(ref.max()) < -50.0:
                continue
            ref = np.maximum(ref, float(ref.max()) - 35.0)
            r = ref - ref.mean()
            r_norm = float(np.linalg.norm(r))
            if r_norm == 0.0:
                continue
            corr = float(w @ r) / (w_norm * r_norm)
            if corr > best:
                best, best_delay = corr, delay
        return best, best_delay

    def text_is_echo(self, transcript: str) -> bool:
        """Whether ``transcript`` is made (80 %+) of words the agent said recently."""
        words = _WORD.findall(transcript.lower())
        if not words or not self._words:
            return False
        said = {w for _, w in self._words}
        return sum(w in said for w in words) >= 0.8 * len(words)
