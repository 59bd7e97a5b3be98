"""``openai-agents`` (the OpenAI Agents SDK, pinned in ``tests/clients/requirements.txt``)
against the real server: a ``RealtimeAgent`` run by ``RealtimeRunner`` over
``ws://127.0.0.1:PORT/v1/realtime``, through a typed turn, a function tool the agent runs,
a spoken turn from a real recording, an interruption and a handoff, with no error
raised by the library; the server's own tools never reach the agent. The session runs once (``tests/clients/agents_scenario.py`` in
``.venv-clients/``); each test checks one part of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client_frameworks import run_scenario, write_pcm
from tests.conftest import reference_text
from tests.fakes.llm_script import Turn, after_tool_result, user_says
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import ServerThread
from tests.test_realtime_ws import LONG_REPLY, pcm24k, wer

CLIP = "azure-speech-sdk/whatstheweatherlike.wav"


@pytest.fixture(scope="module")
def run(
    server: ServerThread, llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    pcm = write_pcm(Path(tmp_path_factory.mktemp("agents")) / "spoken.pcm", pcm24k(CLIP, 2.0))
    url = f"{server.ws_url}/v1/realtime?model=voice-agent"
    with llm.scripted(
        Turn.say("I am your voice assistant.", when=user_says("who are you")),
        Turn.call("calculate", {"expression": "13*3"}, when=user_says("thirteen times three")),
        Turn.say("Thirteen times three is 39.", when=after_tool_result("39")),
        Turn.call("get_weather", {"city": "Paris"}, when=user_says("forecast for Paris")),
        Turn.say("Paris is sunny and 21 degrees.", when=after_tool_result("sunny and 21")),
        Turn.say("It is warm and bright today.", when=user_says("weather like")),
        Turn.say(LONG_REPLY, when=user_says("very long tale")),
        # twice: the barge-in (the same recording again) is attributed to a second
        # speaker, so the committed turn reads "[Speaker 2] ..." under a system prompt
        # that now marks speakers, and the speculative request started at the pause
        # (unlabelled) is discarded and asked again: each request takes a turn
        *[Turn.say("Still warm and bright.", when=user_says("weather like"))] * 2,
        Turn.call("transfer_to_billing_agent", {}, when=user_says("invoice")),
        Turn.say("Billing here. What is on your invoice?", when=after_tool_result("Billing")),
    ):
        yield run_scenario("agents_scenario.py", url, "test-key", str(pcm))


def test_the_session_ran_every_step_without_errors(run: dict[str, Any]) -> None:
    assert run["failure"] is None, run["failure"]
    assert run["timeouts"] == [], run["timeouts"]
    # Every server event the library could not validate is an error event it raises.
    assert run["errors"] == [], [e[-400:] for e in run["errors"]]
    assert run["server_errors"] == []
    assert "agent_start" in run["session_events"] and "history_updated" in run["session_events"]


def test_typed_and_spoken_turns_are_answered_aloud(run: dict[str, Any]) -> None:
    replies = run["spoken_replies"]
    assert "I am your voice assistant." in replies
    assert "It is warm and bright today." in replies
    assert run["audio_chunks"] > 0
    heard = run["user_transcripts"]
    assert len(heard) == 2 and all(wer(reference_text(CLIP), t) <= 0.25 for t in heard), heard


def test_the_agent_runs_its_function_tool_and_speaks_the_result(
    run: dict[str, Any], llm: ScriptedLlmServer
) -> None:
    assert run["tools"] == [["get_weather", "It is sunny and 21 degrees in Paris."]]
    assert "Paris is sunny and 21 degrees." in run["spoken_replies"]
    answered = [
        r for r in llm.chat_requests if any("21 degrees in Paris" in str(m) for m in r.messages)
    ]
    assert answered, "the tool's output never reached the LLM"


def test_server_side_tools_stay_on_the_server(run: dict[str, Any]) -> None:
    assert "Thirteen times three is 39." in run["spoken_replies"]
    # The agent declared get_weather and the handoff; it sees no other function call
    # (it would answer "Tool calculate not found" for the server's own call).
    assert set(run["function_calls"]) <= {"get_weather", "transfer_to_billing_agent"}, run[
        "function_calls"
    ]


def test_speaking_over_a_long_reply_interrupts_it(run: dict[str, Any]) -> None:
    assert run["audio_interrupted"] >= 1
    assert "cancelled" in run["response_statuses"]
    assert LONG_REPLY not in run["spoken_replies"]  # cut at what was heard
    assert "Still warm and bright." in run["spoken_replies"]


def test_a_handoff_moves_the_session_to_the_billing_agent(
    run: dict[str, Any], llm: ScriptedLlmServer
) -> None:
    assert run["handoffs"] == [["Assistant", "Billing agent"]]
    assert "Billing here. What is on your invoice?" in run["spoken_replies"]
    after = next(r for r in llm.chat_requests if "Billing" in str(r.messages[-1]))
    assert after.messages[0]["content"].startswith("You handle billing questions.")
