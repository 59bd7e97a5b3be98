"""How the chat client reads SDK exceptions: which :class:`LlmError` they become,
whether a retry may help, and how long to wait before it. Pure functions."""

from __future__ import annotations

import contextlib

import openai

from voice.llm.events import LlmError

MAX_BACKOFF_S = 4.0
TRANSIENT_STATUS = frozenset({408, 409, 429})


def classify(exc: BaseException, *, base_url: str, timeout_s: float) -> tuple[LlmError, bool]:
    """The :class:`LlmError` for ``exc``, and whether retrying may help."""
    if isinstance(exc, LlmError):
        return exc, False
    if isinstance(exc, openai.APITimeoutError):
        return LlmError("timeout", f"the LLM server did not answer within {timeout_s:g} s"), True
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return LlmError("unavailable", f"connection to {base_url} failed: "
                        f"{type(cause).__name__}: {cause}"), True
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status} from the LLM server: {exc.message}"
        if status in TRANSIENT_STATUS or status >= 500:
            return LlmError("unavailable", message), True
        return LlmError("bad_request", message), False
    return LlmError("bad_response", f"unexpected answer from the LLM server: {exc}"), False


def backoff_s(attempt: int, exc: BaseException, first_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``first_s`` doubled per
    attempt up to 4 s, or the server's longer ``Retry-After``."""
    delay = min(first_s * 2**attempt, MAX_BACKOFF_S)
    if isinstance(exc, openai.APIStatusError):
        with contextlib.suppress(ValueError):
            delay = max(delay, float(exc.response.headers.get("retry-after", "")))
    return delay


def rejects(exc: BaseException, *words: str) -> bool:
    """Whether ``exc`` is a 400/422 rejection whose message mentions any of ``words``
    (any rejection when no words are given)."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    text = str(exc.message).lower()
    return not words or any(word in text for word in words)
