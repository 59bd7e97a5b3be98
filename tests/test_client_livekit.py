"""``livekit-agents`` with ``livekit-plugins-openai`` (pinned in
``tests/clients/requirements.txt``) against the real server: the plugin's
``realtime.RealtimeModel(base_url="http://127.0.0.1:PORT/v1")`` and its
``RealtimeSession``, driven directly as ``AgentSession`` drives it (no LiveKit room is
needed for the model's side): ``generate_reply`` matched by ``metadata``, a tool call
answered through the chat context, a server-side tool the session never sees, and
push-to-talk (commit, then a reply at once).
The scenario runs once (``tests/clients/livekit_scenario.py`` in ``.venv-clients/``)."""

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
from tests.test_realtime_ws import pcm24k, wer

CLIP = "speechbrain/spk1_snt1.wav"


@pytest.fixture(scope="module")
def run(
    server: ServerThread, llm: ScriptedLlmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    pcm = write_pcm(Path(tmp_path_factory.mktemp("livekit")) / "ptt.pcm", pcm24k(CLIP, 0.3))
    with llm.scripted(
        Turn.say("Hello from the server.", when=user_says("livekit greeting")),
        Turn.call("get_weather", {"city": "Oslo"}, when=user_says("weather in Oslo")),
        Turn.say("Oslo is snowy today.", when=after_tool_result("snowy and minus 3")),
        Turn.call("calculate", {"expression": "9*6"}, when=user_says("nine times six")),
        Turn.say("Nine times six is 54.", when=after_tool_result("54")),
        Turn.say("Dogs are tougher than they look.", when=user_says("small dog")),
    ):
        yield run_scenario("livekit_scenario.py", f"{server.http_url}/v1", "test-key", str(pcm))


def test_no_errors_and_every_step_completed(run: dict[str, Any]) -> None:
    assert run["failures"] == {}, "\n".join(f"{k}: {v}" for k, v in run["failures"].items())
    assert run["errors"] == [] and run["server_errors"] == [], (run["errors"], run["server_errors"])


def test_generate_reply_is_matched_by_its_metadata(run: dict[str, Any]) -> None:
    greeting = run["greeting"]
    assert greeting is not None, run["failures"].get("greeting")
    assert greeting["user_initiated"] is True
    assert greeting["text"] == "Hello from the server." and greeting["audio_frames"] > 0


def test_a_declared_tool_is_called_and_its_output_spoken(
    run: dict[str, Any], llm: ScriptedLlmServer
) -> None:
    tool = run["tool"]
    assert tool is not None, run["failures"].get("tool")
    assert tool["calls"] == [["get_weather", {"city": "Oslo"}]]
    assert tool["answer"]["text"] == "Oslo is snowy today."
    assert any("minus 3 degrees in Oslo" in str(r.messages) for r in llm.chat_requests)


def test_server_side_tools_stay_on_the_server(run: dict[str, Any]) -> None:
    answer = run["server_tool"]
    assert answer is not None, run["failures"].get("server_tool")
    # AgentSession would answer a call to a tool it never declared with an error output.
    assert answer["calls"] == [] and answer["text"] == "Nine times six is 54."


def test_push_to_talk_answers_the_committed_words(run: dict[str, Any]) -> None:
    ptt = run["push_to_talk"]
    assert ptt is not None, run["failures"].get("push_to_talk")
    [heard] = run["push_to_talk_transcripts"]
    assert wer(reference_text(CLIP), heard) <= 0.25, heard
    assert ptt["text"] == "Dogs are tougher than they look."
    assert "input_audio_buffer.speech_started" not in run["push_to_talk_events"]
