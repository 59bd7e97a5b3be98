"""NIST RTTM (speaker turns) and UEM (scored regions) text formats.

RTTM line: ``SPEAKER <uri> <channel> <start s> <duration s> <NA> <NA> <speaker>
<NA> <NA>``. UEM line: ``<uri> <channel> <start s> <end s>``. Files are UTF-8;
lines starting with ``;;`` or ``#`` and blank lines are ignored. Only
``SPEAKER`` records are read from RTTM.
"""

from __future__ import annotations

from pathlib import Path

from voice.diarize.base import SpeakerTurn

Region = tuple[float, float]
"""``(start, end)`` in seconds."""


def _lines(text: str) -> list[list[str]]:
    return [
        line.split()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith((";;", "#"))
    ]


def parse_rttm(text: str) -> dict[str, list[SpeakerTurn]]:
    """Turns per recording ``uri``, each list sorted by start."""
    result: dict[str, list[SpeakerTurn]] = {}
    for number, fields in enumerate(_lines(text), start=1):
        if fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise ValueError(f"RTTM line {number}: expected at least 8 fields, got {fields}")
        start, duration = float(fields[3]), float(fields[4])
        result.setdefault(fields[1], []).append(SpeakerTurn(start, start + duration, fields[7]))
    return {uri: sorted(turns, key=lambda t: (t.start, t.end)) for uri, turns in result.items()}


def format_rttm(turns: list[SpeakerTurn], uri: str, channel: int = 1) -> str:
    """RTTM text for one recording, times rounded to milliseconds."""
    if not uri or any(c.isspace() for c in uri):
        raise ValueError(f"RTTM uri must be non-empty without spaces: {uri!r}")
    lines = []
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        if not turn.speaker or any(c.isspace() for c in turn.speaker):
            raise ValueError(f"RTTM speaker must be non-empty without spaces: {turn.speaker!r}")
        lines.append(
            f"SPEAKER {uri} {channel} {turn.start:.3f} {turn.duration:.3f} "
            f"<NA> <NA> {turn.speaker} <NA> <NA>"
        )
    return "".join(line + "\n" for line in lines)


def read_rttm(path: str | Path) -> dict[str, list[SpeakerTurn]]:
    """Turns per recording from an RTTM file."""
    return parse_rttm(Path(path).read_text(encoding="utf-8"))


def write_rttm(path: str | Path, turns: list[SpeakerTurn], uri: str) -> None:
    """Write one recording's turns as an RTTM file."""
    Path(path).write_text(format_rttm(turns, uri), encoding="utf-8")


def parse_uem(text: str) -> dict[str, list[Region]]:
    """Scored regions per recording ``uri``, sorted by start."""
    result: dict[str, list[Region]] = {}
    for number, fields in enumerate(_lines(text), start=1):
        if len(fields) != 4:
            raise ValueError(f"UEM line {number}: expected 4 fields, got {fields}")
        start, end = float(fields[2]), float(fields[3])
        if end < start:
            raise ValueError(f"UEM line {number}: end {end} before start {start}")
        result.setdefault(fields[0], []).append((start, end))
    return {uri: sorted(regions) for uri, regions in result.items()}


def format_uem(regions: list[Region], uri: str, channel: int = 1) -> str:
    """UEM text for one recording."""
    return "".join(f"{uri} {channel} {start:.3f} {end:.3f}\n" for start, end in sorted(regions))


def read_uem(path: str | Path) -> dict[str, list[Region]]:
    """Scored regions per recording from a UEM file."""
    return parse_uem(Path(path).read_text(encoding="utf-8"))
