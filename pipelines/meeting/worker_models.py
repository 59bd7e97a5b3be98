"""The models of a ``voice worker``: only what meeting jobs need, each loaded once.

A worker has no realtime sessions, so it loads no realtime STT, TTS or VAD: the
batch transcriber (``stt_model``), the diarizer and, when a job names known
speakers, the voice embedder. :meth:`BatchModels.preload` loads the first two
(blocking; call it in a worker thread at start-up); a job that starts before it
finished waits for the model it needs on the same lock.
"""

from __future__ import annotations

import threading

from voice import cpu_budget
from voice.diarize.base import Diarizer, SpeakerEmbedder
from voice.llm import ChatClient
from voice.settings import Settings
from voice.stt import Transcriber, WhisperTranscriber


class BatchModels:
    """:class:`~pipelines.meeting.meeting_jobs.MeetingModels` for a worker process."""

    def __init__(self, settings: Settings, llm: ChatClient) -> None:
        self.settings = settings
        self._llm = llm
        self._lock = threading.Lock()
        self._transcriber: Transcriber | None = None
        self._diarizer: Diarizer | None = None
        self._embedder: SpeakerEmbedder | None = None

    def preload(self) -> None:
        """Load the transcriber and the diarizer now. Blocking."""
        _ = self.batch_transcriber, self.diarizer

    @property
    def batch_transcriber(self) -> Transcriber:
        with self._lock:
            if self._transcriber is None:
                self._transcriber = WhisperTranscriber.from_settings(self.settings, False)
            return self._transcriber

    @property
    def diarizer(self) -> Diarizer:
        with self._lock:
            if self._diarizer is None:
                from voice.diarize import make_diarizer  # imports torch

                self._use_torch_threads()
                self._diarizer = make_diarizer(self.settings)
            return self._diarizer

    @property
    def speaker_embedder(self) -> SpeakerEmbedder:
        with self._lock:
            if self._embedder is None:
                from voice.diarize import make_embedder  # imports torch

                self._use_torch_threads()
                self._embedder = make_embedder(self.settings)
            return self._embedder

    @property
    def llm(self) -> ChatClient:
        return self._llm

    def _use_torch_threads(self) -> None:
        """torch's threads for a meeting-only process, before a torch model is built."""
        cores = self.settings.cpu_cores or cpu_budget.available_cores()
        cpu_budget.use_torch_threads(cpu_budget.meeting_only_torch_threads(cores))
