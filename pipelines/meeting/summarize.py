"""Summarise a transcript with the configured LLM, map-reduce, falling back part by part.

*Map*: the transcript is cut into parts that fit the model's context
(:attr:`SummaryOptions.context_tokens`; see
:func:`~pipelines.meeting.summary_prompts.part_chars`), and each part is summarised
by one ``ChatClient.complete`` request whose ``response_format`` asks for the JSON
schema (OpenAI's ``json_schema``, or llama.cpp's ``json_object`` + ``schema`` when a
server refuses the first). Each reply is checked section by section
(:func:`~pipelines.meeting.summary.check_parts`: schema, non-blank text, every
citation a segment *of that part*, no title copied from the schema; an action item's
owner or due date that its cited segments do not state is left out); a section the LLM got wrong for a part (or a
part whose request failed) is made by the extractive method over that part alone.

*Reduce*: with more than one part, the parts' summaries (each item with its
citations) go to one more request that merges them into a summary of the whole
meeting; each of its sections replaces the concatenated one when it passes the
same checks (citations must be among those of the parts' items). When the
reduce fails, or its input would not fit, the sections stay concatenated
(repeated texts dropped).

``method`` of a section is ``llm`` when the LLM made it for every part, else
``extractive`` (made extractively for at least one part); ``problems`` says
which part's output was rejected and why. When no reply of the first part is
usable (no capable LLM answers), no further part is asked and the whole
summary is made extractively over the whole meeting, as without an LLM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from pipelines.meeting.document import TranscriptDocument
from pipelines.meeting.extractive import extractive_parts
from pipelines.meeting.summary import (
    ActionItem,
    MeetingSummary,
    Method,
    Part,
    SummaryItem,
    check_parts,
)
from pipelines.meeting.summary_prompts import (
    chunk_lines,
    map_messages,
    parse_reply,
    part_chars,
    reduce_messages,
    transcript_lines,
)
from pipelines.meeting.summary_schema import LIST_PARTS, PARTS, response_formats
from voice.llm import ChatClient, LlmError
from voice.settings import Settings

__all__ = ["SummaryOptions", "assemble", "chunk_lines", "summarize", "transcript_lines"]


@dataclass(frozen=True, slots=True)
class SummaryOptions:
    """``context_tokens``: the model's context window (tokens), which sizes the parts;
    ``chunk_chars``: transcript characters per part, overriding that (None: from the
    context); ``max_tokens``: reply length per request; ``timeout_s``: per request
    attempt (None: the client's own); ``budget_s``: all LLM work of one summary (s):
    past it the remaining parts are made extractively and the reduce is skipped;
    ``use_llm``: False = extractive only, whatever LLM is given."""

    context_tokens: int = 4096
    chunk_chars: int | None = None
    max_tokens: int = 1024
    temperature: float = 0.2
    timeout_s: float | None = None
    budget_s: float = 300.0
    use_llm: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SummaryOptions:
        """Options for the configured LLM: its context window, and replies of at most a
        quarter of it (1024 tokens at most)."""
        context = settings.summary_context_tokens
        return cls(
            context_tokens=context, max_tokens=min(1024, context // 4),
            use_llm=settings.summarize_with_llm,
        )

    @property
    def part_chars(self) -> int:
        """Transcript characters per request (``ValueError`` when the context is too small)."""
        return self.chunk_chars or part_chars(self.context_tokens, self.max_tokens)


def assemble(
    llm_parts: dict[str, Part], extractive: dict[str, Part], problems: Sequence[str]
) -> MeetingSummary:
    """A summary from the LLM's accepted sections, the others from ``extractive``
    (which must hold every section the LLM's lack)."""
    parts = {part: llm_parts[part] if part in llm_parts else extractive[part] for part in PARTS}
    method: dict[str, Method] = {p: ("llm" if p in llm_parts else "extractive") for p in PARTS}
    return _summary(parts, method, problems)


def _summary(
    parts: dict[str, Part], method: dict[str, Method], problems: Sequence[str]
) -> MeetingSummary:
    return MeetingSummary(
        title=str(parts["title"]),
        key_points=cast(tuple[SummaryItem, ...], parts["key_points"]),
        decisions=cast(tuple[SummaryItem, ...], parts["decisions"]),
        action_items=cast(tuple[ActionItem, ...], parts["action_items"]),
        open_questions=cast(tuple[SummaryItem, ...], parts["open_questions"]),
        method=method,
        problems=tuple(problems),
    )


def concatenate(per_part: Sequence[dict[str, Part]]) -> dict[str, Part]:
    """The list sections of every part, in order, without repeated texts."""
    merged: dict[str, Part] = {}
    for section in LIST_PARTS:
        seen: set[str] = set()
        items: list[Any] = []
        for part in per_part:
            for item in part[section]:
                assert isinstance(item, SummaryItem | ActionItem)
                key = " ".join(item.text.lower().split())
                if key not in seen:
                    seen.add(key)
                    items.append(item)
        merged[section] = tuple(items)
    return merged


async def _ask(
    llm: ChatClient,
    messages: list[dict[str, Any]],
    formats: list[dict[str, Any]],
    opts: SummaryOptions,
) -> str:
    """One completion, trying ``formats`` in turn while the server refuses one (the one
    that worked is moved first, for the next requests). Servers that reject every
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


class _Asker:
    """Requests of one summary: the shared deadline, the ``response_format`` that
    works, and the problems found, each prefixed with where it happened."""

    def __init__(self, llm: ChatClient, opts: SummaryOptions, document: TranscriptDocument) -> None:
        self.llm, self.opts = llm, opts
        self.spoken = {s.id: f"{document.name_of(s.speaker)} {s.text}" for s in document.segments}
        self.speakers = [document.name_of(label) for label in document.speakers]
        self.formats = response_formats()
        self.deadline = asyncio.get_running_loop().time() + opts.budget_s
        self.problems: list[str] = []

    async def parts(
        self, messages: list[dict[str, Any]], allowed: set[int], where: str
    ) -> dict[str, Part]:
        """The sections of the reply that pass the checks (none on any failure)."""
        try:
            async with asyncio.timeout_at(self.deadline):
                reply = await _ask(self.llm, messages, self.formats, self.opts)
            accepted, found = check_parts(
                parse_reply(reply), allowed, spoken=self.spoken, speakers=self.speakers
            )
            self.problems += [where + p for p in found]
            return accepted
        except TimeoutError:
            self.problems.append(f"{where}the LLM time budget ({self.opts.budget_s:g} s) ran out")
        except LlmError as exc:
            self.problems.append(f"{where}LLM request failed: {exc}")
        except ValueError as exc:
            self.problems.append(f"{where}reply is not JSON: {exc}")
        return {}

    @property
    def expired(self) -> bool:
        return asyncio.get_running_loop().time() >= self.deadline


async def summarize(
    document: TranscriptDocument,
    llm: ChatClient | None,
    options: SummaryOptions | None = None,
    progress: Callable[[float], None] | None = None,
) -> MeetingSummary:
    """Summarise ``document`` (see the module docstring); ``llm`` None = extractive only.

    ``progress(fraction)`` is called at the start and after each request. Never raises for bad LLM
    output or LLM errors (they become ``problems``); ``ValueError`` when
    ``options`` leave no room for the transcript in a request. Safe to cancel: the
    pending request (or extractive work, in its thread) is abandoned and nothing
    is kept.
    """
    if progress is not None:
        progress(0.0)  # the summary has started (the stage is published at once)
    summary = await _summarize(document, llm, options or SummaryOptions(), progress)
    if progress is not None:
        progress(1.0)
    return summary


async def _summarize(
    document: TranscriptDocument,
    llm: ChatClient | None,
    opts: SummaryOptions,
    progress: Callable[[float], None] | None,
) -> MeetingSummary:
    if not opts.use_llm:
        llm = None
    chunks = chunk_lines(transcript_lines(document), opts.part_chars) if llm is not None else []
    if llm is None or not chunks:
        return await _extractive(document, [])
    asker = _Asker(llm, opts, document)
    steps = len(chunks) + (len(chunks) > 1)
    answers: list[dict[str, Part]] = []
    for index, chunk in enumerate(chunks):
        where = f"part {index + 1}/{len(chunks)}: " if len(chunks) > 1 else ""
        answers.append(
            await asker.parts(map_messages(chunk, index, len(chunks)), {i for i, _ in chunk}, where)
        )
        if progress is not None:
            progress((index + 1) / steps)
        if not any(answers):
            break  # no capable LLM answers: the rest is not asked
    if not any(answers):
        return await _extractive(document, asker.problems)
    per_part = []
    for chunk, answer in zip(chunks, answers + [{}] * (len(chunks) - len(answers)), strict=True):
        missing = set(LIST_PARTS) - set(answer)
        if missing:  # CPU work (embeddings): kept off the event loop
            ids = {i for i, _ in chunk}
            piece = replace(document, segments=tuple(s for s in document.segments if s.id in ids))
            answer = {**await asyncio.to_thread(extractive_parts, piece), **answer}
        per_part.append(answer)
    method: dict[str, Method] = {
        p: ("llm" if all(p in a for a in answers) and len(answers) == len(chunks) else "extractive")
        for p in PARTS
    }
    parts = concatenate(per_part)
    titles = [str(a["title"]) for a in answers if "title" in a]
    parts["title"] = titles[0] if titles else str(per_part[0]["title"])
    if len(chunks) > 1:
        parts.update(await _reduce(asker, titles, parts, opts))
    return _summary(parts, method, asker.problems)


async def _reduce(
    asker: _Asker, titles: list[str], parts: dict[str, Part], opts: SummaryOptions
) -> dict[str, Part]:
    """The reduce step's accepted sections (none when skipped or rejected)."""
    if asker.expired:
        asker.problems.append("reduce: skipped, the LLM time budget ran out")
        return {}
    messages = reduce_messages(titles or [str(parts["title"])], parts)
    if len(messages[-1]["content"]) > opts.part_chars:
        asker.problems.append("reduce: skipped, the parts' summaries do not fit one request")
        return {}
    cited = {c for p in LIST_PARTS for item in parts[p] for c in item.citations}  # type: ignore[union-attr]
    return await asker.parts(messages, cited, "reduce: ")


async def _extractive(document: TranscriptDocument, problems: list[str]) -> MeetingSummary:
    extractive = await asyncio.to_thread(extractive_parts, document)
    return assemble({}, extractive, problems)
