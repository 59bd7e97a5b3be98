"""A meeting recorded live by a realtime session (``session.meeting.record``).

While recording, the session writes its 16 kHz input audio to a
:class:`~pipelines.meeting.spool.RecordingSpool` that the :class:`MeetingSink`
opened on disk (memory stays bounded; a crash leaves the audio so far), and
keeps the labelled user turns as they were transcribed live. When the session
closes it hands a :class:`LiveMeeting` to the sink, which the server turns into
a stored meeting job (the same transcript document and summary as an upload).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.meeting.spool import RATE, RecordingSpool

__all__ = ["RATE", "LiveMeeting", "LiveSegment", "MeetingSink", "RecordingSpool"]


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

    spool: RecordingSpool
    """The recording (16 kHz mono int16 WAV on disk), not yet finished."""
    title: str | None = None
    segments: list[LiveSegment] = field(default_factory=list)
    known_speakers: dict[str, str] = field(default_factory=dict)
    """Name → voice sample (data URL or base64) of the session's enrolled speakers."""

    @property
    def duration_s(self) -> float:
        return self.spool.duration_s


class MeetingSink(Protocol):
    """Where recorded sessions go: a spool per recording, then the finished meeting."""

    async def open(self, title: str | None) -> RecordingSpool:
        """A new spool on disk for a session that starts recording (recovered as a
        meeting after a crash)."""
        ...

    async def store(self, meeting: LiveMeeting) -> None:
        """Store the meeting recorded in ``meeting.spool``; called once when the
        session closes. It owns the spool from then on (finishes or discards it)."""
        ...
