"""Split a stream of LLM text deltas into speakable pieces.

Pure logic, no I/O. Text is cleaned of markdown and emojis
(:mod:`voice.tts.textclean`), then cut one character at a time, so the pieces
never depend on how the text was split into deltas.

Rules:

- a piece ends at ``.``, ``!`` or ``?`` (plus closing quotes or brackets)
  followed by whitespace, and at every newline;
- ``.`` after a title (Mr., Dr., St., ...), after ``e.g.``/``i.e.`` or a
  single capital (``J. Smith``) never ends a piece; after an initialism or
  ``etc.`` (``U.S.``, ``a.m.``) it does only when the next word is capitalised;
- ``3.14``, ``10:30``, ``1,000`` and ``well-known`` are never cut; an
  ellipsis counts as a clause break, not a sentence end; a list number
  (``1.``) does not stand alone;
- the first piece of a response may end early at a clause break (``,`` ``;``
  ``:``, also inside closing quotes or brackets, an ellipsis or a dash) once it is
  at least ``first_clause_min_chars`` long, so speech starts sooner; with
  ``first_phrase_words`` > 0 it may also end before a joining word (``and``,
  ``but``, ``with``, ``in``, ``because``, ...) once it holds that many words and
  ``first_clause_min_chars`` characters (a phrase, for the shortest wait for the
  first audio);
- a piece longer than ``max_chars`` is cut at its last clause break in the
  second half, else at its last space (a word longer than that is cut hard);
- pieces without a letter or digit are dropped.
"""

from __future__ import annotations

import re

from voice.tts.textclean import SpeechTextCleaner

_TITLES = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "e.g", "i.e", "cf", "approx"}
)
_AMBIGUOUS = frozenset({"etc", "inc", "ltd", "co"})
_INITIALISM = re.compile(r"(?:[a-z]\.)+[a-z]")
_CLOSERS = "\"'”’)]»"
_END = re.compile(r"([.!?…]+)[" + re.escape(_CLOSERS) + r"]*$")
_CLAUSE_PUNCT = ",;:"
_CLAUSE_END = re.compile(r"[" + _CLAUSE_PUNCT + r"][" + re.escape(_CLOSERS) + r"]*$")
"""A clause mark, also inside closing quotes or brackets: 'When I say "yes,"'."""
_DASHES = "—–"
_LIST_NUMBER = re.compile(r"\d{1,3}\.")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.,!?;:])")
_JOINING_WORDS = frozenset({
    "and", "but", "or", "so", "because", "with", "without", "in", "on", "at", "for", "from",
    "that", "which", "who", "when", "while", "where", "if", "about", "since", "until",
})
"""Words a first phrase may be cut before: a new phrase starts there, so the cut
sounds like a breath rather than a break inside a phrase."""


