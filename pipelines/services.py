"""The models a server shares between sessions and jobs, loaded once.

:meth:`Services.start` loads the realtime STT model, the TTS voice and the tool
registry, connects to the configured LLM endpoint or starts the embedded
llama.cpp server, and warms the models up so the first turn is not slow.
Loading runs in worker threads. :meth:`Services.aclose` stops what it started.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.llm_endpoint import close_llm, llm_description, start_llm
from pipelines.realtime.config import SessionConfig, SpeakerConfig, TurnDetection
from pipelines.realtime.context import RealtimeOptions
from voice import cpu_budget, workers
from voice.cpu_budget import ThreadPlan
from voice.diarize import Diarizer, SpeakerEmbedder
from voice.llm import ChatClient, ToolRegistry
from voice.llm.builtin_tools import registry_from_names
from voice.llm.embedded import EmbeddedLlamaServer
from voice.settings import Settings
from voice.stt import Transcriber, WhisperTranscriber
from voice.stt.timed import TimedTranscriber
from voice.tts import PiperSynthesizer
from voice.tts.base import Synthesizer

log = logging.getLogger(__name__)

SttWatcher = Callable[[str, float, float], None]
"""Told ``(use, audio_s, compute_s)`` after each transcription; ``use`` is ``realtime`` or
``batch``. Runs in the transcribing worker thread: quick and thread-safe."""


@dataclass
class Services:
    """Shared, long-lived model handles. Create with :meth:`start`."""

    settings: Settings
    transcriber: Transcriber
    synthesizer: Synthesizer
    llm: ChatClient
    tools: ToolRegistry
    embedded_llm: EmbeddedLlamaServer | None = None
    embedder: SpeakerEmbedder | None = None
    """Voice embeddings for live speaker labels (``realtime_speakers``)."""
    _batch_transcriber: Transcriber | None = None
    _batch_lock: threading.Lock = field(default_factory=threading.Lock)
    _diarizer: Diarizer | None = None
    _diarizer_lock: threading.Lock = field(default_factory=threading.Lock)
    _batch_embedder: SpeakerEmbedder | None = None
    stt_watchers: list[SttWatcher] = field(default_factory=list)
    """Who wants STT timings (metrics); both transcribers report to each."""
    threads: ThreadPlan = field(default_factory=lambda: thread_plan(None))
    """The CPU budget: threads per model (see :mod:`voice.cpu_budget`)."""

    def __post_init__(self) -> None:
        self.transcriber = TimedTranscriber(self.transcriber, self._timed("realtime"))
        workers.assign(self.transcriber, self.threads.stt_threads)

    def _timed(self, use: str) -> Callable[[float, float], None]:
        def tell(audio_s: float, compute_s: float) -> None:
            for watcher in list(self.stt_watchers):
                watcher(use, audio_s, compute_s)

        return tell

    @classmethod
    async def start(cls, settings: Settings, *, warm_up: bool = True) -> Services:
        """Load models and connect the LLM. Raises on a model that cannot load."""
        tools = registry_from_names(list(settings.tools))
        plan = thread_plan(settings)
        cpu_budget.configure(plan)
        log.info("CPU budget: %s", plan)
        llm, embedded = await start_llm(settings, plan.llm_threads, plan.llm_batch_threads)
        try:
            transcriber, synthesizer = await asyncio.gather(
                asyncio.to_thread(
                    WhisperTranscriber.from_settings, settings, True, plan.stt_threads
                ),
                asyncio.to_thread(PiperSynthesizer.from_settings, settings, plan.tts_threads),
            )
        except BaseException:
            await close_llm(llm, embedded)
            raise
        services = cls(settings, transcriber, synthesizer, llm, tools, embedded, threads=plan)
        if settings.realtime_speakers:
            services.embedder = await asyncio.to_thread(_load_embedder, settings, plan)
            # A turn waits for its speaker label (pipelines.realtime.ingress), so live
            # embeddings queue with STT and TTS, first come first served.
            workers.assign(services.embedder, plan.torch_threads, cpu_budget.REALTIME)
        if warm_up:
            await asyncio.to_thread(services._warm_up)
        log.info("services ready (LLM: %s)", "embedded" if embedded else settings.llm_base_url)
        return services

    def _warm_up(self) -> None:
        """One short inference per model, so the first user turn pays no lazy-init cost."""
        noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
        self.transcriber.transcribe(noise)
        for _ in self.synthesizer.synthesize("Ready."):
            pass
        if self.embedder is not None:
            self.embedder.embed(noise)

    @property
    def batch_transcriber(self) -> Transcriber:
        """The meeting/batch STT model (``stt_model``), loaded on first use. Blocking."""
        with self._batch_lock:
            if self._batch_transcriber is None:
                model: Transcriber
                if self.settings.stt_model == self.settings.realtime_stt_model:
                    # One model in memory, but its own worker pool and place in the
                    # CPU budget: meeting windows must not queue as live work.
                    model = getattr(self.transcriber, "inner", self.transcriber)
                else:
                    model = WhisperTranscriber.from_settings(
                        self.settings, False, self.threads.stt_threads
                    )
                self._batch_transcriber = TimedTranscriber(model, self._timed("batch"))
                # Meeting jobs wait behind live conversation for the cores.
                workers.assign(
                    self._batch_transcriber, self.threads.stt_threads,
                    cpu_budget.BACKGROUND,
                )
            return self._batch_transcriber

    @property
    def diarizer(self) -> Diarizer:
        """The speaker diarizer (``diarize_backend``), loaded on first use. Blocking."""
        with self._diarizer_lock:
            if self._diarizer is None:
                from voice.diarize import make_diarizer  # imports torch: only when needed

                _torch_threads(self.threads)
                self._diarizer = make_diarizer(self.settings)
            return self._diarizer

    @property
    def speaker_embedder(self) -> SpeakerEmbedder:
        """The voice embedder (the realtime one, or loaded on first use). Blocking."""
        with self._diarizer_lock:
            if self.embedder is not None:
                return self.embedder
            if self._batch_embedder is None:
                self._batch_embedder = _load_embedder(self.settings, self.threads)
                workers.assign(
                    self._batch_embedder, self.threads.torch_threads, cpu_budget.BACKGROUND
                )
            return self._batch_embedder

    def realtime_options(self) -> RealtimeOptions:
        s = self.settings
        return RealtimeOptions(
            output_lead_ms=s.realtime_output_lead_ms,
            barge_in_min_ms=s.barge_in_min_ms,
            barge_in_confirm_ms=s.barge_in_confirm_ms,
            barge_in_words_min_ms=s.barge_in_words_min_ms,
            max_event_bytes=s.realtime_max_event_bytes,
            tool_timeout_s=s.tool_timeout_s,
            tool_max_steps=s.tool_max_steps,
            max_output_tokens=s.llm_max_tokens,
            vad_backend=s.vad_backend,
            vad_min_speech_ms=s.vad_min_speech_ms,
            speculative_response=s.realtime_speculative_response,
            echo_guard=s.realtime_echo_guard,
        )

    def session_config(self) -> SessionConfig:
        s = self.settings
        return SessionConfig(
            instructions=s.instructions,
            transcription_language=s.stt_language,
            temperature=s.llm_temperature,
            speakers=SpeakerConfig(
                enabled=self.embedder is not None, threshold=s.realtime_speaker_threshold
            ),
            turn_detection=TurnDetection(
                threshold=s.vad_threshold,
                prefix_padding_ms=s.vad_prefix_padding_ms,
                silence_duration_ms=s.vad_silence_ms,
                type=s.turn_detection,
                eagerness=s.turn_eagerness,
                adaptive=s.turn_adaptive_wait,
            ),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "llm": llm_description(self.settings, self.embedded_llm),
            "realtime_stt_model": self.settings.realtime_stt_model,
            "stt_model": self.settings.stt_model,
            "tts_voice": self.settings.tts_voice,
            "tools": self.tools.names(),
            "threads": {
                "cores": self.threads.cores,
                "llm": self.threads.llm_threads if self.embedded_llm else 0,
                "stt": self.threads.stt_threads,
                "stt_workers": self.threads.stt_workers,
                "tts": self.threads.tts_threads,
                "torch": self.threads.torch_threads,
            },
        }

    async def aclose(self) -> None:
        """Close the LLM client and stop the embedded server, if any."""
        await close_llm(self.llm, self.embedded_llm)


def thread_plan(settings: Settings | None) -> ThreadPlan:
    """The CPU budget for ``settings`` (``cpu_cores``, explicit thread settings)."""
    if settings is None:
        return cpu_budget.plan(cpu_budget.available_cores())
    return cpu_budget.plan(
        settings.cpu_cores or cpu_budget.available_cores(),
        llm_threads=settings.llm_embedded_threads,
        stt_threads=settings.stt_cpu_threads,
        local_llm=settings.llm_base_url is None,
    )


def _torch_threads(plan: ThreadPlan) -> None:
    """torch's intra-op threads for the plan (process-wide; set before a torch model runs)."""
    cpu_budget.use_torch_threads(plan.torch_threads)


def _load_embedder(settings: Settings, plan: ThreadPlan) -> SpeakerEmbedder:
    from voice.diarize import make_embedder  # imports torch: only when enabled

    _torch_threads(plan)
    return make_embedder(settings)
