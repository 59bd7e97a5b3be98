"""Pure parts of the realtime session: protocol parsing, config updates, history cuts,
partial-transcript stabilisation, pacing and G.711. No sockets, no models."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.realtime.config import SessionConfig, apply_session_update
from pipelines.realtime.conversation import Conversation, Item, SpokenSpan, text_heard
from pipelines.realtime.partials import StablePrefix
from pipelines.realtime.playout import AudioPacer
from pipelines.realtime.protocol import ProtocolError, parse_client_event
from voice.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def parse(event: dict) -> object:
    return parse_client_event(json.dumps(event), max_bytes=1 << 20)


# --- protocol -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('{"no_type": 1}', "invalid_value"),
        ('{"type": "session.teleport"}', "unknown_event_type"),
        ('{"type": "conversation.item.truncate", "item_id": "x"}', "invalid_value"),
        ('{"type": "input_audio_buffer.append"}', "invalid_value"),
    ],
)
def test_bad_client_events_raise_protocol_errors(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_event(raw, max_bytes=1 << 20)
    assert info.value.code == code
    assert info.value.message


def test_protocol_error_names_missing_field_and_echoes_event_id() -> None:
    with pytest.raises(ProtocolError) as info:
        parse({"type": "conversation.item.truncate", "event_id": "ev1", "item_id": "x"})
    assert info.value.event_id == "ev1"
    assert info.value.param is not None and "audio_end_ms" in info.value.param


def test_oversized_event_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_event("x" * 2000, max_bytes=1000)
    assert info.value.code == "message_too_large"


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parser_never_raises_anything_but_protocol_error(raw: str | bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_client_event(raw, max_bytes=1 << 20)


# --- session config -------------------------------------------------------------
def test_session_update_applies_turn_detection_and_formats() -> None:
    event = parse(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Be terse.",
                "output_modalities": ["text"],
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "turn_detection": {
                            "type": "server_vad",
                            "silence_duration_ms": 300,
                            "threshold": 0.6,
                            "create_response": False,
                        },
                    },
                    "output": {"format": {"type": "audio/pcma"}, "speed": 1.2},
                },
                "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
                "tool_choice": "required",
                "temperature": 0.3,
            },
        }
    )
    config = apply_session_update(SessionConfig(instructions="x"), event.session)  # type: ignore[attr-defined]
    assert config.instructions == "Be terse."
    assert config.output_modalities == ("text",)
    assert config.input_format == "audio/pcmu" and config.input_rate == 8000
    assert config.output_format == "audio/pcma" and config.output_rate == 8000
    assert config.turn_detection is not None
    assert config.turn_detection.silence_duration_ms == 300
    assert config.turn_detection.threshold == 0.6
    assert config.turn_detection.create_response is False
    assert config.turn_detection.prefix_padding_ms == 300  # untouched default
    assert config.tools[0]["name"] == "lookup"
    assert config.tool_choice == "required"
    assert config.temperature == 0.3
    assert config.speed == 1.2
    session = config.to_protocol("sess_1", [])
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 300


def test_session_update_can_disable_turn_detection() -> None:
    event = parse(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        }
    )
    config = apply_session_update(SessionConfig(instructions="x"), event.session)  # type: ignore[attr-defined]
    assert config.turn_detection is None


def test_session_update_rejects_out_of_range_values_naming_the_field() -> None:
    event = parse(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 5}}
                },
            },
        }
    )
    with pytest.raises(ProtocolError) as info:
        apply_session_update(SessionConfig(instructions="x"), event.session)  # type: ignore[attr-defined]
    assert info.value.param == "session.audio.input.turn_detection.silence_duration_ms"


# --- conversation ---------------------------------------------------------------
def spoken_item() -> Item:
    return Item(
        id="a1",
        type="message",
        role="assistant",
        audio=True,
        text="The weather is sunny. It will rain tomorrow afternoon.",
        audio_ms=4000,
        spans=[
            SpokenSpan("The weather is sunny.", 0, 1500, 0),
            SpokenSpan("It will rain tomorrow afternoon.", 1500, 4000, 1),
        ],
    )


def test_text_heard_keeps_whole_and_partial_spans() -> None:
    item = spoken_item()
    assert text_heard(item.spans, 1500) == "The weather is sunny."
    assert text_heard(item.spans, 1000) == "The weather"
    assert text_heard(item.spans, 2750) == "The weather is sunny. It will"
    assert text_heard(item.spans, 0) == ""


def test_truncate_cuts_history_to_what_was_heard() -> None:
    conv = Conversation()
    conv.add(Item(id="u1", type="message", role="user", text="What's the weather?"))
    conv.add(spoken_item())
    conv.truncate("a1", 1500)
    messages = conv.chat_messages("sys")
    assert messages[-1] == {"role": "assistant", "content": "The weather is sunny."}
    with pytest.raises(ValueError):
        conv.truncate("a1", 9000)
    with pytest.raises(ValueError):
        conv.truncate("u1", 10)


def test_history_is_bounded_and_never_starts_with_an_orphan_tool_result() -> None:
    conv = Conversation(max_items=5, max_context_chars=60)
    conv.add(Item(id="u1", type="message", role="user", text="x" * 50))
    conv.add(Item(id="c1", type="function_call", call_id="call1", name="calc", arguments="{}"))
    conv.add(Item(id="o1", type="function_call_output", call_id="call1", output="4"))
    conv.add(Item(id="a1", type="message", role="assistant", text="y" * 40))
    conv.add(Item(id="u2", type="message", role="user", text="z" * 10))
    conv.add(Item(id="u3", type="message", role="user", text="w"))
    assert len(conv) == 5 and conv.get("u1") is None
    messages = conv.chat_messages("sys")
    assert messages[0]["role"] == "system"
    assert messages[1]["role"] != "tool"
    assert sum(len(str(m.get("content") or "")) for m in messages[1:]) <= 60


def test_parallel_tool_calls_merge_into_one_assistant_message() -> None:
    conv = Conversation()
    conv.add(Item(id="u", type="message", role="user", text="time and math"))
    conv.add(Item(id="c1", type="function_call", call_id="a", name="t", arguments="{}"))
    conv.add(Item(id="c2", type="function_call", call_id="b", name="c", arguments="{}"))
    conv.add(Item(id="o1", type="function_call_output", call_id="a", output="1"))
    conv.add(Item(id="o2", type="function_call_output", call_id="b", output="2"))
    messages = conv.chat_messages("sys")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[2]["tool_calls"]] == ["a", "b"]


def test_items_insert_after_previous_item_id() -> None:
    conv = Conversation()
    conv.add(Item(id="a", type="message", role="user", text="1"))
    conv.add(Item(id="b", type="message", role="user", text="2"))
    assert conv.add(Item(id="c", type="message", role="user", text="3"), "a") == "a"
    assert [i.id for i in conv] == ["a", "c", "b"]
    with pytest.raises(KeyError):
        conv.add(Item(id="d", type="message", role="user", text="4"), "nope")


# --- partial transcripts -----------------------------------------------------------
def test_stable_prefix_emits_only_agreed_words_once() -> None:
    prefix = StablePrefix()
    assert prefix.update("And so") == ""
    assert prefix.update("And so my fellow") == "And so"
    assert prefix.update("And so my fellow Americans") == " my fellow"
    assert prefix.update("And so, my fellow Americans, ask") == " Americans,"
    assert prefix.update("And so my fellow Americans ask not") == " ask"


@given(st.lists(st.text(alphabet="ab ", max_size=12), max_size=8))
def test_stable_prefix_output_is_append_only(hypotheses: list[str]) -> None:
    """Each piece of text released is the next words of the newest hypothesis, and only
    words on which it agrees with the one before (so nothing is emitted twice or early)."""
    prefix = StablePrefix()
    emitted: list[str] = []
    previous: list[str] = []
    for h in hypotheses:
        out = prefix.update(h)
        words = h.split()
        if out:
            assert out.startswith(" ") == bool(emitted)  # a separator only after earlier text
            fresh = out.split()
            start, end = len(emitted), len(emitted) + len(fresh)
            assert fresh == words[start:end]
            assert previous[start:end] == words[start:end]  # agreed by two hypotheses
            emitted += fresh
        previous = words
    assert len(emitted) <= max((len(h.split()) for h in hypotheses), default=0)


# --- pacing ------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)


async def test_pacer_keeps_lead_bounded_and_tracks_played_audio() -> None:
    clock = FakeClock()
    pacer = AudioPacer(clock, lead_ms=200)
    for _ in range(50):  # 50 × 40 ms = 2 s of audio produced instantly
        await pacer.wait_to_send(40)
        pacer.sent(40)
        # Whatever was sent is never more than lead + one chunk ahead of real time.
        assert pacer.sent_ms - pacer.played_ms() <= 200 + 40 + 1e-6
    assert pacer.sent_ms == 2000
    assert abs(sum(clock.slept) - (2.0 - 0.2)) < 0.05
    assert 1700 <= pacer.played_ms() <= 1850


async def test_pacer_does_not_count_an_underrun_as_heard() -> None:
    clock = FakeClock()
    pacer = AudioPacer(clock, lead_ms=200)
    await pacer.wait_to_send(40)
    pacer.sent(40)
    clock.t += 5.0  # TTS stalled for 5 s: the listener heard 40 ms and then silence
    assert pacer.played_ms() == 40
    await pacer.wait_to_send(40)
    pacer.sent(40)
    clock.t += 0.02
    assert pacer.played_ms() == pytest.approx(60, abs=1)


def test_pacer_cancel_while_waiting_records_nothing() -> None:
    async def scenario() -> float:
        pacer = AudioPacer(_RealishClock(), lead_ms=0)
        await pacer.wait_to_send(40)
        pacer.sent(40)
        task = asyncio.create_task(pacer.wait_to_send(1000))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pacer.sent_ms

    assert asyncio.run(scenario()) == 40


class _RealishClock:
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --- G.711 -------------------------------------------------------------------------
def test_g711_round_trip_is_close_and_matches_reference_points() -> None:
    x = (np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440) * 20000).astype(np.int16)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        data = encode(x)
        assert len(data) == len(x)
        y = decode(data)
        assert np.corrcoef(x, y)[0, 1] > 0.999
        assert np.max(np.abs(y.astype(int) - x)) < 700  # largest step at the top segment
    # ITU-T G.711 reference values: silence and full scale.
    assert ulaw_encode(np.array([0], dtype=np.int16)) == b"\xff"
    assert alaw_encode(np.array([0], dtype=np.int16)) == b"\xd5"
    assert ulaw_decode(b"\x80")[0] == 32124 and ulaw_decode(b"\x00")[0] == -32124
    assert alaw_decode(b"\xaa")[0] == 32256


def test_text_heard_estimates_the_length_of_a_sentence_still_being_produced() -> None:
    spans = [
        SpokenSpan("Sure.", 0, 500, 0),
        SpokenSpan("Here is a long answer about the weather.", 500, 733, 1, complete=False),
    ]
    # 233 ms into a sentence that takes about 2.8 s: not even one of its words was heard.
    assert text_heard(spans, 733) == "Sure."
    spans[1].complete = True
    assert text_heard(spans, 733) == "Sure. Here is a long answer about the weather."


@pytest.mark.parametrize(
    ("text", "interrupts"),
    [("Okay.", False), ("Uh-huh, yeah.", False), ("Mm-hmm", False), ("", False),
     ("Wait, stop!", True), ("Okay, but what about tomorrow?", True)],
)
def test_backchannels_do_not_count_as_interruptions(text: str, interrupts: bool) -> None:
    from pipelines.realtime.session import _is_interruption

    assert _is_interruption(text) is interrupts
