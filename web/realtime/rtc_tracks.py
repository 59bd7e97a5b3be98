"""Media of one WebRTC call: the agent's outgoing audio track and the incoming-audio pump.

The outgoing :class:`AgentAudioTrack` pulls one 20 ms frame from a
:class:`~pipelines.realtime.audio_out.FrameQueue` per ``recv()``, paced by real
time from the track's own timestamps (silence when nothing is queued), so the
session's ``clear()`` silences the speaker at the next frame.

:func:`pump_input` reads the browser's decoded audio (aiortc gives 48 kHz s16
stereo frames of 960 samples), down-mixes it to mono int16 and feeds it to the
session in 40 ms pieces; the session resamples it for its VAD and STT.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from pipelines.realtime.audio_out import FrameQueue

log = logging.getLogger(__name__)

FeedAudio = Callable[[np.ndarray, int], Awaitable[None]]
"""``session.feed_audio``: mono int16 samples at a rate in Hz."""


class AgentAudioTrack(MediaStreamTrack):
    """Outgoing audio: ``queue.frame_samples`` mono s16 samples per frame at the queue's rate.

    ``clock`` returns seconds (monotonic); injected so tests can drive time.
    """

    kind = "audio"

    def __init__(self, queue: FrameQueue, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.queue = queue
        self._clock = clock
        self._rate = queue.sample_rate
        self._time_base = fractions.Fraction(1, self._rate)
        self._start: float | None = None
        self._pts = 0
        self.frames_sent = 0

    async def recv(self) -> AudioFrame:
        """The next frame, once its play-out time has come. Safe to cancel."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = self._clock()
        else:
            self._pts += self.queue.frame_samples
            wait = self._start + self._pts / self._rate - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self.queue.next_frame()
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame


def to_mono_int16(frame: AudioFrame) -> np.ndarray:
    """Down-mix a decoded s16 frame (packed or planar, any channel count) to mono int16."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    planar = frame.format.is_planar
    mixed = data.reshape(channels, -1) if planar else data.reshape(-1, channels).T
    if channels == 1:
        return np.ascontiguousarray(mixed[0], dtype=np.int16)
    return mixed.astype(np.int32).mean(axis=0).astype(np.int16)


async def pump_input(track: MediaStreamTrack, feed: FeedAudio, batch_ms: int = 40) -> None:
    """Feed the remote ``track`` to ``feed`` in ``batch_ms`` pieces until the track ends.

    Batching two 20 ms frames halves the hand-overs into the session's worker threads
    for 20 ms of added delay. Returns when the track ends (hang-up); cancel to stop
    early (safe: a batch is either handed over whole or dropped).
    """
    pending: list[np.ndarray] = []
    pending_rate = 0
    frames = 0
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            log.debug("incoming audio ended after %d frames", frames)
            return
        if not isinstance(frame, AudioFrame):
            continue
        if frame.format.name not in ("s16", "s16p"):
            log.warning("dropping incoming audio in unexpected format %s", frame.format.name)
            continue
        frames += 1
        if pending and frame.sample_rate != pending_rate:
            await feed(np.concatenate(pending), pending_rate)
            pending = []
        pending.append(to_mono_int16(frame))
        pending_rate = frame.sample_rate
        if sum(len(p) for p in pending) * 1000 >= batch_ms * pending_rate:
            await feed(np.concatenate(pending), pending_rate)
            pending = []
