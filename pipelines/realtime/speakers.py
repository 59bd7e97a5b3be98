"""Who is speaking, live: speaker attribution of a realtime session's user turns.

While a turn is spoken, every ``chunk_ms`` of its 16 kHz audio is embedded in a
worker thread, so when the turn ends only the short tail is left to embed and
the label is usually ready before the final transcription. The turn's
embedding is the duration-weighted mean of its chunks', matched against the
session's :class:`~voice.diarize.online.SpeakerProfiles`.

Embedder calls run in worker threads (the embedder serialises them itself);
profiles are touched only on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np

from voice.audio.decode import AudioDecodeError
from voice.audio.references import decode_reference
from voice.diarize.base import SpeakerEmbedder
from voice.diarize.online import SpeakerMatch, SpeakerProfiles
from voice.workers import run_on

RATE = 16000
"""Sample rate (Hz) of the audio given to attribution."""


@dataclass(frozen=True)
class VoicePart:
    """The embedding of one piece of a turn; times in s from the turn's start."""

    embedding: np.ndarray
    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True)
class TurnSpeakers:
    """A turn's attribution: its main speaker and who spoke when within it."""

    label: str
    segments: tuple[tuple[float, float, str], ...]
    """``(start s, end s, label)`` from the turn's start; one entry unless the voice changed."""


@dataclass(frozen=True)
class SpeakerOptions:
    """Tuning of live attribution; times in ms."""

    threshold: float = 0.55
    """Cosine similarity at which a turn belongs to a speaker already heard."""
    enroll_threshold: float = 0.3
    """Similarity at which a turn is given an enrolled name not yet heard."""
    split_threshold: float = 0.5
    """Inside one turn, a piece less similar than this to the voice so far starts a new
    stretch (another speaker took over without a pause)."""
    chunk_ms: int = 1500
    """Audio embedded in the background while the turn is still being spoken."""
    min_tail_ms: int = 300
    """A tail shorter than this is left out when the turn already has chunk embeddings."""
    min_turn_ms: int = 200
    """Turns shorter than this get no label."""


