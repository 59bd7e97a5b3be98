"""Agent audio for media transports (WebRTC): a clearable queue of fixed-size frames.

The transport's media track pulls one frame per ``frame_ms`` with
:meth:`FrameQueue.next_frame` and gets silence when nothing is queued or while
paused; so :meth:`~FrameQueue.clear` silences the speaker at the next frame and
the counters tell exactly how much agent audio was played.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import numpy as np


class AudioOutput(Protocol):
    """Where a session plays agent audio instead of sending ``response.output_audio.delta``."""

    @property
    def sample_rate(self) -> int: ...

    async def write(self, samples: np.ndarray) -> None:
        """Queue mono int16 audio; waits while more than the lead is queued. Safe to cancel."""
        ...

    def flush(self) -> None:
        """The utterance ended: let a final partial frame play (padded with silence)."""

    def pause(self) -> None:
        """Play silence, keeping what is queued (barge-in hold)."""

    def resume(self) -> None:
        """Continue playing what is queued."""

    def clear(self) -> None:
        """Drop everything queued; playback falls silent at the next frame."""

    def written_samples(self) -> int:
        """Samples accepted by :meth:`write` since creation (cleared ones included)."""
        ...

    def played_samples(self) -> int:
        """Samples of agent audio actually played out since creation."""
        ...

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be played."""
        ...


class FrameQueue:
    """An :class:`AudioOutput` feeding a real-time consumer frame by frame.

    ``sample_rate`` Hz, ``frame_ms`` per frame, ``lead_ms`` queued at most before
    :meth:`write` waits.
    """

    def __init__(self, sample_rate: int = 48000, frame_ms: int = 20, lead_ms: int = 200) -> None:
        self._rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._max_frames = max(1, lead_ms // frame_ms)
        self._frames: deque[np.ndarray] = deque()
        self._partial = np.zeros(0, dtype=np.int16)
        self._written = 0
        self._played = 0
        self._dropped = 0
        self._paused = False
        self._space = asyncio.Event()
        self._space.set()
        self._silence = np.zeros(self.frame_samples, dtype=np.int16)

    @property
    def sample_rate(self) -> int:
        return self._rate

    async def write(self, samples: np.ndarray) -> None:
        self._written += len(samples)
        pending = np.concatenate([self._partial, samples.astype(np.int16, copy=False)])
        whole = len(pending) // self.frame_samples
        for n in range(whole):
            while len(self._frames) >= self._max_frames:
                self._space.clear()
                await self._space.wait()
            self._frames.append(pending[n * self.frame_samples : (n + 1) * self.frame_samples])
        self._partial = pending[whole * self.frame_samples :]

    def flush(self) -> None:
        """Queue the last partial frame, padded with silence (end of an utterance)."""
        if len(self._partial):
            frame = np.zeros(self.frame_samples, dtype=np.int16)
            frame[: len(self._partial)] = self._partial
            self._frames.append(frame)
            self._written += self.frame_samples - len(self._partial)
            self._partial = np.zeros(0, dtype=np.int16)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def clear(self) -> None:
        self._dropped += sum(len(f) for f in self._frames) + len(self._partial)
        self._frames.clear()
        self._partial = np.zeros(0, dtype=np.int16)
        self._space.set()

    def written_samples(self) -> int:
        return self._written

    def played_samples(self) -> int:
        return self._played

    @property
    def queued_samples(self) -> int:
        return sum(len(f) for f in self._frames) + len(self._partial)

    def next_frame(self) -> np.ndarray:
        """The next ``frame_ms`` of output (silence when idle or paused). Never blocks."""
        if self._paused or not self._frames:
            return self._silence
        frame = self._frames.popleft()
        self._played += len(frame)
        if len(self._frames) < self._max_frames:
            self._space.set()
        return frame
