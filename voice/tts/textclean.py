"""Streaming removal of markdown and emojis from LLM text before speech.

Pure logic, no I/O. :class:`SpeechTextCleaner` works one character at a time,
so feeding text in any split gives the same output. What it does:

- ``[link text](url)`` → ``link text``; stray ``[`` ``]`` are dropped;
- ``*``, backticks and ``#`` are dropped; ``_`` becomes a space;
- bullet markers (``-``, ``*``, ``+``, ``•`` followed by a space) and
  blockquote ``>`` at the start of a line are dropped; ``-5`` is kept;
- emojis, variation selectors, zero-width joiners and keycaps are dropped.

Newlines are kept: the chunker treats them as piece boundaries.
"""

from __future__ import annotations

_DROP = frozenset("*`#[")
_BULLETS = frozenset("-*+•>")
_KEEP_IF_NOT_BULLET = frozenset("-+")  # "-5 degrees", "+1 555" at a line start


def is_emoji(ch: str) -> bool:
    """True for pictographs and their modifiers (ZWJ, variation selectors, keycap)."""
    cp = ord(ch)
    return (
        cp >= 0x1F000  # emoticons, pictographs, flags, skin tones, tags
        or 0x2600 <= cp <= 0x27BF  # miscellaneous symbols, dingbats
        or 0x2B00 <= cp <= 0x2BFF  # arrows and stars used as emoji
        or cp in (0x200D, 0xFE0E, 0xFE0F, 0x20E3)
    )


class SpeechTextCleaner:
    """Character-level state machine; :meth:`feed` returns the cleaned text so far."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._line_start = True
        self._held = ""  # a possible bullet marker at a line start
        self._after_bracket = False
        self._url_depth = 0

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            self._char(ch, out)
        return "".join(out)

    def flush(self) -> str:
        """End of text: returns anything held back and resets the state."""
        held = self._held if self._held in _KEEP_IF_NOT_BULLET else ""
        self.reset()
        return held

    def _char(self, ch: str, out: list[str]) -> None:
        if self._url_depth:
            if ch == "(":
                self._url_depth += 1
            elif ch == ")":
                self._url_depth -= 1
            elif ch == "\n":  # unclosed "(url": give up skipping at the line end
                self._url_depth = 0
                self._plain(ch, out)
            return
        if self._after_bracket:
            self._after_bracket = False
            if ch == "(":
                self._url_depth = 1
                return
        if is_emoji(ch):
            return
        if self._held:
            held, self._held = self._held, ""
            if ch in " \t":
                return  # a bullet marker and its space
            if held in _KEEP_IF_NOT_BULLET:
                out.append(held)
        elif self._line_start:
            if ch in " \t#":
                if ch != "#":
                    out.append(ch)
                return
            self._line_start = False
            if ch in _BULLETS:
                self._held = ch
                return
        self._plain(ch, out)

    def _plain(self, ch: str, out: list[str]) -> None:
        if ch == "\n":
            self._line_start = True
            out.append(ch)
        elif ch == "]":
            self._after_bracket = True
        elif ch == "_":
            out.append(" ")
        elif ch not in _DROP:
            out.append(ch)