class SentenceChunker:
    """Turns LLM token deltas into sentences (and one early first clause).

    ``first_clause_min_chars`` and ``max_chars`` are character counts of the
    cleaned piece; ``first_phrase_words`` a word count (0 = the first piece ends
    only at punctuation). Call :meth:`push` per delta and :meth:`flush` at the end
    of the response; after :meth:`flush` the chunker is ready for the next
    response (whose first piece may again end at a clause).
    """

    def __init__(
        self, first_clause_min_chars: int = 12, max_chars: int = 240, first_phrase_words: int = 0
    ) -> None:
        if first_clause_min_chars < 1:
            raise ValueError("first_clause_min_chars must be >= 1")
        if first_phrase_words < 0:
            raise ValueError("first_phrase_words must be >= 0")
        self.first_phrase_words = first_phrase_words
        if max_chars < max(20, first_clause_min_chars):
            raise ValueError("max_chars must be >= 20 and >= first_clause_min_chars")
        self.first_clause_min_chars = first_clause_min_chars
        self.max_chars = max_chars
        self._cleaner = SpeechTextCleaner()
        self._reset()

    def _reset(self) -> None:
        self._buf = ""
        self._pending: int | None = None  # end of a cut decided by the next word's case
        self._first_done = False

    def push(self, delta: str) -> list[str]:
        """Feed a text delta; returns the pieces it completed (maybe none)."""
        out: list[str] = []
        for ch in self._cleaner.feed(delta):
            self._char(ch, out)
        return out

    def flush(self) -> list[str]:
        """End of response: returns the remaining piece(s) and resets."""
        out: list[str] = []
        for ch in self._cleaner.flush():
            self._char(ch, out)
        self._emit(len(self._buf), out)
        self._reset()
        return out

    # -- state machine ----------------------------------------------------
    def _char(self, ch: str, out: list[str]) -> None:
        if self._pending is not None and not ch.isspace():
            cut, self._pending = self._pending, None
            if ch.isupper():
                self._emit(cut, out)
        if ch == "\n":
            self._emit(len(self._buf), out)
            return
        if ch.isspace():
            if self._buf and not self._buf.endswith(" "):
                self._at_space(out)
            return
        self._buf += ch
        if ch in _DASHES and self._early_clause_ok():
            self._emit(len(self._buf), out)
        elif len(self._buf) > self.max_chars:
            self._emit(self._overflow_cut(), out)

    def _at_space(self, out: list[str]) -> None:
        """Whitespace after non-space text: decide whether the text so far ends a piece."""
        kind = self._ending(self._buf)
        if kind == "sentence" or (kind == "clause" and self._early_clause_ok()):
            self._emit(len(self._buf), out)
            return
        if kind == "maybe":
            self._pending = len(self._buf)
        elif kind is None and self._pending is None and self.first_phrase_words:
            head, _, word = self._buf.rpartition(" ")
            if (
                word.lower() in _JOINING_WORDS
                and not self._first_done
                and len(head.split()) >= self.first_phrase_words
                and len(head.strip()) >= self.first_clause_min_chars
            ):
                self._emit(len(head), out)
        self._buf += " "

    def _ending(self, text: str) -> str | None:
        """``sentence``, ``maybe`` (depends on the next word), ``clause`` or None."""
        match = _END.search(text)
        if match is None:
            if _CLAUSE_END.search(text) or text.endswith(" -"):
                return "clause"
            return None
        punct = match.group(1)
        if "!" in punct or "?" in punct:
            return "sentence"
        if punct != ".":
            return "clause"  # ellipsis
        words = text[: match.start()].split()
        if not words:
            return None
        if _LIST_NUMBER.fullmatch(text.strip()):
            return None
        word = words[-1].lstrip("\"'“‘([«")
        lower = word.lower()
        if lower in _TITLES or (len(word) == 1 and word.isupper()):
            return None
        if lower in _AMBIGUOUS or _INITIALISM.fullmatch(lower):
            return "maybe"
        return "sentence"

    def _early_clause_ok(self) -> bool:
        return not self._first_done and len(self._buf.strip()) >= self.first_clause_min_chars

    def _overflow_cut(self) -> int:
        """Where to cut a buffer that just exceeded ``max_chars``."""
        limit = self.max_chars
        head = self._buf[: limit + 1]
        for i in range(limit, limit // 2, -1):
            if head[i] == " " and (head[i - 1] in _CLAUSE_PUNCT or head[i - 1] in _DASHES):
                return i
        space = head.rfind(" ", 1)
        return space if space > 0 else limit

    def _emit(self, cut: int, out: list[str]) -> None:
        piece = _SPACE_BEFORE_PUNCT.sub("", self._buf[:cut].strip())
        rest = self._buf[cut:].lstrip()
        if self._pending is not None:
            shift = len(self._buf) - len(rest)
            self._pending = self._pending - shift if self._pending > shift else None
        self._buf = rest
        if any(c.isalnum() for c in piece):
            out.append(piece)
            self._first_done = True
