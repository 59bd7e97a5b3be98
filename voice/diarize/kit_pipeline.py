"""Offline pyannote-style diarization built from the kit's models.

segmentation-3.0 finds up to three local speakers in each sliding 10 s
window; CAM++ embeds each local speaker's single-speaker frames (in every
other window: the local speakers of the rest take the clusters of the
neighbours' speakers active on the same frames); the embeddings are
clustered agglomeratively; each window's local speakers are mapped to
distinct global clusters; overlapping windows are stitched into
frame-level activity (overlap-aware) and then into turns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from voice.diarize.base import (
    SAMPLE_RATE,
    Device,
    DiarizeOptions,
    SpeakerTurn,
    check_audio,
    relabel_in_order,
)
from voice.diarize.clustering import (
    ClusteringOptions,
    assign_per_window,
    centroids_of,
    cluster,
)
from voice.diarize.embedding import CamPlusPlusEmbedder
from voice.diarize.fbank import FRAME_LENGTH, FRAME_SHIFT, FbankBlocks, frame_time
from voice.diarize.overlap_assign import assign_by_overlap, shared_frames
from voice.diarize.reconstruct import frame_activity, to_turns
from voice.diarize.segmentation import Segmentation, Segmenter
from voice.diarize.speech_gate import fits, heard_regions, keep_heard
from voice.vad.base import FrameProbabilities
from voice.vad.lanes import score_signal
from voice.vad.silero import SileroClassifier

_EMBED_AT_ONCE = 256
"""Local speakers' features held before they are embedded (at most 3 s each: 24 MB),
so that memory stays flat on long recordings."""


@dataclass(frozen=True)
class KitOptions:
    """Tuning of the kit pipeline.

    ``step_s``: seconds between 10 s segmentation windows. ``min_embed_s``:
    least speech (s) a local speaker needs in a window to be embedded and
    assigned. ``max_embed_s``: at most this much speech (s, longest stretches
    first) is embedded per local speaker and window, bounding CAM++ cost.
    ``min_cluster_s``: least single-speaker speech (s) for its
    embedding to take part in clustering (others are only assigned).
    ``min_gap_s``: same-speaker turns closer than this are joined.
    ``speech_threshold``: probability of speech (0..1) above which a segmentation
    frame counts as speech even when silence is its likeliest class (1.0: argmax).
    ``min_share``: share of the overlapping windows (0..1] that must hear a
    speaker for it to count (see :func:`~voice.diarize.reconstruct.frame_activity`).
    ``cannot_link``: two local speakers of one window never share a cluster
    unless a requested speaker count forces it.
    ``embed_every``: only every n-th window (and the last) is embedded; a
    local speaker of the others takes the cluster of the embedded neighbours'
    speakers active on the same frames (:mod:`voice.diarize.overlap_assign`),
    and is embedded itself when none is. CAM++ was the larger half of the
    cost, and 2 halves it (AMI mean DER 0.306 -> 0.309 at collar 0.25, the
    meeting bench's long recording 0.263 -> 0.265). ``clustering``: its
    ``min_cluster_size`` counts embeddings, so it is 2 here rather than 3: with
    every other window embedded a speaker has half as many.
    ``heard_floor``/``heard_pad_s``: turns are kept only within ``heard_pad_s``
    seconds of a Silero frame scored at least ``heard_floor``
    (:mod:`voice.diarize.speech_gate`; floor 0 keeps every turn). 0.02 and 0.5 s
    took AMI dev01 from 0.585 to 0.443 (2 s of room noise was a third speaker) and
    made no clip worse; a 0.25 s margin cut into trn01's quiet speech, floors of
    0.05 and 0.1 into more (AMI mean 0.309 -> 0.293 at collar 0.25).
    """

    step_s: float = 2.5
    min_embed_s: float = 0.25
    max_embed_s: float = 3.0
    min_cluster_s: float = 1.0
    min_gap_s: float = 0.0
    speech_threshold: float = 0.5
    min_share: float = 0.25
    cannot_link: bool = True
    embed_every: int = 2
    clustering: ClusteringOptions = field(
        default_factory=lambda: ClusteringOptions(min_cluster_size=2)
    )
    heard_floor: float = 0.02
    heard_pad_s: float = 0.5

    def __post_init__(self) -> None:
        if self.embed_every < 1:
            raise ValueError(f"embed_every must be at least 1 (got {self.embed_every})")
        if not 0.0 <= self.heard_floor <= 1.0 or self.heard_pad_s < 0:
            raise ValueError(
                f"heard_floor must be in [0, 1] and heard_pad_s >= 0 (got {self.heard_floor}, "
                f"{self.heard_pad_s})"
            )


class KitPipeline:
    """Blocking diarization with the bundled models; one call at a time (locked)."""

    def __init__(self, device: Device = "auto", options: KitOptions = KitOptions()) -> None:
        self.options = options
        self.embedder = CamPlusPlusEmbedder(device)
        self.segmenter = Segmenter(
            self.embedder.device, step_s=options.step_s, speech_threshold=options.speech_threshold
        )
        self._lock = threading.Lock()
        self._silero: SileroClassifier | None = None

    def __call__(
        self, audio: np.ndarray, options: DiarizeOptions, speech: FrameProbabilities | None = None
    ) -> list[SpeakerTurn]:
        """Turns of ``audio``; ``speech``: Silero v6's frame probabilities over it
        (scored here when missing or not fitting, see ``KitOptions.heard_floor``)."""
        audio = check_audio(audio)
        if len(audio) < FRAME_LENGTH:
            return []
        gate = self.options.heard_floor > 0
        with self._lock:
            segmentation = self.segmenter(audio)
            embedded = self._embed(segmentation, FbankBlocks(self.embedder.fbank, audio))
            if gate and (speech is None or not fits(speech, len(audio))):
                if self._silero is None:
                    self._silero = SileroClassifier()
                speech = score_signal(self._silero, audio)
        turns = self._diarize(segmentation, *embedded, options)
        return self.keep_heard(turns, speech) if gate and speech is not None else turns

    def keep_heard(self, turns: list[SpeakerTurn], speech: FrameProbabilities) -> list[SpeakerTurn]:
        """``turns`` cut to where ``speech`` hears any (``KitOptions.heard_floor``), relabelled."""
        regions = heard_regions(speech, self.options.heard_floor, self.options.heard_pad_s)
        return relabel_in_order(keep_heard(turns, regions))

    def _embed(
        self, seg: Segmentation, features: FbankBlocks
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings ``(windows, 3, D)``, which exist, which are clean enough, and
        which local speakers are active enough to be assigned (all ``(windows, 3)``).
        Windows go in time order, embedded :data:`_EMBED_AT_ONCE` local speakers at a time."""
        windows, frames, speakers = seg.activity.shape
        alone = seg.activity * (seg.activity.sum(axis=2, keepdims=True) == 1)
        fb_times = frame_time(0) + np.arange(features.num_frames) * FRAME_SHIFT / SAMPLE_RATE
        min_embed = self.options.min_embed_s / seg.frame_step_s
        clean = alone.sum(axis=1) >= self.options.min_cluster_s / seg.frame_step_s
        masks = np.where((alone.sum(axis=1) >= min_embed)[:, None, :], alone, seg.activity)
        active = masks.sum(axis=1) >= min_embed
        wanted = np.zeros_like(active)
        wanted[self._embedded_windows(windows)] = True
        wanted &= active
        # a speaker no embedded neighbour hears on the same frames is embedded too
        for w in np.flatnonzero((active & ~wanted).any(axis=1)).tolist():
            _, both = shared_frames(seg.activity, seg.window_offsets, w, wanted)
            wanted[w] |= active[w] & (both.sum(axis=(1, 2)) < min_embed)
        max_frames = int(self.options.max_embed_s * SAMPLE_RATE / FRAME_SHIFT)
        jobs: list[tuple[int, int, int]] = []
        inputs: list[torch.Tensor] = []
        vectors: list[np.ndarray] = []
        seen: dict[bytes, int] = {}  # overlapping windows often pick the same frames
        for w in np.flatnonzero(wanted.any(axis=1)).tolist():
            start = w * seg.step_s
            lo, hi = np.searchsorted(fb_times, [start, start + frames * seg.frame_step_s])
            local = np.minimum(
                ((fb_times[lo:hi] - start) / seg.frame_step_s).astype(int), frames - 1
            )
            for s in np.flatnonzero(wanted[w]).tolist():
                picked = _longest_runs(np.flatnonzero(masks[w, local, s] > 0) + lo, max_frames)
                if len(picked) == 0:
                    continue
                key = picked.tobytes()
                if key not in seen:
                    seen[key] = len(seen)
                    inputs.append(features.rows(picked))
                    if len(inputs) == _EMBED_AT_ONCE:
                        vectors.append(self.embedder.embed_features(inputs))
                        inputs = []
                jobs.append((w, s, seen[key]))
        if inputs:
            vectors.append(self.embedder.embed_features(inputs))
        embeddings = np.zeros((windows, speakers, self.embedder.dimension), dtype=np.float32)
        valid = np.zeros((windows, speakers), dtype=bool)
        if vectors:
            table = np.concatenate(vectors)
            for w, s, index in jobs:
                embeddings[w, s] = table[index]
                valid[w, s] = True
        return embeddings, valid, clean & valid, active

    def _embedded_windows(self, windows: int) -> np.ndarray:
        """Indices of the windows whose local speakers are embedded."""
        return np.union1d(np.arange(0, windows, self.options.embed_every), [windows - 1])

    def _diarize(
        self,
        seg: Segmentation,
        embeddings: np.ndarray,
        valid: np.ndarray,
        clean: np.ndarray,
        active: np.ndarray,
        options: DiarizeOptions,
    ) -> list[SpeakerTurn]:
        if not valid.any():
            return []
        low, _ = options.bounds
        pool = clean if clean.sum() >= max(2, low) else valid
        windows = np.nonzero(pool)[0] if self.options.cannot_link else None
        labels = cluster(embeddings[pool], self.options.clustering, options.bounds, windows)
        ids = np.unique(labels)
        centroids = centroids_of(embeddings[pool], labels, ids)
        similarity = embeddings @ centroids.T
        hard = assign_per_window(similarity, valid)
        pending = active & ~valid
        if pending.any():
            hard = assign_by_overlap(
                seg.activity,
                seg.window_offsets,
                hard,
                pending,
                len(ids),
                self.options.min_embed_s / seg.frame_step_s,
            )
        binary = frame_activity(
            seg.activity,
            seg.window_offsets,
            hard,
            len(ids),
            seg.num_global_frames,
            self.options.min_share,
        )
        turns = to_turns(
            binary,
            seg.frame_step_s,
            seg.frame_duration_s,
            seg.num_samples / SAMPLE_RATE,
            self.options.min_gap_s,
        )
        return relabel_in_order(turns)


def _longest_runs(indices: np.ndarray, limit: int) -> np.ndarray:
    """Up to ``limit`` of the sorted ``indices``, taking whole consecutive runs
    longest first (the last one cut short), returned in time order."""
    if len(indices) <= limit:
        return indices
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    runs = sorted(np.split(indices, breaks), key=len, reverse=True)
    kept: list[np.ndarray] = []
    remaining = limit
    for run in runs:
        if remaining <= 0:
            break
        kept.append(run[:remaining])
        remaining -= len(kept[-1])
    return np.sort(np.concatenate(kept))
