"""Speculative LLM request started while the end of the user's turn is being confirmed.

When trailing silence begins, the session already has a speculative transcript;
starting the LLM then hides its first-token latency behind the end-of-speech
silence wait. If the turn is confirmed with the same words (:func:`same_words`:
case and punctuation aside, as a final transcript may differ from the speculative
one only in those), the response replays the buffered events and continues live;
otherwise the prefetch is discarded (its HTTP stream is closed). Nothing is
emitted to the client by a prefetch; its first phrase (:func:`first_phrase`) may be
synthesized ahead, so a confirmed reply starts speaking at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from voice.llm import Completion, LlmEvent, TextDelta
from voice.tts.chunker import SentenceChunker

_WORD = re.compile(r"[\w']+")


def words_of(text: str) -> list[str]:
    """The words of ``text``, lower case, without punctuation."""
    return _WORD.findall(text.lower())


def same_words(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` say the same words (case and punctuation aside)."""
    return words_of(a) == words_of(b)


class Prefetch:
    """Consumes an LLM stream into a buffer from the moment it is created."""

    def __init__(self, messages: list[dict[str, Any]], stream: AsyncIterator[LlmEvent]) -> None:
        self.messages = messages
        self._stream = stream
        self._events: list[LlmEvent] = []
        self._error: BaseException | None = None
        self._done = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(), name="llm-prefetch")

    async def _pump(self) -> None:
        try:
            async for event in self._stream:
                self._events.append(event)
                self._changed.set()
        except Exception as exc:  # replayed to the consumer
            self._error = exc
        finally:
            self._done = True
            self._changed.set()

    def matches(self, messages: list[dict[str, Any]]) -> bool:
        """Whether this request answers ``messages``: the same messages, the last one's
        text compared by :func:`same_words`."""
        if len(messages) != len(self.messages) or not messages:
            return False
        *head, last = messages
        *own_head, own_last = self.messages
        if head != own_head or {**last, "content": ""} != {**own_last, "content": ""}:
            return False
        content, own = last.get("content"), own_last.get("content")
        if isinstance(content, str) and isinstance(own, str):
            return same_words(content, own)
        return bool(content == own)

    async def events(self) -> AsyncIterator[LlmEvent]:
        """Buffered events, then live ones until the stream ends (re-raises its error)."""
        index = 0
        while True:
            while index < len(self._events):
                yield self._events[index]
                index += 1
            if self._done:
                if self._error is not None:
                    raise self._error
                return
            self._changed.clear()
            if index < len(self._events) or self._done:
                continue
            await self._changed.wait()

    async def aclose(self) -> None:
        """Stop the request and close its stream. Safe to call more than once."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def first_phrase(prefetch: Prefetch, chunker: SentenceChunker) -> str | None:
    """The reply's first speakable piece, cut by ``chunker`` as soon as the prefetched
    stream holds it; None when the reply opens with a tool call, says nothing or fails.
    Safe to cancel."""
    try:
        async for event in prefetch.events():
            if isinstance(event, TextDelta):
                pieces = chunker.push(event.text)
                if pieces:
                    return pieces[0]
            elif not isinstance(event, Completion):
                return None  # a tool call comes first: nothing to say ahead
    except Exception:  # the reply itself meets the error
        return None
    pieces = chunker.flush()
    return pieces[0] if pieces else None
