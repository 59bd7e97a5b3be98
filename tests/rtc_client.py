"""A Python WebRTC caller for tests and benchmarks: aiortc with a clip-playing microphone.

:class:`ClipTrack` sends queued speech clips (48 kHz mono int16) in real time,
then silence, and records when each clip started playing. :class:`RtcCaller`
posts its offer to ``/v1/realtime/calls``, keeps every event of the
``oai-events`` channel with its arrival time and measures the level of every
agent audio frame it receives. Loopback only: no ICE servers, host candidates
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from tests import strict_events
from tests.conftest import load_clip
from voice.audio.resample import resample
from web.realtime.rtc_ice import ice_configuration, use_host_addresses
from web.realtime.rtc_tracks import to_mono_int16

RATE = 48000
FRAME = 960  # 20 ms
SILENT_RMS = 100.0
"""Frames with an RMS (int16 units) at or below this count as silence."""


def clip48k(relative: str, pad_s: float = 1.5) -> np.ndarray:
    """A clip from ../shared/data as 48 kHz int16, followed by ``pad_s`` s of silence."""
    audio = resample(load_clip(relative), 16000, RATE)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    return np.concatenate([pcm, np.zeros(int(pad_s * RATE), dtype=np.int16)])


def voiced_span_s(
    pcm: np.ndarray, rate: int = RATE, threshold: float = 500.0
) -> tuple[float, float]:
    """Start and end (s) of the part of ``pcm`` louder than ``threshold`` RMS in 20 ms frames."""
    step = rate // 50
    frames = len(pcm) // step
    rms = np.sqrt((pcm[: frames * step].astype(np.float64).reshape(frames, step) ** 2).mean(1))
    loud = np.flatnonzero(rms > threshold)
    if len(loud) == 0:
        raise ValueError("the clip has no voiced audio")
    return loud[0] * step / rate, (loud[-1] + 1) * step / rate


@dataclass
class Played:
    """A clip handed to :class:`ClipTrack`; ``started_at`` is monotonic time (s) once playing."""

    pcm: np.ndarray
    started_at: float | None = None


class ClipTrack(MediaStreamTrack):
    """Microphone stand-in: queued clips in real time, then silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._clips: deque[Played] = deque()
        self._offset = 0
        self._start: float | None = None
        self._pts = 0

    def play(self, pcm: np.ndarray) -> Played:
        """Queue ``pcm`` (48 kHz mono int16); returns its record (start time set when sent)."""
        played = Played(pcm)
        self._clips.append(played)
        return played

    @property
    def idle(self) -> bool:
        return not self._clips

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = np.zeros(FRAME, dtype=np.int16)
        if self._clips:
            clip = self._clips[0]
            if clip.started_at is None:
                clip.started_at = time.monotonic()
            part = clip.pcm[self._offset : self._offset + FRAME]
            samples[: len(part)] = part
            self._offset += FRAME
            if self._offset >= len(clip.pcm):
                self._clips.popleft()
                self._offset = 0
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._pts, fractions.Fraction(1, RATE)
        return frame


@dataclass
class RtcCaller:
    """One call to the server: microphone track, ``oai-events`` channel, received audio."""

    base_url: str
    mic: ClipTrack = field(default_factory=ClipTrack)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    frames: list[tuple[float, float]] = field(default_factory=list)
    """(monotonic time s, RMS) of every agent audio frame received."""
    location: str | None = None

    def __post_init__(self) -> None:
        use_host_addresses(["127.0.0.1"])
        self.pc = RTCPeerConnection(ice_configuration([]))
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("message", self._on_message)
        self.pc.addTrack(self.mic)
        self.pc.on("track", self._on_track)
        self._reader: asyncio.Task[None] | None = None
        self._new_event = asyncio.Event()
        self._extensions = False
        """The caller asked for extensions (``session.voice_extensions``)."""

    async def offer(self) -> str:
        """Create the offer (all candidates gathered) and return its SDP."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def connect(self, **post: Any) -> None:
        """Post the offer as ``application/sdp`` and apply the answer; raises on HTTP errors."""
        sdp = await self.offer()
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{self.base_url}/v1/realtime/calls",
                content=sdp,
                headers={"content-type": "application/sdp"},
                **post,
            )
        response.raise_for_status()
        self.location = response.headers.get("location")
        await self.accept(response.text)

    async def close(self) -> None:
        """Stop reading audio and close the peer connection (the server sees a hang-up)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pc.close()

    def send(self, event: dict[str, Any]) -> None:
        raw = json.dumps(event)
        self._extensions = self._extensions or strict_events.opts_in(raw)
        self.channel.send(raw)

    # --- events ------------------------------------------------------------------
    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.events.append((time.monotonic(), event))
        self._new_event.set()
        strict_events.check(event, extensions=self._extensions)  # recorded: fails the test

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["type"] == kind]

    async def wait_for(self, kind: str, timeout_s: float = 30.0, count: int = 1) -> dict[str, Any]:
        """The ``count``-th event of type ``kind`` (waits for it; raises TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            while len(found := self.of_type(kind)) < count:
                self._new_event.clear()
                await self._new_event.wait()
        return found[count - 1]

    # --- agent audio ---------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.create_task(self._read_audio(track))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, AudioFrame):
                continue
            pcm = to_mono_int16(frame).astype(np.float64)
            self.frames.append((time.monotonic(), float(np.sqrt((pcm**2).mean()))))

    def voiced_frames(self, after: float = 0.0) -> list[float]:
        """Arrival times of non-silent agent frames received after ``after`` (monotonic s)."""
        return [t for t, rms in self.frames if t > after and rms > SILENT_RMS]

    async def wait_for_voice(self, after: float = 0.0, timeout_s: float = 30.0) -> float:
        """Arrival time of the first non-silent agent frame after ``after``."""
        await eventually(lambda: bool(self.voiced_frames(after)), timeout_s)
        return self.voiced_frames(after)[0]


async def eventually(
    condition: Callable[[], bool], timeout_s: float, every_s: float = 0.02
) -> None:
    """Poll ``condition`` (state owned by another task or thread) until true.

    Raises TimeoutError after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    for _ in itertools.count():
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition still false after {timeout_s} s")
        await asyncio.sleep(every_s)
