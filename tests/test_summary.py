"""Meeting summaries: the published schema, the extractive method on real AMI meeting
transcripts (checked against the human summaries with ROUGE), and the LLM path
against a scripted OpenAI-compatible server, including rejected replies falling
back part by part.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from pipelines.meeting.cues import excerpt, find_commitment, find_decision
from pipelines.meeting.document import TranscriptDocument, TranscriptSegment
from pipelines.meeting.extractive import (
    action_items,
    decisions,
    extractive_parts,
    key_points,
    open_questions,
    sentence_vectors,
)
from pipelines.meeting.salience import SelectOptions, select
from pipelines.meeting.summarize import (
    SummaryOptions,
    chunk_lines,
    summarize,
    transcript_lines,
)
from pipelines.meeting.summary import MeetingSummary, SummaryItem, check_parts
from pipelines.meeting.summary_schema import PARTS, SUMMARY_SCHEMA, schema_json
from pipelines.meeting.text import clean, split_sentences
from tests.fakes import ScriptedLlmServer, Turn
from tests.summary_eval import MEETINGS, ami_document
from voice.llm import ChatClient, LlmOptions
from voice.settings import load_settings

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "summary.schema.json"
VALIDATOR = Draft202012Validator(SUMMARY_SCHEMA)


@pytest.fixture(scope="module")
def ami() -> dict[str, TranscriptDocument]:
    return {m: ami_document(m) for m in MEETINGS}


def check_summary(
    summary: MeetingSummary, doc: TranscriptDocument, quoted: bool = True
) -> dict[str, Any]:
    """Schema-valid, every citation a real segment, every text non-blank and (for
    extractive parts, when ``quoted``: not when LLM and extractive items are mixed)
    taken from the segment it cites (fillers such as "um" aside)."""
    data = json.loads(json.dumps(summary.to_dict()))
    errors = [e.message for e in VALIDATOR.iter_errors(data)]
    assert not errors, errors
    ids = doc.segment_ids
    for part in PARTS[1:]:
        for item in data[part]:
            assert item["text"].strip() and item["citations"]
            assert set(item["citations"]) <= ids, (part, item)
            if quoted and data["method"][part] == "extractive":
                source = clean(" ".join(doc.segment(c).text for c in item["citations"])).lower()
                head = " ".join(item["text"].rstrip(" …").lower().split()[1:6])
                assert head in source, (part, item["text"])
    return data


# --- the schema --------------------------------------------------------------------


def test_published_schema_is_valid_and_up_to_date() -> None:
    Draft202012Validator.check_schema(SUMMARY_SCHEMA)
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "run: python -c 'from pipelines.meeting."
        'summary_schema import schema_json; print(schema_json(), end="")\' > docs/summary.schema.json'
    )


def test_schema_rejects_what_it_should() -> None:
    good = {
        "title": "T",
        "key_points": [{"text": "a", "citations": [1]}],
        "decisions": [],
        "action_items": [{"text": "b", "owner": None, "due": "Friday", "citations": [2]}],
        "open_questions": [],
        "method": dict.fromkeys(PARTS, "llm"),
        "problems": [],
    }
    assert VALIDATOR.is_valid(good)
    bad_items = [
        {**good, "key_points": [{"text": "a", "citations": []}]},  # no citation
        {**good, "key_points": [{"text": "", "citations": [1]}]},  # empty text
        {**good, "action_items": [{"text": "b", "citations": [2]}]},  # owner/due missing
        {**good, "method": {**good["method"], "title": "magic"}},
        {k: v for k, v in good.items() if k != "decisions"},
    ]
    for bad in bad_items:
        assert not VALIDATOR.is_valid(bad), bad


# --- the extractive method, piece by piece -----------------------------------------------


def _doc(*lines: tuple[str, float, str]) -> TranscriptDocument:
    segs = tuple(
        TranscriptSegment(i, spk, start, start + 3.0, text)
        for i, (spk, start, text) in enumerate(lines)
    )
    names = {"A": "Alice", "B": "Bob", "C": "Carol"}
    return TranscriptDocument(segs, {s: names[s] for s in {s.speaker for s in segs}}, 120.0, "en")


def test_commitments_owners_and_deadlines() -> None:
    cue = find_commitment("I'll send the revised budget by Friday.")
    assert cue is not None and cue.by_speaker and cue.due == "by Friday"
    cue = find_commitment("Tarik, can you check the battery costs before the next meeting?")
    assert cue is not None and cue.owner == "Tarik" and cue.due == "before the next meeting"
    cue = find_commitment("Dave will draw up the interface sketches on Monday.")
    assert cue is not None and cue.owner == "Dave" and cue.due == "on Monday"
    cue = find_commitment("We need to book the room for the workshop.")
    assert cue is not None and cue.owner is None and cue.due is None
    for not_one in (
        "I'll be honest, it looks bad.",
        "I have to say I like it.",
        "Should we add a joystick?",
        "What can you say, cats are great.",
        "It'll follow you around.",
    ):
        assert find_commitment(not_one) is None, not_one


def test_decisions_skip_questions_and_hedges() -> None:
    assert find_decision("So we decided to go with the rubber case.") is not None
    assert find_decision("Okay, let's go with the yellow one.") is not None
    assert find_decision("Once we've decided what goes on it, we'll draw it.") is None
    assert find_decision("Have we agreed on the price?") is None
    assert find_decision("Until we hear otherwise we should go with just that.") is not None
    assert find_decision("We are going to use a rubber case.") is not None
    assert find_decision("We are going to have to replace it.") is None


def test_excerpt_keeps_the_clause_around_the_cue() -> None:
    text = (
        "Well it was a long day and we talked about many things, the weather, the trains, "
        "the food, and then I'll send the minutes to everyone by Friday so that nobody "
        "forgets anything at all about what was discussed today in the meeting room"
    )
    cue = find_commitment(text)
    assert cue is not None
    cut = excerpt(text, cue.span, max_words=12)
    assert cut == "And then I'll send the minutes to everyone by Friday so that …"


def test_extractive_parts_on_a_small_meeting() -> None:
    doc = _doc(
        ("A", 0.0, "Welcome everyone, today we plan the remote control launch budget."),
        ("B", 4.0, "The launch budget for the remote control is twelve thousand euros."),
        ("A", 8.0, "We decided to go with the rubber case for the remote control."),
        ("C", 12.0, "I'll send the revised launch budget to Alice by Friday."),
        ("A", 16.0, "When is the prototype review meeting scheduled?"),
        ("B", 19.0, "The prototype review meeting is on Tuesday."),
        ("C", 23.0, "Who will pay for the extra battery packs?"),
        ("A", 26.0, "Let's move on to the colours."),
    )
    sentences = split_sentences(doc)
    assert [(i.text, i.citations) for i in decisions(sentences)] == [
        ("We decided to go with the rubber case for the remote control.", (2,))
    ]
    items = action_items(sentences)
    assert [(i.owner, i.due, i.citations) for i in items if i.citations == (3,)] == [
        ("Carol", "by Friday", (3,))
    ]
    assert [i.citations for i in open_questions(sentences)] == [(6,)]  # (4,) was answered
    points = key_points(sentences)
    assert 2 <= len(points) <= 5 and all(len(p.citations) == 1 for p in points)
    assert any("budget" in p.text for p in points)


def test_embeddings_drop_repeats_and_small_talk_from_action_items() -> None:
    doc = _doc(
        ("A", 0.0, "Today we plan the budget for the new remote control."),
        ("B", 4.0, "The remote control budget is twelve euros per unit."),
        ("C", 8.0, "The remote control case could be rubber or plastic."),
        ("A", 12.0, "A rubber case for the remote costs more per unit."),
        ("B", 16.0, "Could you clip the microphone onto your belt?"),
        ("C", 20.0, "I'll send the revised remote control budget by Friday."),
        ("A", 24.0, "The remote needs big buttons and a simple layout."),
        ("B", 28.0, "I will send the updated budget for the remote control by Friday."),
        ("C", 32.0, "Plastic keeps the remote control under the unit budget."),
        ("A", 36.0, "The buttons of the remote should light up at night."),
    )
    sentences = split_sentences(doc)
    vectors = sentence_vectors(sentences)
    plain = action_items(sentences)
    assert [i.citations for i in plain] == [(4,), (5,), (7,)]
    kept = action_items(sentences, vectors=vectors)
    assert [(i.owner, i.due, i.citations) for i in kept] == [("Carol", "by Friday", (5,))]


def test_selection_covers_the_meeting_without_repeats() -> None:
    """Facility location on toy vectors: three topics, the first said three times; the
    chosen sentences cover all three topics once, in sentence order."""
    topics = np.eye(3, dtype=np.float32)
    vectors = topics[[0, 0, 0, 1, 1, 2, 2, 2, 2]]
    chosen = select(
        vectors, [1.0] * 9, list(range(9)), [10] * 9, SelectOptions(budget_words=30, sections=1)
    )
    assert sorted({int(vectors[i].argmax()) for i in chosen}) == [0, 1, 2] and len(chosen) == 3
    assert chosen == sorted(chosen)
    assert select(vectors, [1.0] * 9, [0, 1], [10, 10], SelectOptions(budget_words=30)) == [0]
    assert select(vectors, [1.0] * 9, [], [], SelectOptions()) == []


def test_summary_options_fit_the_configured_context() -> None:
    small = SummaryOptions.from_settings(load_settings(llm_context_tokens=2048))
    assert small.max_tokens == 512 and 1000 <= small.part_chars < 3000
    hosted = SummaryOptions.from_settings(load_settings(llm_base_url="http://127.0.0.1:9/v1"))
    assert hosted.context_tokens == 8192 and hosted.part_chars > 3 * small.part_chars
    with pytest.raises(ValueError, match="leaves no room"):
        _ = SummaryOptions(context_tokens=1500).part_chars


# --- extractive summaries of real meetings ------------------------------------------------


@pytest.mark.parametrize("meeting", MEETINGS)
async def test_extractive_summary_of_an_ami_meeting(
    meeting: str, ami: dict[str, TranscriptDocument]
) -> None:
    doc = ami[meeting]
    summary = await summarize(doc, None)
    data = check_summary(summary, doc)
    assert set(data["method"].values()) == {"extractive"} and data["problems"] == []
    assert 3 <= len(data["key_points"]) <= 20
    assert data["title"].startswith("Meeting about ") and "remote" in data["title"]
    assert data["action_items"] and data["open_questions"]
    markdown = summary.to_markdown(doc)
    assert markdown.startswith(f"# {data['title']}\n") and "## Key points" in markdown
    assert MeetingSummary.from_dict(data) == summary


# --- the LLM path against a scripted server ---------------------------------------------------


def _client(server: ScriptedLlmServer) -> ChatClient:
    return ChatClient(LlmOptions(base_url=server.base_url, max_retries=0, timeout_s=10))


def _reply(ids: list[int], **override: Any) -> str:
    first, second = ids[0], ids[-1]
    body: dict[str, Any] = {
        "title": "Remote control kick-off",
        "key_points": [
            {"text": "The team will design a new remote control.", "citations": [first]}
        ],
        "decisions": [
            {
                "text": "The remote will be original, trendy and user-friendly.",
                "citations": [second],
            }
        ],
        "action_items": [
            {
                "text": "Write up the minutes.",
                "owner": "Speaker 1",
                "due": None,
                "citations": [second],
            }
        ],
        "open_questions": [],
    }
    body.update(override)
    return json.dumps(body)


def _chunks(doc: TranscriptDocument, options: SummaryOptions) -> list[list[int]]:
    return [[i for i, _ in c] for c in chunk_lines(transcript_lines(doc), options.part_chars)]


def _in_part(number: int) -> Any:
    return lambda message: f"part {number} of" in str(message.get("content"))


async def test_llm_summary_with_valid_citations(ami: dict[str, TranscriptDocument]) -> None:
    """Every part answered well; the reduce request is refused (500), so the parts'
    sections stay concatenated."""
    doc, options = ami["ES2003a"], SummaryOptions()
    chunks = _chunks(doc, options)
    assert len(chunks) >= 2  # the real transcript is long enough to be chunked
    script = [
        Turn.say(
            _reply(ids, decisions=[{"text": f"Decision {n}.", "citations": [ids[-1]]}]),
            when=_in_part(n),
        )
        for n, ids in enumerate(chunks, 1)
    ]
    async with ScriptedLlmServer(script) as server:
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    data = check_summary(summary, doc)
    assert set(data["method"].values()) == {"llm"}
    assert len(data["problems"]) == 1 and data["problems"][0].startswith("reduce: LLM request")
    assert data["title"] == "Remote control kick-off"
    assert data["key_points"] == [
        {"text": "The team will design a new remote control.", "citations": [chunks[0][0]]}
    ]  # duplicates merged
    assert [i["citations"] for i in data["decisions"]] == [[ids[-1]] for ids in chunks]
    requests = server.chat_requests
    assert len(requests) == len(chunks) + 1
    first = requests[0].body
    assert first["response_format"]["type"] == "json_schema"
    assert first["response_format"]["json_schema"]["schema"]["required"] == list(PARTS)
    assert first["stream"] is False
    segment = doc.segments[0]
    assert f"[0] Speaker 1 (00:00:02): {segment.text[:40]}" in first["messages"][-1]["content"]


def _in_reduce(message: dict[str, Any]) -> bool:
    return "Summaries of the meeting's parts" in str(message.get("content"))


async def test_map_reduce_over_parts_that_fit_the_context(
    ami: dict[str, TranscriptDocument],
) -> None:
    """A long meeting and a small context: the transcript goes in parts that fit, part 2's
    answer is not JSON so that part is summarised extractively, and the reduce request
    (which sees every part's items, part 2's extractive ones too) merges them; its
    key points are accepted, its decisions cite a segment no item cited and are
    rejected, so the parts' decisions stay concatenated."""
    doc = ami["ES2003b"]
    options = SummaryOptions(context_tokens=3000, max_tokens=512)
    chunks = _chunks(doc, options)
    assert len(chunks) >= 4
    script = [Turn.say("I cannot summarise this.", when=_in_part(2))]
    script += [
        Turn.say(
            _reply(ids, decisions=[{"text": f"Decision {n}.", "citations": [ids[-1]]}]),
            when=_in_part(n),
        )
        for n, ids in enumerate(chunks, 1)
        if n != 2
    ]
    uncited = next(i for i in chunks[0] if i not in (chunks[0][0], chunks[0][-1]))
    merged = {
        "title": "Remote control requirements",
        "key_points": [
            {"text": "The team reviewed the requirements.", "citations": [chunks[0][0]]},
            {"text": "They weighed voice recognition.", "citations": [chunks[-1][-1]]},
        ],
        "decisions": [{"text": "Invented.", "citations": [uncited]}],
        "action_items": [],
        "open_questions": [],
    }
    script.append(Turn.say(json.dumps(merged), when=_in_reduce))
    async with ScriptedLlmServer(script) as server:
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    data = check_summary(summary, doc, quoted=False)
    requests = server.chat_requests
    assert len(requests) == len(chunks) + 1 and server.remaining_turns == 0
    for request in requests:  # each request fits the context with its reply
        prompt = sum(len(m["content"]) for m in request.body["messages"])
        assert prompt / 3.0 + request.body["max_tokens"] <= options.context_tokens
    assert set(data["method"].values()) == {"extractive"}  # part 2 was made extractively
    assert data["title"] == "Remote control requirements"
    assert [k["text"] for k in data["key_points"]] == [
        "The team reviewed the requirements.",
        "They weighed voice recognition.",
    ]
    part2 = set(chunks[1])
    decisions = data["decisions"]
    assert [d["text"] for d in decisions if not set(d["citations"]) & part2] == [
        f"Decision {n}." for n in range(1, len(chunks) + 1) if n != 2
    ]
    assert all(set(d["citations"]) <= part2 for d in decisions if "Decision" not in d["text"])
    reduce_request = requests[-1].messages[-1]["content"]
    piece = replace(doc, segments=tuple(s for s in doc.segments if s.id in part2))
    extractive_of_part2 = extractive_parts(piece)["key_points"]
    assert extractive_of_part2 and all(
        f"- {list(k.citations)} {k.text}" in reduce_request
        for k in extractive_of_part2
        if isinstance(k, SummaryItem)
    )
    problems = " | ".join(data["problems"])
    assert f"part 2/{len(chunks)}: reply is not JSON" in problems
    assert f"reduce: decisions: cites segment(s) [{uncited}]" in problems


