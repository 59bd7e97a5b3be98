"""The voices a realtime session may ask for (``audio.output.voice``) and its speed.

OpenAI's voice names all map to the server's configured voice (``VOICE_TTS_VOICE``);
its own name is accepted too, and so is the shipped voice's name (``joe``) or a
path to another Piper ``.onnx`` voice on the server, loaded on first use (in a
worker thread) and kept for every later session. Anything else is refused with a
clear error. ``speed`` is applied by Piper (its ``length_scale``).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from voice.tts.base import Synthesizer, TtsOptions, VoiceLoadError
from voice.tts.piper import SHIPPED_VOICE, PiperSynthesizer, resolve_voice

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
"""OpenAI's voice names; each means the server's configured voice."""

_loaded: dict[str, Synthesizer] = {}
_lock = threading.Lock()
"""Guards :data:`_loaded` (servers on several event loops share it)."""


def default_voice(synthesizer: Synthesizer) -> str:
    """The name (or path) of the server's configured voice."""
    options: Any = getattr(synthesizer, "options", None)
    return str(getattr(options, "voice", SHIPPED_VOICE))


def check_voice(voice: str, synthesizer: Synthesizer) -> None:
    """Raise ``ValueError`` naming the accepted voices when ``voice`` is not one."""
    if voice in OPENAI_VOICES or voice == default_voice(synthesizer):
        return
    try:
        resolve_voice(voice)
    except VoiceLoadError as exc:
        raise ValueError(
            f"unknown voice {voice!r} ({exc}); use one of OpenAI's names (all mean this "
            f"server's voice {default_voice(synthesizer)!r}), {SHIPPED_VOICE!r}, or the path "
            "of a Piper .onnx voice on the server"
        ) from None


async def synthesizer_for(default: Synthesizer, voice: str, speed: float) -> Synthesizer:
    """The synthesizer speaking ``voice`` at ``speed``. Raises ``ValueError`` for an
    unknown voice or a speed the voice cannot take. Safe to cancel (a load in
    progress finishes in its thread and is kept)."""
    check_voice(voice, default)
    synthesizer = default
    if voice not in OPENAI_VOICES and voice != default_voice(default):
        threads = int(getattr(default, "threads", 0) or 0)
        synthesizer = await asyncio.to_thread(_load, voice, threads)
    if speed == 1.0:
        return synthesizer
    at_speed = getattr(synthesizer, "at_speed", None)
    if at_speed is None:
        raise ValueError("this server's voice cannot change its speed")
    result: Synthesizer = at_speed(speed)
    return result


def _load(voice: str, threads: int) -> Synthesizer:
    """The Piper voice ``voice``, loaded once per process (blocking: a worker thread)."""
    key = str(Path(voice).expanduser().resolve()) if voice != SHIPPED_VOICE else voice
    with _lock:
        if key not in _loaded:
            _loaded[key] = PiperSynthesizer(TtsOptions(voice=voice, cpu_threads=threads))
        return _loaded[key]
