"""What a committed user turn becomes once its words are known.

:class:`TurnTranscripts` waits for a turn's final transcription (and its speaker
label, when speakers are labelled), emits the transcription events, drops a turn
that was the agent's own voice, marks the item done and hands it to the
:class:`~pipelines.realtime.ingress.TurnListener` as a user turn.
:func:`commit_quiet_input` commits input that held no speech (the
``idle_timeout_ms`` of ``server_vad``). Both run on the event loop; cancelling
:meth:`TurnTranscripts.publish` drops the turn unpublished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pipelines.realtime.context import SessionContext
from pipelines.realtime.conversation import Item
from pipelines.realtime.latency import TurnLatency
from pipelines.realtime.speakers import TurnSpeakers, TurnVoice

if TYPE_CHECKING:
    from pipelines.realtime.ingress import TurnListener

log = logging.getLogger(__name__)


class TurnTranscripts:
    """Publishes one session's user turns as their transcriptions finish.

    ``on_heard(item)`` is told every turn with words that is kept (not echo), before
    ``conversation.item.done`` (the live meeting recording keeps them)."""

    def __init__(
        self,
        ctx: SessionContext,
        listener: TurnListener,
        on_heard: Callable[[Item], None] = lambda item: None,
    ) -> None:
        self.ctx = ctx
        self._listener = listener
        self._on_heard = on_heard

    async def identify(self, voice: TurnVoice) -> tuple[TurnSpeakers | None, float]:
        """The turn's speakers (None if too short, or when attribution failed) and the
        clock time they were ready."""
        assert self.ctx.speakers is not None
        try:
            found = await self.ctx.speakers.identify(voice)
        except Exception:
            log.exception("speaker attribution failed")
            found = None
        return found, self.ctx.clock.now()

    async def publish(
        self,
        item: Item,
        previous: str | None,
        finalize: Awaitable[object],
        latency: TurnLatency | None,
        speaker: Awaitable[tuple[TurnSpeakers | None, float]] | None = None,
        *,
        echo: bool = False,
        echo_possible: bool = False,
        answer: bool = True,
        expected_speaker: str | None = None,
    ) -> None:
        """Emit the turn's transcription events and ``conversation.item.done``, then (if
        ``answer``) hand it to the listener as a user turn. ``echo``: the turn's voice was
        mostly the agent's; ``echo_possible``: the agent spoke lately, so a transcript
        matching its words is echo too. ``expected_speaker``: the label the turn sounded
        like at its end (for a speculative request meanwhile)."""
        try:
            result = await finalize
        except Exception as exc:
            log.exception("transcription failed for %s", item.id)
            await self.ctx.emitter.emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item.id,
                content_index=0,
                error={"type": "transcription_error", "code": "stt_failed", "message": str(exc)},
            )
            return
        text = getattr(result, "text", "").strip()
        duration = float(getattr(result, "duration", 0.0))
        if latency:
            latency.mark("stt_final", self.ctx.clock.now())
        item.text = text
        extra: dict[str, object] = {}
        guard = self.ctx.echo
        if echo or (
            echo_possible and guard is not None and len(text.split()) >= 2 and guard.text_is_echo(text)
        ):
            extra["echo"] = True
        if speaker is not None:
            if answer and text and not extra and not _done(speaker):
                # The words are known and the speaker label is not: the LLM may start
                # on them now (the turn uses it if the label changes nothing it reads).
                await self._listener.speculative_transcript(item.id, text, expected_speaker)
            found, ready_at = await speaker
            item.speaker = found.label if found else None
            extra["speaker"] = item.speaker
            if found is not None and len(found.segments) > 1 and item.start_ms is not None:
                origin = item.start_ms / 1000.0
                extra["speaker_segments"] = [
                    {"start": round(origin + a, 2), "end": round(origin + b, 2), "speaker": label}
                    for a, b, label in found.segments
                ]
            if latency:
                latency.mark("speaker", ready_at)
        await self.ctx.emitter.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=text,
            usage={"type": "duration", "seconds": round(duration, 3)},
            **extra,
        )
        if extra.get("echo"):
            await self._drop_echo(item)
            return
        if text:
            self._on_heard(item)
        await self.ctx.emitter.item_done(item, previous)
        if answer:
            await self._listener.user_turn(item, latency)

    async def _drop_echo(self, item: Item) -> None:
        """The turn was the agent's own voice: remove it from the conversation."""
        if self.ctx.conversation.get(item.id) is not None:
            self.ctx.conversation.delete(item.id)
            await self.ctx.emitter.emit("conversation.item.deleted", item_id=item.id)
        await self._listener.echo_turn(item)


async def commit_quiet_input(ctx: SessionContext, start_ms: float, end_ms: float) -> Item:
    """Commit the input from ``start_ms`` to ``end_ms`` (stream ms), which held no speech,
    as a user item with an empty transcript: ``input_audio_buffer.timeout_triggered``,
    ``committed``, the item added, its (empty) transcription and the item done."""
    item_id = ctx.emitter.ids.new("item")
    await ctx.emitter.emit(
        "input_audio_buffer.timeout_triggered",
        audio_start_ms=int(start_ms),
        audio_end_ms=int(end_ms),
        item_id=item_id,
    )
    item = Item(id=item_id, type="message", role="user", audio=True, status="completed")
    item.start_ms, item.end_ms = start_ms, end_ms
    previous = ctx.conversation.add(item)
    await ctx.emitter.emit(
        "input_audio_buffer.committed", item_id=item_id, previous_item_id=previous
    )
    await ctx.emitter.item_added(item, previous)
    await ctx.emitter.emit(  # quiet audio: nothing to transcribe
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript="",
        usage={"type": "duration", "seconds": round((end_ms - start_ms) / 1000, 3)},
    )
    await ctx.emitter.item_done(item, previous)
    return item


def _done(awaitable: Awaitable[object]) -> bool:
    """Whether ``awaitable`` is a future that has finished (False for a coroutine)."""
    return isinstance(awaitable, asyncio.Future) and awaitable.done()
