"""Conversation state of a realtime session: protocol items, history cut at what was heard.

Pure data; no I/O. Sizes are bounded: at most ``max_items`` items are kept, and
the LLM sees the newest items that fit in ``max_context_chars``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

ItemType = Literal["message", "function_call", "function_call_output"]
Role = Literal["user", "assistant", "system"]


SPEAKER_NOTE = (
    "\n\nSeveral people may be talking to you. Each user message starts with the "
    "speaker's name in square brackets, like [Speaker 1]; answer the person who spoke "
    "last, by name when it helps."
)
"""Appended to the instructions once speakers are marked (see ``_speakers_matter``)."""
ANONYMOUS = "Speaker "
"""How labels of unnamed speakers begin (:class:`voice.diarize.online.SpeakerProfiles`)."""


@dataclass
class SpokenSpan:
    """A piece of assistant text and where its audio sits in the item's audio (ms)."""

    text: str
    start_ms: float
    end_ms: float
    index: int = 0
    """Sentence number within the item."""
    complete: bool = True
    """False while only part of the sentence's audio has been produced."""

    def full_end_ms(self, ms_per_char: float = 70.0) -> float:
        """End of the sentence's audio; estimated from its length when still incomplete."""
        if self.complete:
            return self.end_ms
        return self.start_ms + max(self.end_ms - self.start_ms, len(self.text) * ms_per_char)


@dataclass
class Item:
    """One conversation item, mutable while its response is in progress."""

    id: str
    type: ItemType
    role: Role | None = None
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    text: str = ""
    """User text or transcript; assistant transcript/text."""
    audio: bool = False
    """Whether the content part is audio (``input_audio`` / ``output_audio``)."""
    audio_ms: float = 0.0
    """Assistant audio produced for this item (ms)."""
    spans: list[SpokenSpan] = field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""
    output: str = ""
    speaker: str | None = None
    """Extension: speaker label of a user turn, when known."""
    start_ms: float | None = None
    end_ms: float | None = None
    """Where a user turn sits in the session's input audio (ms from its start)."""
    internal: bool = False
    """A server tool's call or result: the LLM sees it, the client never does (no
    events, not found by id, never a ``previous_item_id``)."""

    def to_protocol(self) -> dict[str, Any]:
        """The item as the protocol's ``ConversationItem``."""
        base: dict[str, Any] = {
            "id": self.id,
            "object": "realtime.item",
            "type": self.type,
            "status": self.status,
        }
        if self.type == "function_call":
            return {**base, "call_id": self.call_id, "name": self.name, "arguments": self.arguments}
        if self.type == "function_call_output":
            return {**base, "call_id": self.call_id, "output": self.output}
        base["role"] = self.role
        part: dict[str, Any]
        if self.role == "assistant":
            part = (
                {"type": "output_audio", "transcript": self.text}
                if self.audio
                else {"type": "output_text", "text": self.text}
            )
        elif self.audio:
            part = {"type": "input_audio", "transcript": self.text or None}
        else:
            part = {"type": "input_text", "text": self.text}
        base["content"] = [part]
        if self.speaker is not None:
            base["speaker"] = self.speaker
        return base


def text_heard(spans: Iterable[SpokenSpan], audio_end_ms: float) -> str:
    """The part of the spoken text the listener heard before ``audio_end_ms``.

    Whole spans that finished playing are kept; the span playing at the cut keeps
    the share of its words proportional to the share of its audio played.
    """
    kept: list[str] = []
    for span in spans:
        end_ms = span.full_end_ms()
        if end_ms <= audio_end_ms:
            kept.append(span.text.strip())
            continue
        if span.start_ms < audio_end_ms:
            words = span.text.split()
            share = (audio_end_ms - span.start_ms) / max(end_ms - span.start_ms, 1e-6)
            count = int(len(words) * share)
            if count:
                kept.append(" ".join(words[:count]))
        break
    return " ".join(k for k in kept if k)


