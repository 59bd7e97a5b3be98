"""The LLM stage: tools the model may call, a streaming OpenAI-compatible chat
client, and the embedded llama.cpp server used when no endpoint is configured."""

from voice.llm.assembler import StreamAssembler
from voice.llm.builtin_tools import (
    BUILTIN_TOOLS,
    calculate,
    current_datetime,
    format_datetime,
    registry_from_names,
)
from voice.llm.client import ChatClient, LlmOptions
from voice.llm.embedded import EmbeddedLlamaServer, EmbeddedServerError, resolve_gguf
from voice.llm.events import (
    Completion,
    LlmError,
    LlmErrorKind,
    LlmEvent,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallRequest,
)
from voice.llm.schema import ArgumentError
from voice.llm.tools import Tool, ToolRegistry, ToolResult

__all__ = [
    "BUILTIN_TOOLS",
    "ArgumentError",
    "ChatClient",
    "Completion",
    "EmbeddedLlamaServer",
    "EmbeddedServerError",
    "LlmError",
    "LlmErrorKind",
    "LlmEvent",
    "LlmOptions",
    "StreamAssembler",
    "TextDelta",
    "Tool",
    "ToolCallArgumentsDelta",
    "ToolCallRequest",
    "ToolRegistry",
    "ToolResult",
    "calculate",
    "current_datetime",
    "format_datetime",
    "registry_from_names",
    "resolve_gguf",
]
