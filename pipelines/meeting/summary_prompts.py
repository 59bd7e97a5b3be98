"""What the summary asks the LLM: transcript lines, parts that fit the model's
context, the map and reduce prompts, and reading the reply. Pure; no I/O.

A transcript is sent as lines ``[id] Name (HH:MM:SS): text``. The *map* prompt
asks for the summary of one part of the meeting; the *reduce* prompt gives the
partial summaries of all parts (each item with its cited ids) and asks for one
summary of the whole meeting. Both carry the JSON schema in the system prompt,
for servers that ignore ``response_format``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipelines.meeting.document import TranscriptDocument, clock
from pipelines.meeting.summary import ActionItem, Part, SummaryItem
from pipelines.meeting.summary_schema import CONTENT_SCHEMA, LIST_PARTS

CHARS_PER_TOKEN = 3.0
"""Characters per token assumed when sizing requests (English runs ~4; names,
numbers and ids fewer, so this errs on the safe side)."""

SYSTEM_PROMPT = (
    "You summarise meeting transcripts. Each transcript line is "
    "'[segment id] Speaker (time): text'. Reply with one JSON object only, matching this "
    "JSON schema:\n{schema}\n"
    "Write a short title, the key points, the decisions made, the action items (owner = the "
    "person who will do it, due = the deadline as stated, null when not stated) and the "
    "questions left unanswered. Every item must cite, in 'citations', the ids in square "
    "brackets of the segments it is based on; cite only ids that appear in the transcript. "
    "Leave a list empty when the meeting has nothing for it."
)
REDUCE_PROMPT = (
    "You merge the summaries of consecutive parts of one meeting into one summary of the "
    "whole meeting. Each item is given as '- [segment ids] text'. Reply with one JSON object "
    "only, matching this JSON schema:\n{schema}\n"
    "Write one short title. Merge items that say the same thing (cite all their ids), keep "
    "what matters most, and drop nothing important. Every item must cite, in 'citations', "
    "ids given with the items it is based on; cite no other ids. Leave a list empty when no "
    "part has anything for it."
)
_HEADINGS = {
    "key_points": "Key points",
    "decisions": "Decisions",
    "action_items": "Action items",
    "open_questions": "Open questions",
}


def schema_text() -> str:
    return json.dumps(CONTENT_SCHEMA, separators=(",", ":"))


def prompt_tokens() -> int:
    """Tokens the longer system prompt (with the schema) takes, estimated, plus the
    request's framing."""
    longest = max(len(SYSTEM_PROMPT), len(REDUCE_PROMPT)) + len(schema_text())
    return int(longest / CHARS_PER_TOKEN) + 64


def part_chars(context_tokens: int, reply_tokens: int) -> int:
    """Transcript characters that fit one request to a model with ``context_tokens``
    of context that may answer with ``reply_tokens``; ``ValueError`` when even the
    prompt and the reply leave no room for 1000 characters."""
    room = int((context_tokens - reply_tokens - prompt_tokens()) * CHARS_PER_TOKEN)
    if room < 1000:
        raise ValueError(
            f"a context of {context_tokens} tokens leaves no room for the transcript "
            f"after the prompt (~{prompt_tokens()}) and the reply ({reply_tokens})"
        )
    return room


def transcript_lines(document: TranscriptDocument) -> list[tuple[int, str]]:
    """``(segment id, "[id] Name (HH:MM:SS): text")`` for every non-blank segment."""
    return [
        (s.id, f"[{s.id}] {document.name_of(s.speaker)} ({clock(s.start)}): {s.text.strip()}")
        for s in document.segments
        if s.text.strip()
    ]


def chunk_lines(lines: Sequence[tuple[int, str]], chunk_chars: int) -> list[list[tuple[int, str]]]:
    """Consecutive lines grouped into parts of at most ``chunk_chars`` characters
    (a longer single line is a part of its own)."""
    chunks: list[list[tuple[int, str]]] = []
    size = 0
    for line in lines:
        if not chunks or size + len(line[1]) + 1 > chunk_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line[1]) + 1
    return chunks


def map_messages(chunk: list[tuple[int, str]], index: int, total: int) -> list[dict[str, Any]]:
    """The request for part ``index`` (0-based) of ``total``."""
    part = f" (part {index + 1} of {total})" if total > 1 else ""
    body = "\n".join(line for _, line in chunk)
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(schema=schema_text())},
        {"role": "user", "content": f"Meeting transcript{part}:\n{body}"},
    ]


def reduce_messages(titles: Sequence[str], merged: Mapping[str, Part]) -> list[dict[str, Any]]:
    """The request that merges the parts' summaries: their titles and every item
    of ``merged`` (list parts) with its citations."""
    lines = ["Titles of the parts: " + " | ".join(titles)]
    for part in LIST_PARTS:
        lines += ["", _HEADINGS[part] + ":"]
        for item in merged.get(part, ()):
            assert isinstance(item, SummaryItem | ActionItem)
            lines.append(f"- {list(item.citations)} {_item_text(item)}")
    body = "\n".join(lines)
    return [
        {"role": "system", "content": REDUCE_PROMPT.format(schema=schema_text())},
        {"role": "user", "content": f"Summaries of the meeting's parts, in order:\n{body}"},
    ]


def _item_text(item: SummaryItem | ActionItem) -> str:
    if isinstance(item, SummaryItem):
        return item.text
    extra = "; ".join(
        x for x in (item.owner and f"owner: {item.owner}", item.due and f"due: {item.due}") if x
    )
    return item.text + (f" ({extra})" if extra else "")


def parse_reply(text: str) -> Any:
    """The JSON object in a reply (a Markdown code fence around it is tolerated);
    raises ``ValueError`` when there is none."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    return json.loads(fenced.group(1) if fenced else body)
