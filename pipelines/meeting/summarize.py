"""Summarise a transcript with the configured LLM, falling back part by part.

The transcript is sent as lines ``[id] Name (HH:MM:SS): text`` in chunks of at
most ``chunk_chars`` characters, one ``ChatClient.complete`` request per chunk
whose ``response_format`` asks for the JSON schema (OpenAI's ``json_schema``, or
llama.cpp's ``json_object`` + ``schema`` when a server refuses the first); the
schema is also in the system prompt, for servers that ignore ``response_format``. Each chunk's reply is checked part by part
(:func:`~pipelines.meeting.summary.check_parts`: schema, non-blank text, every
citation a segment *of that chunk*). A list part is the LLM's only if every
chunk's reply passed for it (the items are concatenated, duplicates dropped);
the title is the first chunk's. Any other part is produced by the extractive
method over the whole transcript, and the result records which method made
each part and why LLM output was rejected.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pipelines.meeting.document import TranscriptDocument, clock
from pipelines.meeting.extractive import extractive_parts
from pipelines.meeting.summary import (
    ActionItem,
    MeetingSummary,
    Method,
    Part,
    SummaryItem,
    check_parts,
)
from pipelines.meeting.summary_schema import CONTENT_SCHEMA, LIST_PARTS, PARTS, response_formats
from voice.llm import ChatClient, LlmError

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


@dataclass(frozen=True, slots=True)
class SummaryOptions:
    """``chunk_chars``: transcript characters per request (keep well inside the model's
    context); ``max_tokens``: reply length per request; ``timeout_s``: per request
    attempt (None: the client's own); ``budget_s``: all LLM work of one summary
    (s): past it the remaining parts are made extractively."""

    chunk_chars: int = 6000
    max_tokens: int = 1024
    temperature: float = 0.2
    timeout_s: float | None = None
    budget_s: float = 300.0


def transcript_lines(document: TranscriptDocument) -> list[tuple[int, str]]:
    """``(segment id, "[id] Name (HH:MM:SS): text")`` for every non-blank segment."""
    return [
        (s.id, f"[{s.id}] {document.name_of(s.speaker)} ({clock(s.start)}): {s.text.strip()}")
        for s in document.segments
        if s.text.strip()
    ]


def chunk_lines(lines: Sequence[tuple[int, str]], chunk_chars: int) -> list[list[tuple[int, str]]]:
    """Consecutive lines grouped into chunks of at most ``chunk_chars`` characters
    (a longer single line is a chunk of its own)."""
    chunks: list[list[tuple[int, str]]] = []
    size = 0
    for line in lines:
        if not chunks or size + len(line[1]) + 1 > chunk_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line[1]) + 1
    return chunks


def parse_reply(text: str) -> Any:
    """The JSON object in a reply (a Markdown code fence around it is tolerated);
    raises ``ValueError`` when there is none."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    return json.loads(fenced.group(1) if fenced else body)


def merge_parts(replies: Sequence[dict[str, Part]]) -> dict[str, Part]:
    """Parts accepted in *every* chunk: the first title, lists concatenated without
    repeated texts."""
    merged: dict[str, Part] = {}
    if replies and all("title" in r for r in replies):
        merged["title"] = replies[0]["title"]
    for part in LIST_PARTS:
        if not replies or not all(part in r for r in replies):
            continue
        seen: set[str] = set()
        items: list[Any] = []
        for reply in replies:
            for item in reply[part]:
                assert isinstance(item, SummaryItem | ActionItem)
                key = " ".join(item.text.lower().split())
                if key not in seen:
                    seen.add(key)
                    items.append(item)
        merged[part] = tuple(items)
    return merged


def assemble(
    llm_parts: dict[str, Part], extractive: dict[str, Part], problems: Sequence[str]
) -> MeetingSummary:
    """A summary from the LLM's accepted parts, the others from ``extractive`` (which
    must hold every part the LLM's lack)."""
    parts = {part: llm_parts[part] if part in llm_parts else extractive[part] for part in PARTS}
    method: dict[str, Method] = {p: ("llm" if p in llm_parts else "extractive") for p in PARTS}
    return MeetingSummary(
        title=str(parts["title"]),
        key_points=cast(tuple[SummaryItem, ...], parts["key_points"]),
        decisions=cast(tuple[SummaryItem, ...], parts["decisions"]),
        action_items=cast(tuple[ActionItem, ...], parts["action_items"]),
        open_questions=cast(tuple[SummaryItem, ...], parts["open_questions"]),
        method=method,
        problems=tuple(problems),
    )


def _messages(chunk: list[tuple[int, str]], index: int, total: int) -> list[dict[str, Any]]:
    schema = json.dumps(CONTENT_SCHEMA, separators=(",", ":"))
    part = f" (part {index + 1} of {total})" if total > 1 else ""
    body = "\n".join(line for _, line in chunk)
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(schema=schema)},
        {"role": "user", "content": f"Meeting transcript{part}:\n{body}"},
    ]


