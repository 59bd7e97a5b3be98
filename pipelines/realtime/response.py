"""One assistant response: agent loop → sentences → TTS → paced audio deltas.

A :class:`ResponseRun` owns every task it starts. The session may
:meth:`~ResponseRun.hold` its audio (first voiced frame of a possible
barge-in), :meth:`~ResponseRun.release` it (the sound was not speech) or
:meth:`~ResponseRun.cancel` it (the user really interrupted); in all cases the
run ends by emitting the protocol's closing events and ``response.done``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from pipelines.realtime.config import SessionConfig, chat_tool_choice
from pipelines.realtime.context import SessionContext
from pipelines.realtime.conversation import Conversation, Item, SpokenSpan
from pipelines.realtime.latency import TurnLatency
from pipelines.realtime.output_items import OutputItems
from pipelines.realtime.playout import AudioPacer
from pipelines.realtime.prefetch import Prefetch, first_phrase
from pipelines.realtime.voices import synthesizer_for
from voice.audio.g711 import alaw_encode, ulaw_encode
from voice.llm import Completion, LlmError, TextDelta, ToolCallArgumentsDelta, ToolCallRequest
from voice.tts.base import TtsError
from voice.tts.chunker import SentenceChunker
from voice.tts.presynth import Presynthesized
from voice.tts.stream import SpeechChunk, speak

log = logging.getLogger(__name__)

Status = Literal["completed", "cancelled", "incomplete", "failed"]
FIRST_PHRASE_WORDS = 3
"""The first spoken piece of a reply may end before a joining word once it has this
many words (:class:`voice.tts.chunker.SentenceChunker`): its audio comes sooner."""
CUT_OFF_RETRIES = 2
"""LLM steps whose stream was cut off (no finish reason) before anything of them was
sent to the client are asked again, at most this many times per step."""


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class _Step:
    """Output of one LLM call inside the response."""

    message: Item | None = None
    calls: list[Item] = field(default_factory=list)
    """Calls of the client's tools (function_call items the client sees)."""
    server_calls: list[ToolCallRequest] = field(default_factory=list)
    """Calls of the server's own tools: run here, never shown as items."""


