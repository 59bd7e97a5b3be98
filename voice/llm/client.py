"""Chat completions over any OpenAI-compatible endpoint, streamed as events.

Retries live here, not in the SDK (its ``max_retries`` is set to 0): transient
failures (connection errors, HTTP 408/409/429/5xx, a read timeout) are retried
with exponential backoff, but only until the first text or tool-call fragment
has been received, and only within the first-token deadline. Once output has
been yielded a failure surfaces as :class:`LlmError`, because replaying a
reply the user has already heard would repeat it. A stream that ends without a
finish reason (the server cut it off) is retried the same way before any
output, and raises :class:`LlmError` ``cut_off`` after.

With ``max_concurrent`` set (the embedded server generates for a few requests at
once) the rest wait in a :class:`~voice.llm.fair_gate.FairGate`: realtime before
background work, round-robin between sessions, so none cuts off or starves another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import openai
from openai import AsyncStream
from openai.types.chat import ChatCompletionChunk

from voice.cpu_budget import process_slots
from voice.llm.assembler import StreamAssembler
from voice.llm.events import LlmError, LlmEvent
from voice.llm.failures import backoff_s, classify, rejects
from voice.llm.fair_gate import BACKGROUND, REALTIME, FairGate
from voice.llm.forced_call import ForcedCall, adapt, read_call

if TYPE_CHECKING:
    from voice.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LlmOptions:
    """How to reach the LLM. Times are in seconds.

    ``timeout_s`` bounds connecting and each read (so also a stalled stream);
    ``first_token_timeout_s`` (default: ``timeout_s``) bounds the wait for the
    first text or tool-call fragment across all retries. ``retry_backoff_s`` is
    the first backoff, doubled on each retry (at most 4 s, or a longer
    ``Retry-After`` up to the deadline). ``max_concurrent``: requests sent at once
    (0 = no limit); the others wait in a fair queue, at most ``queue_timeout_s``
    (the first-token deadline starts once a request is sent).
    """

    base_url: str
    api_key: str = "not-needed"
    model: str = "default"
    timeout_s: float = 30.0
    max_retries: int = 2
    temperature: float = 0.7
    max_tokens: int = 256
    first_token_timeout_s: float | None = None
    retry_backoff_s: float = 0.25
    max_concurrent: int = 0
    queue_timeout_s: float = 120.0
    named_tool_choice_only: bool = False
    """The endpoint's own forcing of tool calls cannot be trusted (llama-cpp-python's
    server): a ``required`` or named ``tool_choice`` is sent as a JSON-schema
    response format instead (:mod:`voice.llm.forced_call`)."""
    local_threads: int = 0
    """Threads the endpoint runs on this machine's cores (the embedded server): they count
    in the process CPU budget (:data:`voice.cpu_budget.process_slots`) while a request
    streams, and leave the cores to the other models while it is idle. 0 = remote."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        base_url: str | None = None,
        model: str | None = None,
        max_concurrent: int | None = None,
    ) -> LlmOptions:
        """Options from settings; ``base_url`` (e.g. the embedded server's) wins over
        ``llm_base_url``; ``max_concurrent`` wins over ``llm_max_concurrent``. Raises
        ``ValueError`` when neither URL is set."""
        url = base_url or settings.llm_base_url
        if not url:
            raise ValueError("no LLM endpoint: set VOICE_LLM_BASE_URL or start the embedded server")
        return cls(
            base_url=url,
            api_key=settings.llm_api_key,
            model=model or settings.llm_model,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            max_concurrent=settings.llm_max_concurrent if max_concurrent is None
            else max_concurrent,
        )


