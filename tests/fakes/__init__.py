"""Faithful fakes for services that cannot run here (a hosted LLM)."""

from tests.fakes.llm_script import ScriptedToolCall, Turn, after_tool_result, user_says
from tests.fakes.scripted_llm import RecordedRequest, ScriptedLlmServer

__all__ = [
    "RecordedRequest",
    "ScriptedLlmServer",
    "ScriptedToolCall",
    "Turn",
    "after_tool_result",
    "user_says",
]
