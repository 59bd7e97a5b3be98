"""A meeting recorded live by a realtime session (``session.meeting.record``).

While recording, the session keeps its 16 kHz input audio and the labelled
user turns as they were transcribed live. When the session closes it hands a
:class:`LiveMeeting` to a :data:`MeetingSink`, which the server turns into a
stored meeting job (the same transcript document and summary as an upload).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

RATE = 16000
"""Sample rate (Hz) of the recording."""


@dataclass(frozen=True)
class LiveSegment:
    """One user turn as labelled live; times in s from the start of the recording."""

    start: float
    end: float
    speaker: str | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "speaker": self.speaker,
            "text": self.text,
        }


@dataclass
class LiveMeeting:
    """What a recorded session leaves behind."""

    audio: np.ndarray
    """16 kHz mono int16."""
    title: str | None = None
    segments: list[LiveSegment] = field(default_factory=list)
    known_speakers: dict[str, str] = field(default_factory=dict)
    """Name → voice sample (data URL or base64) of the session's enrolled speakers."""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


MeetingSink = Callable[[LiveMeeting], Awaitable[None]]
"""Stores a finished live meeting; called once when the session closes."""