async def test_rejected_parts_fall_back_one_by_one(ami: dict[str, TranscriptDocument]) -> None:
    doc = ami["ES2003b"]
    options = SummaryOptions(chunk_chars=100_000)  # one request
    ids = _chunks(doc, options)[0]
    reply = _reply(
        ids,
        key_points=[{"text": "Made up.", "citations": [99_999]}],
        action_items=[{"text": "No owner field.", "citations": [ids[0]]}],
        open_questions=[{"text": "   ", "citations": [ids[0]]}],
    )
    async with ScriptedLlmServer([Turn.say(reply)]) as server:
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    data = check_summary(summary, doc)
    assert data["method"] == {
        "title": "llm",
        "key_points": "extractive",
        "decisions": "llm",
        "action_items": "extractive",
        "open_questions": "extractive",
    }
    problems = " | ".join(data["problems"])
    assert "key_points: cites segment(s) [99999]" in problems
    assert "action_items: schema: 'owner' is a required property" in problems
    assert "open_questions: an item has blank text" in problems
    assert data["decisions"][0]["text"] == "The remote will be original, trendy and user-friendly."


async def test_a_citation_outside_its_chunk_is_rejected(ami: dict[str, TranscriptDocument]) -> None:
    doc, options = ami["ES2003a"], SummaryOptions()
    chunks = _chunks(doc, options)
    script = [Turn.say(_reply(chunks[0]), when=_in_part(1))]
    stray = {"text": "From the wrong part.", "citations": [chunks[0][0]]}
    script += [
        Turn.say(_reply(ids, decisions=[stray]), when=_in_part(n))
        for n, ids in enumerate(chunks[1:], 2)
    ]
    async with ScriptedLlmServer(script) as server:
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    check_summary(summary, doc, quoted=False)
    assert summary.method["decisions"] == "extractive" and summary.method["key_points"] == "llm"
    later = {i for ids in chunks[1:] for i in ids}
    assert "From the wrong part." not in [d.text for d in summary.decisions]
    assert summary.decisions[0].text == "The remote will be original, trendy and user-friendly."
    assert all(set(d.citations) <= later for d in summary.decisions[1:])  # made extractively
    assert f"part 2/{len(chunks)}: decisions: cites segment(s) [{chunks[0][0]}]" in " ".join(
        summary.problems
    )