class ChatClient:
    """Streaming chat completions with retries and typed errors. Use one per endpoint."""

    def __init__(self, options: LlmOptions) -> None:
        self.options = options
        self._client = openai.AsyncOpenAI(
            base_url=options.base_url,
            api_key=options.api_key,
            timeout=options.timeout_s,
            max_retries=0,
        )
        self._usage_in_stream = True
        self.gate = FairGate(options.max_concurrent)
        """Requests waiting for (or holding) one of the endpoint's slots."""
        self._answering = 0
        self._local_load: contextlib.ExitStack | None = None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] = "auto",
        temperature: float | None = None,
        max_tokens: int | None = None,
        queue_key: Hashable = None,
        priority: int = REALTIME,
    ) -> AsyncGenerator[LlmEvent, None]:
        """Stream one reply: text and argument deltas as they arrive, then the complete
        tool calls, then :class:`Completion`. Raises :class:`LlmError`.

        ``queue_key`` (a session id) and ``priority`` place the request in the fair
        queue when the endpoint has limited slots. Safe to cancel, and to stop
        iterating early: closing the generator (use ``contextlib.aclosing``) or
        cancelling its consumer closes the HTTP stream and frees the slot.
        """
        loop = asyncio.get_running_loop()
        limit = self.options.first_token_timeout_s or self.options.timeout_s
        try:
            async with asyncio.timeout(self.options.queue_timeout_s):
                await self.gate.acquire(queue_key, priority)
        except TimeoutError:
            raise LlmError(
                "timeout", f"waited {self.options.queue_timeout_s:g} s for a turn at the LLM "
                f"({self.gate.waiting} requests queued): it is over capacity") from None
        deadline = loop.time() + limit
        forced: ForcedCall | None = None
        try:
            if self.options.named_tool_choice_only:
                try:
                    tool_choice, forced = adapt(tools, tool_choice)
                except ValueError as exc:
                    raise LlmError("bad_request", str(exc)) from None
            if forced is None:
                events = self._stream(messages, tools, tool_choice, temperature, max_tokens,
                                      deadline, limit)
            else:
                names = {t["function"]["name"] for t in tools or ()}
                tokens = forced.max_tokens(max_tokens or self.options.max_tokens)
                events = read_call(self._stream(forced.messages(messages), None, "auto",
                                                temperature, tokens, deadline, limit,
                                                forced.response_format()), names)
            with self._local_threads_busy():
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield event
        finally:
            self.gate.release()

    @contextlib.contextmanager
    def _local_threads_busy(self) -> Iterator[None]:
        """Count the local server's ``local_threads`` as busy in the process's CPU budget
        while it answers: once, however many requests it serves at once (its slots
        decode together, on the same threads). Event loop only."""
        self._answering += 1
        if self._answering == 1:
            self._local_load = contextlib.ExitStack()
            self._local_load.enter_context(process_slots.reserve(self.options.local_threads))
        try:
            yield
        finally:
            self._answering -= 1
            if self._answering == 0 and self._local_load is not None:
                self._local_load.close()
                self._local_load = None

    async def _stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any],
        temperature: float | None,
        max_tokens: int | None,
        deadline: float,
        limit: float,
        response_format: dict[str, Any] | None = None,
    ) -> AsyncGenerator[LlmEvent, None]:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            params = self._params(messages, tools, tool_choice, temperature, max_tokens)
            if response_format is not None:
                params["response_format"] = response_format
            try:
                stream, assembler, first = await self._start(params, deadline, limit)
            except (openai.OpenAIError, ValueError) as exc:
                if self._usage_in_stream and rejects(exc, "stream_options", "include_usage"):
                    self._usage_in_stream = False
                    continue
                error, transient = self._classify(exc)
                delay = self._backoff(attempt, exc)
                if not transient or attempt >= self.options.max_retries:
                    raise error from exc
                if loop.time() + delay >= deadline:
                    raise error from exc
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if assembler.has_output or assembler.finish_reason is not None:
                break
            # The stream ended before any output and without a finish reason: cut off.
            await stream.close()
            if attempt >= self.options.max_retries or loop.time() >= deadline:
                raise LlmError("cut_off", "the stream ended without a finish reason "
                               f"before any output ({attempt + 1} attempts)")
            attempt += 1
            log.warning("LLM stream cut off before any output; retrying (attempt %d)", attempt)
        try:
            for event in first:
                yield event
            async for chunk in stream:
                for event in assembler.feed(chunk):
                    yield event
        except (openai.OpenAIError, ValueError) as exc:
            raise self._classify(exc)[0] from exc
        finally:
            await stream.close()
        for event in assembler.finish():
            yield event

    async def _start(
        self, params: dict[str, Any], deadline: float, limit: float
    ) -> tuple[AsyncStream[ChatCompletionChunk], StreamAssembler, list[LlmEvent]]:
        """Open the stream and read until the first output (or its end) by ``deadline``."""
        assembler = StreamAssembler()
        events: list[LlmEvent] = []
        stream: AsyncStream[ChatCompletionChunk] | None = None
        try:
            async with asyncio.timeout_at(deadline):
                stream = cast(
                    AsyncStream[ChatCompletionChunk],
                    await self._client.chat.completions.create(**params),
                )
                while not assembler.has_output:
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                    events.extend(assembler.feed(chunk))
        except TimeoutError:
            if stream is not None:
                await stream.close()
            raise LlmError("timeout", f"no reply from the LLM within {limit:g} s") from None
        except BaseException:
            if stream is not None:
                await stream.close()
            raise
        assert stream is not None
        return stream, assembler, events

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        priority: int = BACKGROUND,
    ) -> str:
        """One non-streamed reply's text. ``response_format`` (e.g. a JSON schema) is
        dropped and the request repeated if the server rejects it with 400/422.

        ``timeout_s`` (default: the options') bounds each attempt. It waits its turn
        in the fair queue at ``priority`` (background: after every realtime request).
        Raises :class:`LlmError`. Safe to cancel.
        """
        async with self.gate.slot("complete", priority):
            return await self._complete(messages, response_format, temperature,
                                        max_tokens, timeout_s)

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any] | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
    ) -> str:
        params = self._params(messages, None, "auto", temperature, max_tokens, stream=False)
        if response_format is not None:
            params["response_format"] = response_format
        attempt = 0
        while True:
            try:
                response = await self._client.chat.completions.create(
                    **params, timeout=timeout_s or self.options.timeout_s
                )
                break
            except (openai.OpenAIError, ValueError) as exc:
                if "response_format" in params and rejects(exc):
                    del params["response_format"]
                    continue
                error, transient = self._classify(exc)
                if not transient or attempt >= self.options.max_retries:
                    raise error from exc
                await asyncio.sleep(self._backoff(attempt, exc))
                attempt += 1
        choices = getattr(response, "choices", None)
        if not choices:
            raise LlmError("bad_response", "the LLM server returned no choices")
        return choices[0].message.content or ""

    def _params(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any],
        temperature: float | None,
        max_tokens: int | None,
        *,
        stream: bool = True,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.options.model,
            "messages": messages,
            "temperature": self.options.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.options.max_tokens,
            "stream": stream,
        }
        if tools:
            params["tools"] = tools
            params["tool_choice"] = tool_choice
        if stream and self._usage_in_stream:
            params["stream_options"] = {"include_usage": True}
        return params

    def _classify(self, exc: BaseException) -> tuple[LlmError, bool]:
        return classify(exc, base_url=self.options.base_url, timeout_s=self.options.timeout_s)

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        return backoff_s(attempt, exc, self.options.retry_backoff_s)
