"""Per-turn latency waterfall: end of user speech → STT final → LLM first token →
first TTS audio → first audio delta sent. Times on the session clock (s), reported in ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES = (
    "speech_stopped",
    "stt_final",
    "speaker",
    "llm_first_token",
    "tts_first_audio",
    "first_audio_sent",
)
"""Stages in the order they happen; ``speech_stopped`` is when the VAD confirmed the end,
``speaker`` when the turn's speaker label was ready (it is computed beside ``stt_final``)."""


@dataclass
class TurnLatency:
    """Marks of one turn, relative to ``speech_end`` (when the user stopped talking)."""

    speech_end: float
    item_id: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    speculative: bool = False
    """The LLM request started on a speculative transcript, before the turn was confirmed."""

    def mark(self, stage: str, at: float) -> bool:
        """Record the first time ``stage`` happened; True if this call recorded it."""
        if stage in self.marks:
            return False
        self.marks[stage] = at
        return True

    def waterfall_ms(self) -> dict[str, float | None]:
        return {
            stage: round(1000.0 * (self.marks[stage] - self.speech_end), 1)
            if stage in self.marks
            else None
            for stage in STAGES
        }

    def event_fields(self, response_id: str) -> dict[str, Any]:
        """Fields of the ``voice.latency`` extension event."""
        return {
            "response_id": response_id,
            "item_id": self.item_id,
            "latency_ms": self.waterfall_ms(),
            "speculative": self.speculative,
        }
