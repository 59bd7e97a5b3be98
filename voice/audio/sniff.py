"""Recognise media files by their first bytes, to explain why decoding failed.

FFmpeg reports "invalid data" alike for a text file and for a damaged MP3;
the signature tells the two apart (an unknown format versus a known one
that is truncated or corrupt).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SNIFF_BYTES = 64
"""How many leading bytes :func:`media_family` looks at."""

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"fLaC", "flac"),
    (b"OggS", "ogg"),
    (b"ID3", "mp3"),
    (b"\x1a\x45\xdf\xa3", "matroska"),
    (b"FORM", "aiff"),
    (b"caff", "caf"),
    (b".snd", "au"),
    (b"#!AMR", "amr"),
    (b"wvpk", "wavpack"),
    (b"MAC ", "ape"),
    (b"FLV", "flv"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf"),
    (b"\x00\x00\x01\xba", "mpeg-ps"),
)
_RIFF_KINDS = {b"WAVE": "wav", b"AVI ": "avi"}
_MIN_MPEG_BYTES = 4096
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}


def media_family(head: bytes) -> str | None:
    """A short name for the audio/video format ``head`` starts with, or None if unknown."""
    for prefix, name in _PREFIXES:
        if head.startswith(prefix):
            return name
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    if head[4:8] in _MP4_BOXES:
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "mpeg-audio"  # MP3 or ADTS AAC frame sync
    return None


def cut_short(family: str | None, file: BinaryIO, start: int = 0) -> bool:
    """True when a file of a known ``family`` visibly ends before its headers do.

    Checks the structures whose sizes are written up front: MP4/MOV boxes (and
    the ``moov`` index, which encoders often write last), RIFF/WAV chunks, an
    ID3v2 tag and FLAC metadata blocks, and whether MPEG audio holds more than
    a few frames. ``file`` must be seekable; its
    position is restored.
    """
    position = file.tell()
    try:
        end = file.seek(0, 2)
        file.seek(start)
        if family == "mp4":
            return _mp4_index_missing(file, start, end)
        if family == "wav":
            return _riff_cut(file, start, end)
        if family in ("mp3", "mpeg-audio", "flac"):
            return _id3_or_flac_cut(file, start, end)
        return False
    finally:
        file.seek(position)


def _mp4_index_missing(file: BinaryIO, offset: int, end: int) -> bool:
    while offset + 8 <= end:
        file.seek(offset)
        size, kind = struct.unpack(">I4s", file.read(8))
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > end:
                return True
            (size,) = struct.unpack(">Q", file.read(8))
        elif size == 0:  # box extends to the end of the file
            size = end - offset
        if kind == b"moov":
            return offset + size > end
        if size < 8:
            return False  # malformed rather than cut
        offset += size
    return True


def _riff_cut(file: BinaryIO, offset: int, end: int) -> bool:
    offset += 12  # "RIFF", size, "WAVE"
    while offset + 8 <= end:
        file.seek(offset)
        kind, size = struct.unpack("<4sI", file.read(8))
        if kind == b"data":
            return size > 0 and offset + 8 >= end
        offset += 8 + size + (size & 1)
    return True  # no data chunk before the end


def _id3_or_flac_cut(file: BinaryIO, offset: int, end: int) -> bool:
    head = file.read(10)
    if head.startswith(b"ID3"):
        if len(head) < 10:
            return True
        size = 0
        for byte in head[6:10]:  # syncsafe integer: 7 bits per byte
            size = (size << 7) | (byte & 0x7F)
        offset += 10 + size
        if offset >= end:
            return True
        file.seek(offset)
        head = file.read(4)
    if not head.startswith(b"fLaC"):
        # MPEG audio frames are at most ~2.9 kB: less than a few of them that
        # fail to decode means the stream was cut, not that it is damaged.
        return end - offset < _MIN_MPEG_BYTES
    offset += 4
    while True:  # metadata blocks: 1 bit "last", 7 bits type, 24 bits length
        file.seek(offset)
        block = file.read(4)
        if len(block) < 4:
            return True
        offset += 4 + int.from_bytes(block[1:4], "big")
        if offset > end:
            return True
        if block[0] & 0x80:
            return offset >= end
