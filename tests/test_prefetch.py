"""A speculative LLM request survives when the committed turn says the same words as
the speculative transcript, whatever their case and punctuation; anything else in
the conversation must match exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pipelines.realtime.conversation import Conversation, Item
from pipelines.realtime.prefetch import Prefetch, same_words
from voice.llm import LlmEvent
from voice.llm.events import TextDelta


async def _stream() -> AsyncIterator[LlmEvent]:
    yield TextDelta("Hello")


def test_same_words_ignores_case_and_punctuation_only() -> None:
    assert same_words("What's the weather in Paris?", "what's the weather in paris")
    assert same_words("Drop the two, when you add the figures.", "drop the two when you add the figures")
    assert not same_words("What's the weather in Paris?", "What's the weather in Paris today?")
    assert not same_words("in 1813", "in 1812")


async def test_prefetch_matches_the_committed_conversation() -> None:
    system = {"role": "system", "content": "Be brief."}
    spoken = [system, {"role": "user", "content": "what is the weather in paris"}]
    prefetch = Prefetch(spoken, _stream())
    try:
        assert prefetch.matches([system, {"role": "user", "content": "What is the weather in Paris?"}])
        assert not prefetch.matches([system, {"role": "user", "content": "What is the time in Paris?"}])
        other = {"role": "system", "content": "Be long."}
        assert not prefetch.matches([other, {"role": "user", "content": "what is the weather in paris"}])
        assert not prefetch.matches([system, {"role": "assistant", "content": "what is the weather in paris"}])
        assert not prefetch.matches([system])
        assert [e async for e in prefetch.events()] == [TextDelta("Hello")]
    finally:
        await prefetch.aclose()


def test_a_pending_turn_reads_as_it_will_once_committed() -> None:
    # A speculative request is built for the turn before it is in the history; with
    # its expected speaker it must read exactly as the committed conversation will,
    # labels and the note that several people are talking included.
    history = Conversation()
    history.add(Item(id="u1", type="message", role="user", text="Hello there.", speaker="Speaker 1"))
    history.add(Item(id="a1", type="message", role="assistant", text="Hi! How can I help?"))
    pending = Item(id="u2", type="message", role="user", text="What time is it?", speaker="Speaker 2")
    assumed = history.chat_messages("Be brief.", pending)
    assert history.chat_messages("Be brief.") != assumed[:-1]  # a second voice: labels appear
    # Committed, transcript known, label not yet: the pending turn stands in for it once.
    committed = Item(id="u2", type="message", role="user", text="What time is it?")
    history.add(committed)
    assert history.chat_messages("Be brief.", pending) == assumed
    committed.speaker = "Speaker 2"
    assert history.chat_messages("Be brief.") == assumed
    assert assumed[-1] == {"role": "user", "content": "[Speaker 2] What time is it?"}
