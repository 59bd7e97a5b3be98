"""Render transcripts as plain text, JSON-ready dicts, SRT or WebVTT.

A source is a :class:`~voice.stt.base.Transcription` or any sequence of items with
``start``/``end`` (seconds) and ``text``; items may also carry ``speaker`` (a label
or None), ``id`` and ``words``, as meeting segments do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias

from voice.stt.base import Transcription

FORMATS = ("text", "json", "srt", "vtt")


class TimedText(Protocol):
    """Anything with a time span in seconds and text (``speaker`` is optional)."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...


Source: TypeAlias = Transcription | Sequence[TimedText]


def format_timestamp(seconds: float, decimal: str = ",") -> str:
    """``HH:MM:SS<decimal>mmm``, rounded to the millisecond; hours grow past 99 if needed."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _items(source: Source) -> Sequence[TimedText]:
    return source.segments if isinstance(source, Transcription) else source


def _speaker(item: object) -> str | None:
    speaker = getattr(item, "speaker", None)
    return str(speaker) if speaker is not None else None


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _cues(source: Source) -> list[tuple[float, float, str, str | None]]:
    cues = []
    for item in _items(source):
        text = _one_line(item.text)
        if text:
            cues.append((item.start, max(item.start, item.end), text, _speaker(item)))
    return cues


def to_text(source: Source) -> str:
    """Plain text; with speakers, one ``Speaker: text`` line per change of speaker."""
    cues = _cues(source)
    if not any(speaker for *_, speaker in cues):
        return " ".join(text for _, _, text, _ in cues)
    lines: list[tuple[str | None, list[str]]] = []
    for _, _, text, speaker in cues:
        if lines and lines[-1][0] == speaker:
            lines[-1][1].append(text)
        else:
            lines.append((speaker, [text]))
    return "\n".join(f"{spk or 'Unknown'}: {' '.join(texts)}" for spk, texts in lines)


def _item_dict(index: int, item: TimedText) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": getattr(item, "id", index),
        "start": round(item.start, 3),
        "end": round(item.end, 3),
        "text": item.text,
    }
    speaker = _speaker(item)
    if speaker is not None:
        out["speaker"] = speaker
    words = getattr(item, "words", ())
    if words:
        out["words"] = [
            {
                "text": w.text,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "probability": round(w.probability, 4),
            }
            for w in words
        ]
    return out


def to_dict(source: Source) -> dict[str, Any]:
    """A JSON-serialisable dict: text, segments (and language, duration, options)."""
    out: dict[str, Any] = {"text": to_text(source)}
    if isinstance(source, Transcription):
        out.update(
            text=source.text,
            language=source.language,
            duration=round(source.duration, 3),
            options=dict(source.options),
        )
    out["segments"] = [_item_dict(i, item) for i, item in enumerate(_items(source))]
    return out


def to_srt(source: Source) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, ``Speaker: `` prefix when labelled."""
    blocks = []
    for number, (start, end, text, speaker) in enumerate(_cues(source), start=1):
        line = f"{speaker}: {text}" if speaker else text
        blocks.append(f"{number}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{line}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(source: Source) -> str:
    """WebVTT: ``HH:MM:SS.mmm`` times, speakers as ``<v Speaker>`` voice tags."""
    blocks = ["WEBVTT\n"]
    for start, end, text, speaker in _cues(source):
        line = _vtt_escape(text)
        if speaker:
            line = f"<v {_vtt_escape(speaker)}>{line}"
        blocks.append(f"{format_timestamp(start, '.')} --> {format_timestamp(end, '.')}\n{line}\n")
    return "\n".join(blocks)


def render(source: Source, fmt: str) -> str:
    """Render as one of :data:`FORMATS`; ``json`` is :func:`to_dict` serialised."""
    if fmt == "text":
        return to_text(source) + "\n"
    if fmt == "json":
        return json.dumps(to_dict(source), ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        return to_srt(source)
    if fmt == "vtt":
        return to_vtt(source)
    raise ValueError(f"unknown transcript format {fmt!r}; use one of {', '.join(FORMATS)}")