class TurnVoice:
    """The voice of one user turn, embedded piece by piece. Owned by :class:`SessionSpeakers`."""

    def __init__(self, owner: SessionSpeakers) -> None:
        self._owner = owner
        self._pending: list[np.ndarray] = []
        self._pending_samples = 0
        self._parts: list[asyncio.Task[VoicePart]] = []
        self.samples = 0
        self._embedded = 0
        """Samples handed to embeddings so far."""
        self._paused = False
        self._skipped = 0
        """Samples of trailing silence left out while paused."""

    def add(self, pcm: np.ndarray) -> None:
        """Append 16 kHz int16 audio; starts a background embedding every ``chunk_ms``.
        While paused (:meth:`pause`) the audio is counted but not embedded."""
        if len(pcm) == 0:
            return
        if self._paused:
            self._skipped += len(pcm)
            self.samples += len(pcm)
            return
        self._pending.append(pcm)
        self._pending_samples += len(pcm)
        self.samples += len(pcm)
        if self._pending_samples >= self._owner.options.chunk_ms * RATE // 1000:
            self._embed_pending()

    def pause(self) -> None:
        """Trailing silence began: embed the voiced tail now (when at least ``min_tail_ms``
        long), so the turn's label is ready when the silence ends it; the silence that
        follows is left out until :meth:`resume`. No-op when already paused."""
        if self._paused:
            return
        self._paused = True
        if self._pending_samples * 1000 >= self._owner.options.min_tail_ms * RATE:
            self._embed_pending()

    def resume(self) -> None:
        """Voice again after :meth:`pause`: the silence left out keeps its place in time."""
        if not self._paused:
            return
        self._paused = False
        skipped, self._skipped = self._skipped, 0
        if self._pending_samples:  # inside a piece still to embed: keep it contiguous
            self._pending.append(np.zeros(skipped, dtype=self._pending[-1].dtype))
            self._pending_samples += skipped
        else:
            self._embedded += skipped

    def _embed_pending(self) -> None:
        audio = np.concatenate(self._pending)
        self._pending, self._pending_samples = [], 0
        start_s = self._embedded / RATE
        self._embedded += len(audio)
        self._parts.append(asyncio.create_task(self._owner.embed_part(audio, start_s)))

    async def parts(self) -> list[VoicePart]:
        """Embeddings of the turn's pieces in order; the short tail is embedded now.

        Empty when the turn is too short to label. Safe to cancel.
        """
        options = self._owner.options
        tail_ms = 1000 * self._pending_samples / RATE
        if self._pending_samples and (
            tail_ms >= options.min_tail_ms
            or (not self._parts and 1000 * self.samples / RATE >= options.min_turn_ms)
        ):
            self._embed_pending()
        return list(await asyncio.gather(*self._parts))

    def peek_parts(self) -> list[VoicePart]:
        """Chunk embeddings finished so far."""
        return [
            t.result() for t in self._parts if t.done() and not t.cancelled() and not t.exception()
        ]

    async def aclose(self) -> None:
        """Cancel the background embeddings and wait for them."""
        for task in self._parts:
            task.cancel()
        for task in self._parts:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class SessionSpeakers:
    """Speaker profiles of one session plus the embedder that feeds them."""

    def __init__(self, embedder: SpeakerEmbedder, options: SpeakerOptions | None = None) -> None:
        self.embedder = embedder
        self.options = options or SpeakerOptions()
        self.profiles = SpeakerProfiles(self.options.threshold, self.options.enroll_threshold)

    def begin(self) -> TurnVoice:
        """Start attributing a new turn."""
        return TurnVoice(self)

    async def embed(self, pcm: np.ndarray) -> np.ndarray:
        """Embedding of 16 kHz audio (int16, or float32 in [-1, 1)) in a worker thread."""
        audio = pcm.astype(np.float32) / 32768.0 if pcm.dtype == np.int16 else pcm
        return await run_on(self.embedder, 1, self.embedder.embed, audio)

    async def embed_part(self, pcm: np.ndarray, start_s: float) -> VoicePart:
        return VoicePart(await self.embed(pcm), start_s, len(pcm) / RATE)

    async def identify(self, turn: TurnVoice) -> TurnSpeakers | None:
        """Finish ``turn`` and attribute it (updates the profiles); None when too short.

        Consecutive pieces whose voices stay alike form one stretch; each stretch is
        matched on its own, and the longest gives the turn's label. Safe to cancel.
        """
        parts = await turn.parts()
        if not parts:
            return None
        segments: list[tuple[float, float, str]] = []
        for stretch in split_by_voice(parts, self.options.split_threshold, self.options.chunk_ms):
            before = frozenset([segments[-1][2]]) if segments else frozenset()
            match = self.profiles.identify(_mean(stretch), sum(p.duration for p in stretch), before)
            segments.append((stretch[0].start, stretch[-1].end, match.label))
        longest = max(segments, key=lambda s: s[1] - s[0])
        return TurnSpeakers(longest[2], tuple(segments))

    def provisional(self, turn: TurnVoice) -> SpeakerMatch | None:
        """Who the turn sounds like so far (no profile change); None if unknown yet."""
        parts = turn.peek_parts()
        return self.profiles.peek(_mean(parts)) if parts else None

    def provisional_label(self, turn: TurnVoice) -> str | None:
        """The label the turn would get if it ended now (a new speaker's included; no
        profile change); None before any of it is embedded."""
        parts = turn.peek_parts()
        return self.profiles.predict(_mean(parts)) if parts else None

    async def quick(self, pcm: np.ndarray) -> SpeakerMatch | None:
        """Who a short stretch of 16 kHz int16 audio sounds like (no profile change)."""
        if 1000 * len(pcm) / RATE < self.options.min_turn_ms:
            return None
        return self.profiles.peek(await self.embed(pcm))

    async def enroll(self, name: str, reference: str | bytes) -> None:
        """Add a known speaker from a voice sample: audio file bytes, base64 or a data URL.

        Raises ValueError naming the speaker when the sample cannot be used.
        """
        try:
            audio = await asyncio.to_thread(decode_reference, reference, RATE)
        except (ValueError, AudioDecodeError) as exc:
            raise ValueError(f"the voice sample of {name!r} is not usable audio: {exc}") from None
        if len(audio) < RATE:
            raise ValueError(f"the voice sample of {name!r} is shorter than 1 s")
        self.profiles.enroll(name, await self.embed(audio))


def split_by_voice(
    parts: list[VoicePart], threshold: float, chunk_ms: int
) -> list[list[VoicePart]]:
    """Group consecutive pieces into stretches of one voice.

    A piece starts a new stretch when its similarity to the current stretch's mean
    falls below ``threshold``; a tail shorter than ``chunk_ms`` joins the stretch
    before it (too little audio to trust on its own).
    """
    stretches: list[list[VoicePart]] = [[parts[0]]]
    for part in parts[1:]:
        short_tail = part is parts[-1] and 1000 * part.duration < chunk_ms * 0.67
        if short_tail or float(_mean(stretches[-1]) @ part.embedding) >= threshold:
            stretches[-1].append(part)
        else:
            stretches.append([part])
    return stretches


def _mean(parts: list[VoicePart]) -> np.ndarray:
    """Duration-weighted mean of the pieces' embeddings, L2-normalised."""
    mean = np.average(
        np.stack([p.embedding for p in parts]), axis=0, weights=[p.duration for p in parts]
    )
    return mean / max(float(np.linalg.norm(mean)), 1e-12)
