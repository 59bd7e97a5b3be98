"""Voice stages: audio, VAD, speech-to-text, text-to-speech, LLM agent tools.

Each stage is a narrow interface plus real backends loaded from the offline
model kit. Nothing here imports :mod:`pipelines` or :mod:`web`.
"""