@pytest.mark.parametrize(
    "reply", ["Sure! Here is the summary: the team met.", '{"title": 3', "[1, 2, 3]"]
)
async def test_malformed_replies_fall_back_entirely(
    reply: str, ami: dict[str, TranscriptDocument]
) -> None:
    doc = ami["ES2003a"]
    async with ScriptedLlmServer(default=Turn.say(reply)) as server:
        client = _client(server)
        summary = await summarize(doc, client)
        await client.aclose()
    check_summary(summary, doc)
    assert set(summary.method.values()) == {"extractive"}
    assert summary.problems and len(server.chat_requests) == 1  # gave up after the first chunk


async def test_llm_errors_fall_back_entirely(ami: dict[str, TranscriptDocument]) -> None:
    doc = ami["ES2003a"]
    async with ScriptedLlmServer([]) as server:
        server.fail_next(500, count=5)
        client = _client(server)
        summary = await summarize(doc, client)
        await client.aclose()
    check_summary(summary, doc)
    assert set(summary.method.values()) == {"extractive"}
    assert "LLM request failed" in summary.problems[0]


async def test_fenced_json_and_a_server_without_response_format(
    ami: dict[str, TranscriptDocument],
) -> None:
    doc = ami["ES2003a"]
    options = SummaryOptions(chunk_chars=100_000)
    ids = _chunks(doc, options)[0]
    fenced = "```json\n" + _reply(ids) + "\n```"
    async with ScriptedLlmServer([Turn.say(fenced)], reject_response_format=True) as server:
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    assert set(summary.method.values()) == {"llm"}
    assert [r.status for r in server.chat_requests] == [400, 200]
    assert "JSON schema" in server.chat_requests[1].body["messages"][0]["content"]