async def _ask(
    llm: ChatClient,
    messages: list[dict[str, Any]],
    formats: list[dict[str, Any]],
    opts: SummaryOptions,
) -> str:
    """One completion, trying ``formats`` in turn while the server refuses one (the one
    that worked is moved first, for the next chunks). Servers that reject every
    format with 400/422 get none (``ChatClient.complete`` drops it)."""
    for attempt, fmt in enumerate(list(formats)):
        try:
            reply = await llm.complete(
                messages,
                response_format=fmt,
                temperature=opts.temperature,
                max_tokens=opts.max_tokens,
                timeout_s=opts.timeout_s,
            )
        except LlmError as exc:
            if "response_format" not in str(exc) or attempt + 1 == len(formats):
                raise
            continue
        formats.remove(fmt)
        formats.insert(0, fmt)
        return reply
    raise AssertionError("unreachable: formats is never empty")


async def summarize(
    document: TranscriptDocument,
    llm: ChatClient | None,
    options: SummaryOptions | None = None,
    progress: Callable[[float], None] | None = None,
) -> MeetingSummary:
    """Summarise ``document`` (see the module docstring); ``llm`` None = extractive only.

    ``progress(fraction)`` is called after each request. Never raises for bad LLM
    output or LLM errors (they become ``problems``). Safe to cancel: the pending
    request is abandoned and nothing is kept.
    """
    opts = options or SummaryOptions()
    chunks = chunk_lines(transcript_lines(document), opts.chunk_chars)
    problems: list[str] = []
    replies: list[dict[str, Part]] = []
    formats = response_formats()
    if llm is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.budget_s
        for index, chunk in enumerate(chunks):
            where = f"chunk {index + 1}/{len(chunks)}: " if len(chunks) > 1 else ""
            accepted: dict[str, Part] = {}
            try:
                async with asyncio.timeout_at(deadline):
                    reply = await _ask(llm, _messages(chunk, index, len(chunks)), formats, opts)
                accepted, found = check_parts(parse_reply(reply), {i for i, _ in chunk})
                problems += [where + p for p in found]
            except TimeoutError:
                problems.append(f"{where}the LLM time budget ({opts.budget_s:g} s) ran out")
            except LlmError as exc:
                problems.append(f"{where}LLM request failed: {exc}")
            except ValueError as exc:
                problems.append(f"{where}reply is not JSON: {exc}")
            replies.append(accepted)
            if progress is not None:
                progress((index + 1) / len(chunks))
            if not merge_parts(replies):
                break  # every part has failed somewhere: the rest cannot change that
    llm_parts = merge_parts(replies) if llm is not None and chunks else {}
    extractive: dict[str, Part] = {}
    if set(PARTS) - set(llm_parts):  # CPU work (TextRank): kept off the event loop
        extractive = await asyncio.to_thread(extractive_parts, document)
    summary = assemble(llm_parts, extractive, problems)
    if progress is not None:
        progress(1.0)
    return summary
