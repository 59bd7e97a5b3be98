"""Meeting summary records, their JSON and Markdown forms, and checking LLM output.

The JSON form (:meth:`MeetingSummary.to_dict`) follows
:data:`~pipelines.meeting.summary_schema.SUMMARY_SCHEMA`::

    {"title": "...",
     "key_points":     [{"text": "...", "citations": [3, 4]}],
     "decisions":      [{"text": "...", "citations": [12]}],
     "action_items":   [{"text": "...", "owner": "Speaker 2" | null, "due": "Friday" | null,
                         "citations": [20]}],
     "open_questions": [{"text": "...", "citations": [31]}],
     "method": {"title": "llm" | "extractive", "key_points": ..., ...},
     "problems": ["decisions: cites segment 99, which does not exist", ...]}

Pure; no I/O. :func:`check_parts` is how LLM replies are judged, part by part.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from jsonschema import Draft202012Validator

from pipelines.meeting.document import TranscriptDocument, clock
from pipelines.meeting.summary_schema import CONTENT_SCHEMA, PARTS

Method = Literal["llm", "extractive"]
Part = str | tuple["SummaryItem", ...] | tuple["ActionItem", ...]


@dataclass(frozen=True, slots=True)
class SummaryItem:
    """A key point, decision or open question, with the segment ids it rests on."""

    text: str
    citations: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": list(self.citations)}


@dataclass(frozen=True, slots=True)
class ActionItem:
    """Something someone will do: ``owner`` and ``due`` as stated, None when not."""

    text: str
    owner: str | None
    due: str | None
    citations: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "owner": self.owner,
            "due": self.due,
            "citations": list(self.citations),
        }


@dataclass(frozen=True)
class MeetingSummary:
    """A structured summary; ``method`` says which method produced each part (see
    :data:`~pipelines.meeting.summary_schema.PARTS`), ``problems`` why LLM output
    was rejected."""

    title: str
    key_points: tuple[SummaryItem, ...]
    decisions: tuple[SummaryItem, ...]
    action_items: tuple[ActionItem, ...]
    open_questions: tuple[SummaryItem, ...]
    method: Mapping[str, Method]
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, valid against ``SUMMARY_SCHEMA``."""
        return {
            "title": self.title,
            "key_points": [i.to_dict() for i in self.key_points],
            "decisions": [i.to_dict() for i in self.decisions],
            "action_items": [i.to_dict() for i in self.action_items],
            "open_questions": [i.to_dict() for i in self.open_questions],
            "method": {part: self.method[part] for part in PARTS},
            "problems": list(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeetingSummary:
        """Parse :meth:`to_dict` output (no validation beyond the shape)."""
        return cls(
            title=str(data["title"]),
            key_points=_items(data["key_points"]),
            decisions=_items(data["decisions"]),
            action_items=_actions(data["action_items"]),
            open_questions=_items(data["open_questions"]),
            method=dict(data["method"]),
            problems=tuple(data.get("problems") or ()),
        )

    def to_markdown(self, document: TranscriptDocument | None = None) -> str:
        """Markdown with one section per non-empty part; citations shown as segment
        ids, or as ``[HH:MM:SS]`` start times when ``document`` is given."""

        def cite(ids: tuple[int, ...]) -> str:
            if document is None:
                return " (" + ", ".join(f"#{i}" for i in ids) + ")"
            known = document.segment_ids
            return " " + " ".join(
                f"[{clock(document.segment(i).start)}]" for i in ids if i in known
            )

        lines = [f"# {self.title}", ""]
        sections: list[tuple[str, list[str]]] = [
            ("Key points", [f"- {i.text}{cite(i.citations)}" for i in self.key_points]),
            ("Decisions", [f"- {i.text}{cite(i.citations)}" for i in self.decisions]),
            (
                "Action items",
                [f"- [ ] {_action_line(i)}{cite(i.citations)}" for i in self.action_items],
            ),
            ("Open questions", [f"- {i.text}{cite(i.citations)}" for i in self.open_questions]),
        ]
        for heading, items in sections:
            if items:
                lines += [f"## {heading}", "", *items, ""]
        methods = ", ".join(f"{part.replace('_', ' ')}: {self.method[part]}" for part in PARTS)
        lines.append(f"_Produced by: {methods}._")
        return "\n".join(lines) + "\n"


def _action_line(item: ActionItem) -> str:
    extra = [
        x for x in (item.owner and f"owner: {item.owner}", item.due and f"due: {item.due}") if x
    ]
    return item.text + (f" ({'; '.join(extra)})" if extra else "")


def _items(raw: Any) -> tuple[SummaryItem, ...]:
    return tuple(
        SummaryItem(str(i["text"]).strip(), tuple(int(c) for c in i["citations"])) for i in raw
    )


def _actions(raw: Any) -> tuple[ActionItem, ...]:
    return tuple(
        ActionItem(
            str(i["text"]).strip(),
            _opt(i.get("owner")),
            _opt(i.get("due")),
            tuple(int(c) for c in i["citations"]),
        )
        for i in raw
    )


def _opt(value: Any) -> str | None:
    return (str(value).strip() or None) if value is not None else None


_PART_VALIDATORS = {
    part: Draft202012Validator(CONTENT_SCHEMA["properties"][part]) for part in PARTS
}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _normal(text: str) -> str:
    """``text`` as its lower-case words, for comparing names and phrases."""
    return " ".join(_words(text))


_SCHEMA_TITLE = _normal(CONTENT_SCHEMA["properties"]["title"]["description"])
"""The title's own description in the schema: a small model copies it as the title."""


def check_parts(
    data: Any,
    allowed_ids: Collection[int],
    *,
    need_key_points: bool = True,
    spoken: Mapping[int, str] | None = None,
    speakers: Collection[str] = (),
) -> tuple[dict[str, Part], list[str]]:
    """Judge an LLM reply (parsed JSON) part by part.

    A part is accepted when it matches its schema, every item's text is
    non-blank and every cited id is in ``allowed_ids``; ``key_points`` must also
    be non-empty when ``need_key_points``; a title must not be the schema's
    description of one. With ``spoken`` (segment id -> speaker name and words, no
    times), an action item's ``due`` is kept only when its words are said in the
    segments it cites ("as stated"), its ``owner`` only then or when it is one of
    ``speakers`` (the meeting's speaker names): others are left out (null), each with
    a problem line. Returns the accepted parts (parsed) and the problem lines.
    Never raises.
    """
    if not isinstance(data, dict):
        return {}, [f"reply is not a JSON object ({type(data).__name__})"]
    accepted: dict[str, Part] = {}
    problems: list[str] = []
    for part in PARTS:
        problem = _part_problem(part, data.get(part), allowed_ids, need_key_points)
        if problem:
            problems.append(f"{part}: {problem}")
        elif part == "title":
            accepted[part] = str(data[part]).strip()
        elif part == "action_items":
            items = _actions(data[part])
            if spoken is not None:
                names = {_normal(name) for name in speakers}
                items = tuple(_stated(item, spoken, names, problems) for item in items)
            accepted[part] = items
        else:
            accepted[part] = _items(data[part])
    return accepted, problems


def _part_problem(part: str, value: Any, allowed: Collection[int], need_key_points: bool) -> str:
    if value is None:
        return "missing"
    error = next(iter(_PART_VALIDATORS[part].iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        return f"schema: {error.message}" + (f" at {where}" if where else "")
    if part == "title":
        if _normal(value) == _SCHEMA_TITLE:
            return "the title repeats the schema's description"
        return "" if value.strip() else "blank title"
    if part == "key_points" and need_key_points and not value:
        return "no key points"
    for item in value:
        if not item["text"].strip():
            return "an item has blank text"
        unknown = [c for c in item["citations"] if c not in allowed]
        if unknown:
            return f"cites segment(s) {unknown}, which the transcript does not have"
    return ""


def _stated(
    item: ActionItem, spoken: Mapping[int, str], names: Collection[str], problems: list[str]
) -> ActionItem:
    """``item`` without an owner (not a speaker) or due date its cited segments do not state."""
    said = {w for c in item.citations for w in _words(spoken.get(c, ""))}

    def stated(field: str, value: str | None, speaker_ok: bool) -> str | None:
        if value is None or (speaker_ok and _normal(value) in names):
            return value
        if set(_words(value)) <= said:
            return value
        problems.append(
            f"action_items: {field} {value!r} is not stated in segment(s) "
            f"{list(item.citations)}; left out"
        )
        return None

    owner, due = stated("owner", item.owner, True), stated("due", item.due, False)
    return replace(item, owner=owner, due=due)