def test_check_parts_keeps_only_what_the_transcript_states() -> None:
    """What a small model (the embedded SmolLM2 on sample.wav) answered: the schema's
    description as the title, an owner who is neither a speaker nor named in the cited
    segment, a due time nobody said. Those are left out, each with a problem line; an
    owner or due date said in the cited segment, or a speaker as owner, is kept."""
    spoken = {
        6: "Speaker 2 they all call me a Yankee down here",
        7: "Speaker 1 Maria will send the budget by next Friday",
    }
    reply = {
        "title": "A short title for the meeting.",
        "key_points": [{"text": "Where they are from.", "citations": [6]}],
        "decisions": [],
        "action_items": [
            {"text": "Call her a Yankee.", "owner": "Diane in New Jersey", "due": "00:14:28",
             "citations": [6]},
            {"text": "Send the budget.", "owner": "Maria", "due": "Friday", "citations": [7]},
            {"text": "Reply to Maria.", "owner": "Speaker 2", "due": None, "citations": [7]},
        ],
        "open_questions": [],
    }
    parts, problems = check_parts(reply, {6, 7}, spoken=spoken, speakers=["Speaker 1", "Speaker 2"])
    assert "title" not in parts and "title: the title repeats the schema's description" in problems
    first, second, third = parts["action_items"]  # type: ignore[misc]
    assert (first.owner, first.due) == (None, None)
    assert (second.owner, second.due) == ("Maria", "Friday")
    assert third.owner == "Speaker 2"
    assert sum("is not stated in segment(s) [6]" in p for p in problems) == 2
    assert len(problems) == 3
    unchecked, _ = check_parts(reply, {6, 7})  # without the transcript: as given
    assert unchecked["action_items"][0].owner == "Diane in New Jersey"  # type: ignore[index,union-attr]


