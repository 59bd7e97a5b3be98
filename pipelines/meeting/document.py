"""The speaker-labelled transcript of a meeting, its JSON form and its renderings.

Times are seconds from the start of the recording. Speakers are identified by a
stable *label* (``SPEAKER_00``...) and shown by a *display name* (``Speaker 1``
until renamed). Pure data and functions; no I/O.

JSON shape (:meth:`TranscriptDocument.to_dict`, version 1; keys always present)::

    {"format": "meeting-transcript", "version": 1,
     "duration": 64.44, "language": "en",
     "speakers": {"SPEAKER_00": "Speaker 1", ...},      # label -> display name
     "segments": [{"id": 0, "speaker": "SPEAKER_00", "start": 0.5, "end": 7.99,
                   "text": "...", "words": [{"text": "Printing,", "start": 0.5,
                                              "end": 0.98, "probability": 0.91}, ...]}],
     "meta": {...}}                                      # free-form, JSON-safe

Times are rounded to the millisecond, probabilities to 4 decimals; segment ids
are unique and increase with time. A segment with empty ``text`` and no words is
crosstalk: a voice the diarizer heard over another speaker whose words Whisper did not
catch (it may overlap that speaker's segment); the text renderings leave it out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from voice.stt.base import Word
from voice.stt.formats import format_timestamp, to_srt, to_text, to_vtt

FORMAT_NAME = "meeting-transcript"
FORMAT_VERSION = 1
RENDER_FORMATS = ("json", "srt", "vtt", "md", "txt")
"""What :meth:`TranscriptDocument.render` accepts (also the file suffixes the CLI writes)."""


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """Consecutive words of one speaker: ``speaker`` is a label, times in seconds."""

    id: int
    speaker: str
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


def display_name(index: int) -> str:
    """Default display name of the ``index``-th speaker (0-based): ``Speaker 1``..."""
    return f"Speaker {index + 1}"


@dataclass(frozen=True)
class TranscriptDocument:
    """A whole meeting transcript.

    ``segments`` in time order; ``speakers`` maps every label used by a segment
    to its display name, in order of first appearance; ``duration`` is the
    recording length (s); ``language`` the transcription language; ``meta``
    JSON-safe details (models and options used, timings).
    """

    segments: tuple[TranscriptSegment, ...]
    speakers: dict[str, str]
    duration: float
    language: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [s.id for s in self.segments]
        if len(set(ids)) != len(ids):
            raise ValueError("segment ids must be unique")
        missing = {s.speaker for s in self.segments} - set(self.speakers)
        if missing:
            raise ValueError(f"segments use speakers without a name: {sorted(missing)}")

    def segment(self, segment_id: int) -> TranscriptSegment:
        """The segment with ``segment_id``; raises ``KeyError`` if there is none."""
        for seg in self.segments:
            if seg.id == segment_id:
                return seg
        raise KeyError(segment_id)

    @property
    def segment_ids(self) -> frozenset[int]:
        return frozenset(s.id for s in self.segments)

    def name_of(self, label: str) -> str:
        """Display name of a speaker label (the label itself when unknown)."""
        return self.speakers.get(label, label)

    def rename_speakers(self, mapping: Mapping[str, str]) -> TranscriptDocument:
        """A copy with display names replaced: ``mapping`` is label -> new name.

        Raises ``KeyError`` for a label the document does not have and
        ``ValueError`` for an empty name. Labels (and so citations) are unchanged.
        """
        unknown = set(mapping) - set(self.speakers)
        if unknown:
            raise KeyError(f"unknown speaker labels: {sorted(unknown)}")
        if any(not name.strip() for name in mapping.values()):
            raise ValueError("speaker names must not be empty")
        names = {label: mapping.get(label, name).strip() for label, name in self.speakers.items()}
        return replace(self, speakers=names)

    # --- JSON -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form described in the module docstring."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "duration": round(self.duration, 3),
            "language": self.language,
            "speakers": dict(self.speakers),
            "segments": [_segment_dict(s) for s in self.segments],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranscriptDocument:
        """Parse :meth:`to_dict` output; raises ``ValueError`` on a wrong shape or version."""
        if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"not a {FORMAT_NAME} v{FORMAT_VERSION} document "
                f"(format={data.get('format')!r}, version={data.get('version')!r})"
            )
        try:
            segments = tuple(_segment_from(s) for s in data["segments"])
            return cls(
                segments=segments,
                speakers={str(k): str(v) for k, v in data["speakers"].items()},
                duration=float(data["duration"]),
                language=str(data["language"]),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed transcript document: {exc!r}") from exc

    # --- renderings -------------------------------------------------------------
    def render(self, fmt: str) -> str:
        """The transcript as one of :data:`RENDER_FORMATS`, speakers by display name.

        ``json``: :meth:`to_dict`; ``srt``/``vtt``: one cue per segment (``Name: ``
        prefix / ``<v Name>`` tag); ``txt``: one ``Name: text`` line per change of
        speaker; ``md``: a heading, then one paragraph per change of speaker,
        headed by the name and start time.
        """
        if fmt == "json":
            return json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        if fmt == "md":
            return self._markdown()
        shown = [replace(s, speaker=self.name_of(s.speaker)) for s in self.segments]
        if fmt == "srt":
            return to_srt(shown)
        if fmt == "vtt":
            return to_vtt(shown)
        if fmt == "txt":
            return to_text(shown) + "\n"
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(RENDER_FORMATS)}")

    def _markdown(self) -> str:
        names = ", ".join(self.speakers.values()) or "none"
        lines = [
            "# Meeting transcript",
            "",
            f"Duration {clock(self.duration)} · Speakers: {names} · Language: {self.language or '?'}",
        ]
        for speaker, start, texts in speaker_runs(self.segments):
            lines += ["", f"**{_md_escape(self.name_of(speaker))}** · {clock(start)}", ""]
            lines.append(_md_escape(" ".join(texts)))
        return "\n".join(lines) + "\n"


def speaker_runs(
    segments: tuple[TranscriptSegment, ...],
) -> list[tuple[str, float, list[str]]]:
    """Consecutive segments of one speaker merged: ``(label, start s, texts)``."""
    runs: list[tuple[str, float, list[str]]] = []
    for seg in segments:
        if not seg.text.strip():
            continue
        if runs and runs[-1][0] == seg.speaker:
            runs[-1][2].append(seg.text.strip())
        else:
            runs.append((seg.speaker, seg.start, [seg.text.strip()]))
    return runs


def clock(seconds: float) -> str:
    """``HH:MM:SS`` (whole seconds, rounded down) for display."""
    return format_timestamp(float(int(max(0.0, seconds))))[:-4]


def _md_escape(text: str) -> str:
    for char in ("\\", "*", "_", "`", "#", "[", "]", "<", ">"):
        text = text.replace(char, "\\" + char)
    return text


def _segment_dict(seg: TranscriptSegment) -> dict[str, Any]:
    return {
        "id": seg.id,
        "speaker": seg.speaker,
        "start": round(seg.start, 3),
        "end": round(seg.end, 3),
        "text": seg.text,
        "words": [
            {
                "text": w.text,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "probability": round(w.probability, 4),
            }
            for w in seg.words
        ],
    }


def _segment_from(data: Mapping[str, Any]) -> TranscriptSegment:
    words = tuple(
        Word(str(w["text"]), float(w["start"]), float(w["end"]), float(w["probability"]))
        for w in data.get("words") or ()
    )
    return TranscriptSegment(
        id=int(data["id"]),
        speaker=str(data["speaker"]),
        start=float(data["start"]),
        end=float(data["end"]),
        text=str(data["text"]),
        words=words,
    )