class ResponseRun:
    """Runs one response; create with the session's context and await :meth:`run`."""

    def __init__(
        self,
        ctx: SessionContext,
        config: SessionConfig,
        *,
        latency: TurnLatency | None = None,
        instructions: str | None = None,
        history: Conversation | None = None,
        in_conversation: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """``history``: what the LLM reads (default: the session's conversation; a
        ``response.create`` with ``input`` or ``conversation: "none"`` gives its own);
        ``in_conversation``: False for an out-of-band response, whose items stay out of
        the session's conversation (no ``conversation.item.*`` events)."""
        self.ctx = ctx
        self.config = config
        self.history = history if history is not None else ctx.conversation
        self.in_conversation = in_conversation
        self.metadata = metadata
        self.id = ctx.emitter.ids.new("resp")
        self.latency = latency
        self.instructions = instructions or config.instructions
        self.status: Status = "completed"
        self.reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.items = OutputItems(ctx, self.id, self.history, in_conversation)
        self.usage = _Usage()
        self.pacer = AudioPacer(ctx.clock, ctx.options.output_lead_ms)
        self._audible = asyncio.Event()
        self._audible.set()
        self._cancel = asyncio.Event()
        self._message: Item | None = None
        self.waiting_for_client_tool = False
        self._output_base = 0
        self._prefetch: Prefetch | None = None
        self.prefetched = False
        """Whether the first LLM request was started speculatively and used."""
        self._ahead: Presynthesized | None = None
        self._ahead_task: asyncio.Task[None] | None = None
        """The prefetched reply's first phrase, synthesized while the turn is confirmed."""
        self.output_state: Literal["started", "cleared", "stopped"] | None = None
        """Media transports: where this response's audio is in the output buffer."""
        self._step_choice: str | None = None
        """Tool choice of the LLM steps after the first (a forced choice applies once)."""

    # --- control from the session -----------------------------------------
    @property
    def speaking(self) -> bool:
        """True while assistant audio is being produced for this response."""
        return (
            self._message is not None
            and self._message.audio
            and self._message.status == "in_progress"
        )

    def hold(self) -> None:
        """Stop sending audio at once (possible barge-in); generation pauses behind it."""
        self._audible.clear()
        if self.ctx.audio_output is not None:
            self.ctx.audio_output.pause()

    def release(self) -> None:
        """Resume sending audio after a hold that turned out not to be an interruption."""
        self._audible.set()
        if self.ctx.audio_output is not None:
            self.ctx.audio_output.resume()

    @property
    def held(self) -> bool:
        return not self._audible.is_set()

    def cancel(self, reason: str) -> None:
        """Ask the run to stop; it emits ``response.done`` with status cancelled."""
        if not self._cancel.is_set():
            self.reason = reason
            self._cancel.set()

    # --- the run ---------------------------------------------------------------
    async def run(self) -> None:
        """Emit the whole response. Returns once ``response.done`` was sent.

        Cancel through :meth:`cancel`, not by cancelling this coroutine's task (that
        skips the closing events).
        """
        emitter = self.ctx.emitter
        await emitter.emit("response.created", response=self._protocol("in_progress"))
        work = asyncio.create_task(self._work(), name=f"response-{self.id}")
        stop = asyncio.create_task(self._cancel.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await work
                except LlmError as exc:
                    log.warning("response %s failed: llm_error %s: %s", self.id, exc.kind,
                                exc.message)
                    self.status, self.error = (
                        "failed",
                        {"type": "llm_error", "code": exc.kind, "message": exc.message},
                    )
                except Exception as exc:  # a bug must not kill the session
                    log.exception("response %s failed", self.id)
                    self.status, self.error = (
                        "failed",
                        {"type": "server_error", "message": str(exc)},
                    )
        await self._drop_ahead()
        if self._cancel.is_set() and self.status == "completed":
            self.status = "cancelled"
        await self._close_open_items()
        await emitter.emit("response.done", response=self._protocol(self.status))

    def _assumed(self, turn: Item) -> list[dict[str, Any]]:
        """The LLM messages once the user ``turn`` is in the history as given."""
        return self.history.chat_messages(self.instructions, turn)

    def prefetched_for(self, turn: Item) -> bool:
        """Whether the request :meth:`prefetch` started reads as it would for ``turn``."""
        return self._prefetch is not None and self._prefetch.matches(self._assumed(turn))

    def prefetch(self, turn: Item) -> Prefetch:
        """Start this response's first LLM request early, for a user ``turn`` whose
        transcript is not final or not yet in the history (its ``speaker``: the label it
        is expected to get).

        :meth:`run` uses it if the conversation then reads exactly as assumed here.
        """
        messages = self._assumed(turn)
        self._prefetch = Prefetch(messages, self._llm_stream(messages))
        if "audio" in self.config.output_modalities:
            self._ahead_task = asyncio.create_task(self._say_ahead(self._prefetch))
        return self._prefetch

    async def _say_ahead(self, prefetch: Prefetch) -> None:
        """Synthesize the prefetched reply's first phrase (a worker thread)."""
        text = await first_phrase(prefetch, SentenceChunker(first_phrase_words=FIRST_PHRASE_WORDS))
        if text is None:
            return
        try:
            synth = await synthesizer_for(self.ctx.synthesizer, self.config.voice, self.config.speed)
        except (ValueError, TtsError):
            return  # the reply reports it
        self._ahead = Presynthesized(synth, text)
        await asyncio.to_thread(self._ahead.run)

    async def _drop_ahead(self) -> None:
        task, self._ahead_task = self._ahead_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None

    async def discard_prefetch(self) -> None:
        await self._drop_ahead()
        if self._prefetch is not None:
            prefetch, self._prefetch = self._prefetch, None
            await prefetch.aclose()

    def _llm_stream(self, messages: list[dict[str, Any]]) -> AsyncIterator[Any]:
        tools = self._tool_schemas()
        return self.ctx.llm.stream(
            messages,
            tools=tools or None,
            tool_choice=chat_tool_choice(self._step_choice or self.config.tool_choice)
            if tools
            else "auto",
            temperature=self.config.temperature,
            max_tokens=self.config.max_output_tokens or self.ctx.options.max_output_tokens,
            queue_key=self.ctx.conversation_id,  # one place in the LLM's fair queue per session
        )

    async def _work(self) -> None:
        steps = self.ctx.options.tool_max_steps
        for n in range(steps):
            if n and self.config.tool_choice != "none":
                self._step_choice = "auto"  # a forced call was made (a server tool's)
            step = await self._llm_step()
            if step.calls:
                # The client runs these and answers with function_call_output + response.create.
                self.waiting_for_client_tool = True
                return
            if not step.server_calls:
                return
            for call in step.server_calls:
                await self._run_server_tool(call)
        # The protocol has no reason for this; the closest it knows, and an error saying why.
        self.status, self.reason = "incomplete", "max_output_tokens"
        self.error = {
            "type": "server_error",
            "code": "max_tool_steps",
            "message": f"the response stopped after {steps} steps of server tool calls",
        }

    async def _llm_step(self) -> _Step:
        """One LLM call. A stream cut off after some output, none of which reached the
        client yet, is asked again (:data:`CUT_OFF_RETRIES`); otherwise the
        :class:`LlmError` ends the response (the chat client itself retries a stream
        cut off before any output)."""
        for attempt in range(CUT_OFF_RETRIES + 1):
            sent = len(self.items.items)
            try:
                return await self._llm_call()
            except LlmError as exc:
                # Not partial: the client already asked again before any output.
                if exc.kind != "cut_off" or not exc.partial or len(self.items.items) != sent:
                    raise
                if attempt == CUT_OFF_RETRIES:
                    raise
                log.warning("response %s: LLM stream cut off before anything was sent; "
                            "asking again (retry %d)", self.id, attempt + 1)
        raise AssertionError("unreachable")

    async def _llm_call(self) -> _Step:
        step = _Step()
        messages = self.history.chat_messages(self.instructions)
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and prefetch.matches(messages):
            self.prefetched = True
            stream = cast(AsyncGenerator[Any, None], prefetch.events())
        else:
            await self._drop_ahead()
            if prefetch is not None:
                await prefetch.aclose()
            stream = cast(AsyncGenerator[Any, None], self._llm_stream(messages))
        try:
            await self._consume(stream, step)
        finally:
            if prefetch is not None:
                await prefetch.aclose()
        if step.message is not None:
            await self.items.finish_message(step.message, "completed")
        return step

    async def _consume(self, stream: AsyncGenerator[Any, None], step: _Step) -> None:
        async with contextlib.aclosing(stream):
            if "audio" in self.config.output_modalities:
                await self._speak(self._sentences(stream, step), step)
            else:
                async for text in self._sentences(stream, step, chunk=False):
                    await self._text(text, step)

    def _tool_schemas(self) -> list[dict[str, Any]]:
        if self.config.tool_choice == "none":
            return []
        client = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                },
            }
            for t in self.config.tools
        ]
        return [*self.ctx.tools.openai_tools(), *client]

    async def _sentences(
        self, stream: AsyncIterator[Any], step: _Step, *, chunk: bool = True
    ) -> AsyncIterator[str]:
        """Text from the LLM, cut into speakable sentences; tool calls go to ``step``."""
        chunker = SentenceChunker(first_phrase_words=FIRST_PHRASE_WORDS)
        async for event in stream:
            if isinstance(event, TextDelta):
                if self.latency:
                    self.latency.mark("llm_first_token", self.ctx.clock.now())
                if not chunk:
                    yield event.text
                    continue
                for sentence in chunker.push(event.text):
                    yield sentence
            elif isinstance(event, ToolCallArgumentsDelta):
                if self.ctx.tools.get(event.name) is None:
                    await self.items.call_delta(event)
            elif isinstance(event, ToolCallRequest):
                if self.ctx.tools.get(event.name) is None:
                    step.calls.append(await self.items.call_done(event))
                else:
                    step.server_calls.append(event)
            elif isinstance(event, Completion):
                self.usage.input_tokens += event.input_tokens
                self.usage.output_tokens += event.output_tokens
                if event.finish_reason == "length":
                    self.status, self.reason = "incomplete", "max_output_tokens"
        for sentence in chunker.flush() if chunk else ():
            yield sentence

    async def _speak(self, sentences: AsyncIterator[str], step: _Step) -> None:
        try:
            synthesizer = await synthesizer_for(
                self.ctx.synthesizer, self.config.voice, self.config.speed
            )
        except (ValueError, TtsError) as exc:
            raise RuntimeError(f"voice {self.config.voice!r}: {exc}") from None
        ahead, self._ahead = self._ahead, None
        await self._drop_ahead()  # a first phrase not yet under way is left to this reply
        if ahead is not None:  # the prefetched first phrase, synthesized (or under way)
            synthesizer = ahead.serving(synthesizer)
        chunks = cast(
            AsyncGenerator[SpeechChunk, None],
            speak(
                synthesizer,
                sentences,
                sample_rate=self.ctx.audio_output.sample_rate
                if self.ctx.audio_output is not None
                else self.config.output_rate,
                chunk_ms=self.ctx.options.chunk_ms,
            ),
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await self._send_chunk(chunk, step)
        if self.ctx.audio_output is not None:
            self.ctx.audio_output.flush()

    async def _send_chunk(self, chunk: SpeechChunk, step: _Step) -> None:
        """Play one TTS chunk: into the media output, or paced out as an audio delta."""
        now = self.ctx.clock.now
        if self.latency:
            self.latency.mark("tts_first_audio", now())
        message = step.message or await self._open_message(step, audio=True)
        await self._audible.wait()
        duration_ms = 1000.0 * len(chunk.samples) / chunk.sample_rate
        output = self.ctx.audio_output
        if output is None:
            await self.pacer.wait_to_send(duration_ms)
        if not message.spans or message.spans[-1].index != chunk.sentence_index:
            message.spans.append(
                SpokenSpan(chunk.text, message.audio_ms, message.audio_ms, chunk.sentence_index)
            )
            delta = (" " if message.text else "") + chunk.text
            message.text += delta
            await self.items.content_event(
                "response.output_audio_transcript.delta", message, delta=delta
            )
        echo = self.ctx.echo
        if echo is not None and message.spans[-1].start_ms == message.audio_ms:
            echo.agent_text(chunk.text, now())
        if output is None:
            await self.items.content_event(
                "response.output_audio.delta", message, delta=self._encode(chunk.samples)
            )
            self.pacer.sent(duration_ms)
            if echo is not None:
                echo.agent_audio(chunk.samples, chunk.sample_rate, now())
        else:
            queued_s = output.queued_samples / output.sample_rate
            if self.output_state is None:
                self.output_state = "started"
                await self.ctx.emitter.emit("output_audio_buffer.started", response_id=self.id)
            await output.write(chunk.samples)
            if echo is not None:
                echo.agent_audio(chunk.samples, chunk.sample_rate, now() + queued_s)
        message.audio_ms += duration_ms
        message.spans[-1].end_ms = message.audio_ms
        message.spans[-1].complete = chunk.is_sentence_end
        if self.latency and self.latency.mark("first_audio_sent", now()):
            await self.ctx.report_latency(self.latency, self.id)

    async def played_out(self) -> None:
        """Media transports: once this response's audio has all been played, send
        ``output_audio_buffer.stopped`` (nothing if it was cleared). Safe to cancel."""
        output = self.ctx.audio_output
        if output is None or self.output_state != "started":
            return
        # The track plays the queue in real time: what is queued now is played by then.
        await asyncio.sleep(output.queued_samples / output.sample_rate + 0.02)
        if self.output_state == "started":
            self.output_state = "stopped"
            await self.ctx.emitter.emit("output_audio_buffer.stopped", response_id=self.id)

    def played_ms(self) -> float:
        """Audio of the current message the listener has heard (ms)."""
        output = self.ctx.audio_output
        if output is None:
            return self.pacer.played_ms()
        played = output.played_samples() - self._output_base
        return max(0.0, 1000.0 * played / output.sample_rate)

    async def _text(self, text: str, step: _Step) -> None:
        message = step.message or await self._open_message(step, audio=False)
        message.text += text
        await self.items.content_event("response.output_text.delta", message, delta=text)

    def _encode(self, samples: np.ndarray) -> str:
        fmt = self.config.output_format
        if fmt == "audio/pcmu":
            data = ulaw_encode(samples)
        elif fmt == "audio/pcma":
            data = alaw_encode(samples)
        else:
            data = samples.astype("<i2").tobytes()
        return base64.b64encode(data).decode("ascii")

    # --- items -----------------------------------------------------------------
    async def _open_message(self, step: _Step, *, audio: bool) -> Item:
        output = self.ctx.audio_output
        if output is not None:  # this item starts playing after what is queued now
            self._output_base = output.played_samples() + output.queued_samples
        item = await self.items.open_message(audio=audio)
        step.message = self._message = item
        return item

    async def _run_server_tool(self, call: ToolCallRequest) -> None:
        """Run one of the server's own tools. The call and its result stay on the server:
        they join the conversation as internal items (the LLM sees them, the client never
        does); the ``server_tools`` extension shows them as a ``voice.tool_call`` event."""
        result = await self.ctx.tools.call(
            call.name, call.arguments or "{}", timeout_s=self.ctx.options.tool_timeout_s
        )
        output = result.output if not result.is_error else json.dumps({"error": result.output})
        ids = self.ctx.emitter.ids
        for item in (
            Item(id=ids.new("item"), type="function_call", call_id=call.call_id,
                 name=call.name, arguments=call.arguments or "{}", internal=True),
            Item(id=ids.new("item"), type="function_call_output", call_id=call.call_id,
                 output=output, internal=True),
        ):
            self.items.store(item)
        await self.ctx.emitter.emit(
            "voice.tool_call",
            response_id=self.id,
            call_id=call.call_id,
            name=call.name,
            arguments=call.arguments,
            output=output,
        )

    async def _close_open_items(self) -> None:
        """Close items left open by a cancel, cutting the message to what was heard."""
        message = self._message
        if message is not None and message.status == "in_progress":
            heard = min(self.played_ms(), message.audio_ms)
            if self.ctx.audio_output is not None:
                self.ctx.audio_output.clear()
                self.ctx.audio_output.resume()
                if self.output_state == "started":
                    self.output_state = "cleared"
                    await self.ctx.emitter.emit(
                        "output_audio_buffer.cleared", response_id=self.id
                    )
            if message.audio and self.ctx.conversation.get(message.id) is not None:
                self.ctx.conversation.truncate(message.id, heard)
            await self.items.finish_message(message, "incomplete")
        await self.items.close_open_calls()

    def _protocol(self, status: str) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status != "in_progress" and (self.reason or self.error):
            details = {"type": status, "reason": self.reason, "error": self.error}
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": [i.to_protocol() for i in self.items.items],
            "output_modalities": list(self.config.output_modalities),
            "audio": {
                "output": {
                    "format": {"type": self.config.output_format},
                    "voice": self.config.voice,
                }
            },
            "max_output_tokens": self.config.max_output_tokens or "inf",
            "conversation_id": self.ctx.conversation_id if self.in_conversation else None,
            "metadata": self.metadata,
            "usage": None if status == "in_progress" else self._usage(),
        }

    def _usage(self) -> dict[str, Any]:
        """Token usage as the protocol reports it. The LLM counts text tokens only (the
        user's audio reaches it as a transcript; speech is made from its text)."""
        usage = self.usage
        return {
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "input_token_details": {
                "text_tokens": usage.input_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": usage.output_tokens, "audio_tokens": 0},
        }