async def test_the_shipped_small_model_is_not_asked_for_summaries(
    ami: dict[str, TranscriptDocument],
) -> None:
    """``summary_llm=auto``: with the shipped SmolLM2-135M the summary is extractive and
    no request is sent; a configured endpoint or ``always`` is asked."""
    assert not load_settings().summarize_with_llm  # the defaults: shipped model
    assert load_settings(summary_llm="always").summarize_with_llm
    assert load_settings(llm_base_url="http://127.0.0.1:9/v1").summarize_with_llm
    assert not load_settings(llm_base_url="http://127.0.0.1:9/v1", summary_llm="never").summarize_with_llm
    doc = ami["ES2003a"]
    async with ScriptedLlmServer([Turn.say(_reply([doc.segments[0].id]))]) as server:
        client = _client(server)
        quiet = await summarize(doc, client, SummaryOptions.from_settings(load_settings()))
        asked = await summarize(doc, client, SummaryOptions(chunk_chars=10**6))
        await client.aclose()
    assert set(quiet.method.values()) == {"extractive"} and not quiet.problems
    assert len(server.chat_requests) == 1 and asked.method["title"] == "llm"


def test_check_parts_never_raises() -> None:
    for junk in (None, 3, "x", [], {"title": None}, {"key_points": "no"}, {"key_points": [3]}):
        parts, problems = check_parts(junk, {0, 1})
        assert problems and "key_points" not in parts


