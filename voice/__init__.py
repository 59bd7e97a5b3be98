"""Voice stages: audio, VAD, speech-to-text, text-to-speech, LLM agent tools.

Each stage is a narrow interface plus real backends loaded from the offline
model kit. Nothing here imports :mod:`pipelines` or :mod:`web`.
"""

import os as _os

# OpenMP threads (torch, ctranslate2) spin-wait by default; on a small CPU shared by
# several models that makes each of them many times slower. Must be set before torch loads.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