class Conversation:
    """Ordered items of one session."""

    def __init__(self, *, max_items: int = 200, max_context_chars: int = 6000) -> None:
        self._items: list[Item] = []
        self.max_items = max_items
        self.max_context_chars = max_context_chars

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    @property
    def last_id(self) -> str | None:
        """The newest item the client knows of."""
        return next((i.id for i in reversed(self._items) if not i.internal), None)

    def get(self, item_id: str) -> Item | None:
        """The item the client knows as ``item_id`` (internal items are not found)."""
        return next((i for i in self._items if i.id == item_id and not i.internal), None)

    def add(self, item: Item, previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (``None`` = append; ``"root"`` = first).

        Returns the id of the item the client knows now before it (internal items
        are skipped). Raises ``KeyError`` for an unknown ``previous_item_id``. The
        oldest items go when over ``max_items``.
        """
        if previous_item_id is None:
            position = len(self._items)
        elif previous_item_id == "root":
            position = 0
        else:
            position = next(
                (
                    n + 1
                    for n, i in enumerate(self._items)
                    if i.id == previous_item_id and not i.internal
                ),
                -1,
            )
            if position < 0:
                raise KeyError(previous_item_id)
        self._items.insert(position, item)
        while len(self._items) > self.max_items:
            self._items.pop(0)
        index = self._items.index(item)
        return next((i.id for i in reversed(self._items[:index]) if not i.internal), None)

    def delete(self, item_id: str) -> bool:
        """Remove the (client-visible) item ``item_id``; False when there is none."""
        item = self.get(item_id)
        if item is None:
            return False
        self._items.remove(item)
        return True

    def truncate(self, item_id: str, audio_end_ms: float) -> Item:
        """Cut an assistant audio item to the audio heard before ``audio_end_ms``.

        Raises ``KeyError`` (unknown item) or ``ValueError`` (not assistant audio,
        or ``audio_end_ms`` beyond the audio produced).
        """
        item = self.get(item_id)
        if item is None:
            raise KeyError(item_id)
        if item.role != "assistant" or not item.audio:
            raise ValueError("only assistant audio items can be truncated")
        if audio_end_ms > item.audio_ms + 1.0:
            raise ValueError(
                f"audio_end_ms {audio_end_ms:.0f} is beyond the item's audio ({item.audio_ms:.0f} ms)"
            )
        item.text = text_heard(item.spans, audio_end_ms)
        item.spans = [s for s in item.spans if s.start_ms < audio_end_ms]
        if item.spans:
            item.spans[-1].end_ms = min(item.spans[-1].end_ms, audio_end_ms)
        item.audio_ms = audio_end_ms
        return item

    def chat_messages(self, instructions: str, pending: Item | None = None) -> list[dict[str, Any]]:
        """The newest history that fits ``max_context_chars``, as chat-completion messages.

        Tool calls and their outputs are kept or dropped together so the LLM never
        sees an orphaned tool result. ``pending``: a user turn as a speculative request
        assumes it, read in place of the item with its id (committed, its transcript still
        to come), else as the last item.
        """
        items = self._items
        if pending is not None:
            ids = [item.id for item in items]
            if pending.id in ids:
                items = [pending if item.id == pending.id else item for item in items]
            else:
                items = [*items, pending]
        messages: list[dict[str, Any]] = []
        budget = self.max_context_chars
        marked = _speakers_matter(items)
        for item in reversed(items):
            message = _to_chat(item, marked)
            if message is None:
                continue
            size = len(str(message.get("content") or "")) + len(item.arguments)
            if budget - size < 0 and messages:
                break
            budget -= size
            messages.append(message)
        messages.reverse()
        while messages and messages[0]["role"] == "tool":
            messages.pop(0)
        if marked:
            instructions += SPEAKER_NOTE
        return [{"role": "system", "content": instructions}, *_merge_tool_calls(messages)]


def _speakers_matter(items: list[Item]) -> bool:
    """Mark speakers for the LLM once two voices were heard, or a known one (a name)."""
    labels = {i.speaker for i in items if i.role == "user" and i.speaker}
    return len(labels) > 1 or any(not label.startswith(ANONYMOUS) for label in labels)


def _to_chat(item: Item, mark_speaker: bool = False) -> dict[str, Any] | None:
    if item.type == "function_call":
        return {  # "" not null: llama-cpp-python's server refuses null (and a missing one)
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments or "{}"},
                }
            ],
        }
    if item.type == "function_call_output":
        return {"role": "tool", "tool_call_id": item.call_id, "content": item.output}
    if not item.text.strip():
        return None
    text = item.text
    if mark_speaker and item.role == "user" and item.speaker:
        text = f"[{item.speaker}] {text}"
    return {"role": item.role or "user", "content": text}


def _merge_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive assistant tool-call messages (parallel calls) into one."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and message.get("tool_calls")
            and prev.get("tool_calls")
            and prev["role"] == "assistant"
        ):
            prev["tool_calls"].extend(message["tool_calls"])
            continue
        merged.append(message)
    return merged