async def test_llama_cpp_style_response_format_is_tried_next(
    ami: dict[str, TranscriptDocument],
) -> None:
    """llama.cpp's server answers 500 to ``json_schema`` (its request model only knows
    ``json_object`` with a ``schema``): the summary retries with that form and keeps it."""
    doc = ami["ES2003a"]
    options = SummaryOptions(chunk_chars=7000)
    chunks = _chunks(doc, options)
    assert len(chunks) == 2
    script = [Turn.say(_reply(ids), when=_in_part(n)) for n, ids in enumerate(chunks, 1)]
    async with ScriptedLlmServer(script) as server:
        server.fail_next(
            500,
            message="body.response_format.type: Input should be 'text' or "
            "'json_object' (got 'json_schema')",
        )
        client = _client(server)
        summary = await summarize(doc, client, options)
        await client.aclose()
    assert set(summary.method.values()) == {"llm"}
    formats = [r.body["response_format"]["type"] for r in server.chat_requests]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]  # + reduce
    assert server.chat_requests[1].body["response_format"]["schema"]["required"] == list(PARTS)


async def test_the_llm_time_budget_bounds_the_summary(ami: dict[str, TranscriptDocument]) -> None:
    doc = ami["ES2003a"]
    slow = Turn.say(_reply([0]), first_chunk_delay_s=3.0)
    async with ScriptedLlmServer(default=slow) as server:
        client = _client(server)
        start = asyncio.get_running_loop().time()
        summary = await summarize(doc, client, SummaryOptions(budget_s=0.5))
        took = asyncio.get_running_loop().time() - start
        await client.aclose()
    assert took < 2.5 and set(summary.method.values()) == {"extractive"}
    assert "time budget (0.5 s) ran out" in summary.problems[0]
