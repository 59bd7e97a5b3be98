"""What a session's parts share: the emitter, conversation, models and options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pipelines.clock import Clock
from pipelines.realtime.audio_out import AudioOutput
from pipelines.realtime.conversation import Conversation
from pipelines.realtime.echo import EchoGuard
from pipelines.realtime.emitter import Emitter
from pipelines.realtime.latency import TurnLatency
from pipelines.realtime.speakers import SessionSpeakers
from voice.llm import ChatClient, ToolRegistry
from voice.tts.base import Synthesizer


@dataclass(frozen=True)
class RealtimeOptions:
    """Server-side knobs of realtime sessions (not negotiable by clients). Times in ms."""

    output_lead_ms: float = 250.0
    """How far ahead of real time agent audio may be sent."""
    chunk_ms: int = 40
    """Duration of each outgoing audio delta."""
    barge_in_min_ms: int = 250
    """Speech shorter than this over the agent does not interrupt it."""
    barge_in_confirm_ms: int = 1500
    """Voice over a reply that interrupts it even without recognised words."""
    barge_in_words_min_ms: int = 500
    """Voice over a reply needed before its words may interrupt it: a shorter sound is a
    backchannel whatever the live recogniser makes of it (it hears a hummed "mm-hmm" as
    "in a month" or "MMM")."""
    partial_interval_ms: int = 400
    """How often a partial transcript is attempted while the user speaks."""
    max_event_bytes: int = 2 * 1024 * 1024
    max_input_buffer_ms: int = 5 * 60 * 1000
    """Uncommitted input audio kept at most (manual turn mode)."""
    tool_timeout_s: float = 10.0
    tool_max_steps: int = 4
    max_output_tokens: int = 256
    max_items: int = 200
    max_context_chars: int = 6000
    vad_backend: Literal["silero", "webrtc"] = "silero"
    vad_min_speech_ms: int = 200
    speculative_response: bool = True
    """Start the LLM on the speculative transcript while the end of speech is confirmed."""
    echo_guard: bool = True
    """Recognise the agent's own voice coming back through the user's microphone."""


@dataclass
class SessionContext:
    """Shared by a session and its responses."""

    emitter: Emitter
    conversation: Conversation
    conversation_id: str
    clock: Clock
    options: RealtimeOptions
    llm: ChatClient
    tools: ToolRegistry
    synthesizer: Synthesizer
    report_latency: Callable[[TurnLatency, str], Awaitable[None]]
    audio_output: AudioOutput | None = None
    """Set by media transports (WebRTC): agent audio goes here, not into audio deltas."""
    speakers: SessionSpeakers | None = None
    """Live speaker attribution; None when the server has no speaker embedder."""
    echo: EchoGuard | None = None
    """Recognises the agent's own voice in the input; None when disabled."""
