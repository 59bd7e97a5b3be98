"""What a streamed chat completion yields, and the one error type it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LlmErrorKind = Literal["timeout", "unavailable", "bad_request", "bad_response", "cut_off"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A fragment of the assistant's reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallArgumentsDelta:
    """A fragment of a tool call's JSON arguments, as it streams in."""

    call_id: str
    name: str
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """A complete tool call; ``arguments`` is the assembled JSON text (unvalidated)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of a reply. Token counts are 0 when the server reported no usage."""

    finish_reason: str
    input_tokens: int
    output_tokens: int


LlmEvent = TextDelta | ToolCallArgumentsDelta | ToolCallRequest | Completion


class LlmError(Exception):
    """The LLM call failed.

    ``kind`` is ``timeout`` (no answer in time), ``unavailable`` (connection
    failure, 429 or 5xx after retries), ``cut_off`` (the stream ended without a
    finish reason), ``bad_request`` (the server rejected the request: 4xx) or
    ``bad_response`` (the server's answer could not be understood).
    ``partial``: some of the reply had already been streamed when it failed.
    """

    def __init__(self, kind: LlmErrorKind, message: str, *, partial: bool = False) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: LlmErrorKind = kind
        self.message = message
        self.partial = partial
