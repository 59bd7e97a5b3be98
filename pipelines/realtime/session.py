"""A realtime conversation session speaking the OpenAI Realtime protocol.

Transports call :meth:`RealtimeSession.handle` with each raw client message and
send every event the session emits. The session owns two kinds of task: the
input task (audio → VAD → STT) and at most one response task; :meth:`close`
cancels both and waits for them.

Barge-in: the first voiced frame while the agent speaks *holds* its audio at
once (no audio delta goes out while held); ``barge_in_min_ms`` of quiet releases
it. ``input_audio_buffer.speech_started`` over a reply is deferred until the
speech is confirmed (words beyond a backchannel in at least
``barge_in_words_min_ms`` of voice, or ``barge_in_confirm_ms`` of voice): then
the response is cancelled, every later audio delta of it is dropped at the door,
and only then is ``speech_started`` sent. A cough or an "mm-hm" is never
announced; the agent carries on. See docs/realtime-protocol.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel

from pipelines.clock import Clock, MonotonicClock
from pipelines.realtime.client_items import client_audio, decode_audio, item_from_client
from pipelines.realtime.config import (
    SessionConfig,
    apply_session_update,
    check_tool_choice,
    response_config,
)
from pipelines.realtime.context import RealtimeOptions, SessionContext
from pipelines.realtime.conversation import Conversation, Item
from pipelines.realtime.echo import EchoGuard
from pipelines.realtime.emitter import Emitter, Send
from pipelines.realtime.extensions import client_view
from pipelines.realtime.ingress import Audio, Clear, Commit, InputAudio, settle
from pipelines.realtime.latency import TurnLatency
from pipelines.realtime.live_meeting import LiveMeeting, MeetingSink
from pipelines.realtime.prefetch import same_words
from pipelines.realtime.protocol import Ids, ProtocolError, parse_client_event
from pipelines.realtime.response import ResponseRun
from pipelines.realtime.speakers import SessionSpeakers, SpeakerOptions
from pipelines.realtime.voices import check_voice
from voice.diarize.base import SpeakerEmbedder
from voice.llm import ChatClient, ToolRegistry
from voice.stt import Transcriber
from voice.tts.base import Synthesizer

log = logging.getLogger(__name__)

BACKCHANNELS = frozenset(
    [
        "uh",
        "huh",
        "uh-huh",
        "mm",
        "mhm",
        "mm-hmm",
        "hmm",
        "yeah",
        "yep",
        "yes",
        "ok",
        "okay",
        "right",
        "sure",
        "i",
        "see",
        "wow",
        "oh",
        "ah",
    ]
)
"""Utterances made only of these words do not interrupt the agent."""

COMMIT_WAIT_S = 30.0
"""A ``response.create`` right after a manual commit waits at most this long (s) for the
committed turn's transcription (push-to-talk), then answers with what is there."""



class RealtimeSession:
    """One client's conversation. Not thread-safe; use from one event loop."""

    def __init__(
        self,
        *,
        send: Send,
        llm: ChatClient,
        tools: ToolRegistry,
        transcriber: Transcriber,
        synthesizer: Synthesizer,
        config: SessionConfig,
        options: RealtimeOptions | None = None,
        clock: Clock | None = None,
        embedder: SpeakerEmbedder | None = None,
        meeting_sink: MeetingSink | None = None,
        tap: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``embedder`` enables live speaker labels; ``meeting_sink`` receives the
        recording of a session with ``session.meeting.record`` on when it closes;
        ``tap`` sees every event in full (extensions included: metrics) before the
        client's view of it is sent."""
        self._tap = tap
        ids = Ids()
        self.id = ids.new("sess")
        self._silenced: set[str] = set()
        """Responses whose audio must not reach the client any more (barge-in confirmed)."""
        send = self._gate(send)
        self.options = options or RealtimeOptions()
        self.config = config
        self.ctx = SessionContext(
            emitter=Emitter(send, ids),
            conversation=Conversation(
                max_items=self.options.max_items, max_context_chars=self.options.max_context_chars
            ),
            conversation_id=ids.new("conv"),
            clock=clock or MonotonicClock(),
            options=self.options,
            llm=llm,
            tools=tools,
            synthesizer=synthesizer,
            report_latency=self._report_latency,
            speakers=SessionSpeakers(embedder, SpeakerOptions(threshold=config.speakers.threshold))
            if embedder is not None
            else None,
            echo=EchoGuard() if self.options.echo_guard else None,
        )
        self.input = InputAudio(self.ctx, transcriber, self, lambda: self.config)
        self._meeting_sink = meeting_sink
        self._primary: str | None = None
        """The speaker responses follow in focus mode, once known."""
        self._references: dict[str, str] = {}
        """Voice samples of known speakers as given (kept for a recorded meeting)."""
        self.response: ResponseRun | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._input_task: asyncio.Task[None] | None = None
        self._interrupt_pending = False
        self._hold_since: float | None = None
        self._quiet_since: float | None = None
        self._queued_turn: tuple[Item, TurnLatency | None] | None = None
        self._speculative: tuple[str, ResponseRun] | None = None
        """A response whose LLM request started on a speculative transcript."""
        self.latencies: list[dict[str, Any]] = []
        self._side_runs: dict[ResponseRun, asyncio.Task[None]] = {}
        """Out-of-band responses (``conversation: "none"``) running beside the main one."""
        self._commits: list[asyncio.Future[None]] = []
        """Manual commits whose turn is not transcribed yet."""
        self._watchers: set[asyncio.Task[None]] = set()
        """Tasks waiting for a response's audio to play out (media transports)."""

    @property
    def emitter(self) -> Emitter:
        return self.ctx.emitter

    @property
    def responding(self) -> bool:
        """True while a response (LLM, tools, speech) is running."""
        return self._response_active()

    async def responses_finished(self) -> None:
        """Wait until no response is running, including one queued behind the current.
        Safe to cancel (the responses go on)."""
        while (task := self._response_task) is not None and not task.done():
            await asyncio.wait([task])

    # --- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Start the input task and greet the client with ``session.created``."""
        self._input_task = asyncio.create_task(self.input.run(), name=f"input-{self.id}")
        await self.emitter.emit("session.created", session=self._session_protocol())

    async def close(self) -> None:
        """Cancel the response and input tasks and wait for them to exit; hand a
        recorded meeting to the sink. Safe to call twice."""
        await self.speculation_cancelled()
        if self.response is not None:
            self.response.cancel("client_disconnected")
        for run in list(self._side_runs):
            run.cancel("client_disconnected")
        for watch in list(self._watchers):
            watch.cancel()
        for task in (
            self._response_task,
            self._input_task,
            *self._side_runs.values(),
            *self._watchers,
        ):
            if task is not None and not task.done():
                if task is self._input_task:
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=5.0)
        spool, self.input.recording = self.input.recording, None
        if spool is not None and self._meeting_sink is not None:
            meeting = LiveMeeting(
                spool,
                self.config.meeting.title,
                list(self.input.segments),
                dict(self._references),
            )
            try:
                await self._meeting_sink.store(meeting)
            except Exception:
                log.exception("storing the live meeting of %s failed", self.id)

    # --- client events ---------------------------------------------------------
    async def handle(self, raw: str | bytes) -> None:
        """Process one client message; problems become ``error`` events, never exceptions."""
        try:
            event = parse_client_event(raw, max_bytes=self.options.max_event_bytes)
            await self._dispatch(event)
        except ProtocolError as err:
            await self.emitter.error(err)

    async def _dispatch(self, event: BaseModel) -> None:
        kind = getattr(event, "type", "")
        event_id = getattr(event, "event_id", None)
        try:
            handler = getattr(self, "_on_" + kind.replace(".", "_"))
            await handler(event)
        except ProtocolError as err:
            err.event_id = err.event_id or event_id
            raise

    async def _on_session_update(self, event: Any) -> None:
        config = apply_session_update(self.config, event.session)
        self._check_config(config, "session")
        extra = event.session.model_extra or {}
        if "speakers" in extra:
            await self._enroll(config, extra["speakers"])
        if config.meeting.record and self.input.recording is None:
            if self._meeting_sink is None:
                raise ProtocolError(
                    "this server cannot store meetings", param="session.meeting.record"
                )
            try:
                self.input.recording = await self._meeting_sink.open(config.meeting.title)
            except (OSError, RuntimeError) as exc:  # disk full, job queue gone
                log.error("cannot start recording the meeting of %s: %s", self.id, exc)
                raise ProtocolError(
                    "the server cannot record this meeting now", param="session.meeting.record"
                ) from None
        self.config = config
        await self.emitter.emit("session.updated", session=self._session_protocol())

    async def _enroll(self, config: SessionConfig, speakers: dict[str, Any]) -> None:
        """Apply threshold and known-speaker samples from ``session.speakers``."""
        attribution = self.ctx.speakers
        if attribution is None:
            if config.speakers.known or config.speakers.focus:
                raise ProtocolError(
                    "speaker attribution is not available on this server",
                    param="session.speakers",
                )
            return
        attribution.profiles.threshold = config.speakers.threshold
        names = [n.strip() for n in speakers.get("known_speaker_names") or []]
        references = speakers.get("known_speaker_references") or []
        for index, (name, reference) in enumerate(zip(names, references, strict=True)):
            if not isinstance(reference, str):
                raise ProtocolError(
                    "a known speaker reference must be a data URL or base64 audio",
                    param=f"session.speakers.known_speaker_references[{index}]",
                )
            try:
                await attribution.enroll(name, reference)
            except ValueError as exc:
                raise ProtocolError(
                    str(exc), param=f"session.speakers.known_speaker_references[{index}]"
                ) from None
            self._references[name] = reference

    async def _on_input_audio_buffer_append(self, event: Any) -> None:
        try:
            data = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("audio is not valid base64", param="audio") from None
        received = self.ctx.clock.now()
        await self.input.put(Audio(self._decode_audio(data), self.config.input_rate, received))

    async def feed_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Input audio from a media transport (WebRTC): mono int16 at ``sample_rate`` Hz.

        Waits while the input queue is full; safe to cancel.
        """
        await self.input.put(Audio(samples, sample_rate, self.ctx.clock.now()))

    def _decode_audio(self, data: bytes) -> np.ndarray:
        return decode_audio(data, self.config.input_format, self.config.input_rate)

    async def _on_input_audio_buffer_commit(self, event: Any) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commits.append(done)
        done.add_done_callback(self._commits.remove)
        await self.input.put(Commit(event.event_id, done))

    async def _on_input_audio_buffer_clear(self, event: Any) -> None:
        await self.input.put(Clear())

    async def _on_output_audio_buffer_clear(self, event: Any) -> None:
        if self.response is not None:
            self.response.cancel("client_cancelled")
            if self.ctx.audio_output is None:  # media transports: the response says it
                await self.emitter.emit(
                    "output_audio_buffer.cleared", response_id=self.response.id
                )

    async def _on_conversation_item_create(self, event: Any) -> None:
        item = self._item_from_client(event.item, "item")
        audio = self._client_audio(event.item, "item")
        if audio is not None:
            if item.role != "user":
                raise ProtocolError(
                    "input audio belongs in a user message", param="item.role"
                )
            item.audio, item.status = True, "completed"
        try:
            previous = self.ctx.conversation.add(item, event.previous_item_id)
        except KeyError:
            raise ProtocolError(
                f"previous_item_id {event.previous_item_id!r} does not exist",
                code="item_not_found",
                param="previous_item_id",
            ) from None
        await self.emitter.item_added(item, previous)
        if audio is None:
            await self.emitter.item_done(item, previous)
            return
        # Transcribed like a committed turn; a response.create right after waits for it.
        task = await self.input.transcribe_item(item, previous, audio, self.config.input_rate)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commits.append(done)
        done.add_done_callback(self._commits.remove)
        task.add_done_callback(lambda _: settle(done))

    def _client_audio(self, data: Any, param: str) -> np.ndarray | None:
        return client_audio(data, param, self.config.input_format, self.config.input_rate)

    def _item_from_client(self, data: Any, param: str, *, fresh: bool = True) -> Item:
        """A conversation item a client sent (``param`` names it in errors); ``fresh``:
        its id must not be in the conversation yet."""
        item_id = data.id or self.emitter.ids.new("item")
        if fresh and self.ctx.conversation.get(item_id) is not None:
            raise ProtocolError(
                f"item {item_id!r} already exists", code="item_exists", param=f"{param}.id"
            )
        return item_from_client(data, item_id, param)

    async def _on_conversation_item_retrieve(self, event: Any) -> None:
        item = self._require_item(event.item_id)
        await self.emitter.emit("conversation.item.retrieved", item=item.to_protocol())

    async def _on_conversation_item_truncate(self, event: Any) -> None:
        self._require_item(event.item_id)
        try:
            item = self.ctx.conversation.truncate(event.item_id, float(event.audio_end_ms))
        except ValueError as exc:
            raise ProtocolError(str(exc), param="audio_end_ms") from None
        await self.emitter.emit(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=event.content_index,
            audio_end_ms=event.audio_end_ms,
        )

    async def _on_conversation_item_delete(self, event: Any) -> None:
        self._require_item(event.item_id)
        self.ctx.conversation.delete(event.item_id)
        await self.emitter.emit("conversation.item.deleted", item_id=event.item_id)

    def _require_item(self, item_id: str) -> Item:
        item = self.ctx.conversation.get(item_id)
        if item is None:
            raise ProtocolError(
                f"item {item_id!r} does not exist", code="item_not_found", param="item_id"
            )
        return item

    async def _on_response_create(self, event: Any) -> None:
        if self.config.type == "transcription":
            raise ProtocolError(
                "a transcription session creates no responses (session.type is 'transcription')",
                code="invalid_request",
                param="type",
            )
        params = event.response
        conversation = getattr(params, "conversation", None) or "auto"
        if conversation not in ("auto", "none"):
            raise ProtocolError(
                "conversation must be 'auto' or 'none' (a session has one conversation)",
                param="response.conversation",
            )
        out_of_band = conversation == "none"
        if not out_of_band and self._response_active():
            raise ProtocolError(
                "the conversation already has an active response",
                code="conversation_already_has_active_response",
            )
        config = response_config(self.config, params)
        self._check_config(config, "response")
        history: Conversation | None = None
        if params is not None and params.input is not None:
            history = self._new_history()
            for index, data in enumerate(params.input):
                where = f"response.input[{index}]"
                if self._client_audio(data, where) is not None:
                    raise ProtocolError(
                        "audio in response.input is not transcribed; add it with "
                        "conversation.item.create, or send its transcript",
                        param=f"{where}.content",
                    )
                history.add(self._item_from_client(data, where, fresh=False))
        elif out_of_band:  # reads the conversation as it is now, adds nothing to it
            history = self._new_history(self.ctx.conversation)
        run = ResponseRun(
            self.ctx,
            config,
            instructions=params.instructions if params is not None else None,
            history=history,
            in_conversation=not out_of_band,
            metadata=params.metadata if params is not None else None,
        )
        if out_of_band:
            task = asyncio.create_task(run.run(), name=f"resp-{run.id}")
            self._side_runs[run] = task
            task.add_done_callback(lambda _: self._side_runs.pop(run, None))
            return
        # Push-to-talk: a commit just before this must be transcribed before answering.
        self._start_response(config, run=run, after=list(self._commits))

    def _new_history(self, source: Conversation | None = None) -> Conversation:
        history = Conversation(
            max_items=self.options.max_items, max_context_chars=self.options.max_context_chars
        )
        for item in source or ():
            history.add(item)
        return history

    def _check_config(self, config: SessionConfig, where: str) -> None:
        """Raise :class:`ProtocolError` for a tool choice or voice ``config`` cannot have
        (``where``: ``session`` or ``response``, naming the fields in errors)."""
        check_tool_choice(config, set(self.ctx.tools.names()), f"{where}.tool_choice")
        audio = "session.audio.output" if where == "session" else "response.audio.output"
        try:
            check_voice(config.voice, self.ctx.synthesizer)
        except ValueError as exc:
            raise ProtocolError(str(exc), param=f"{audio}.voice") from None
        if config.speed != 1.0 and not hasattr(self.ctx.synthesizer, "at_speed"):
            raise ProtocolError(
                "this server's voice cannot change its speed", param=f"{audio}.speed"
            )

    async def _on_response_cancel(self, event: Any) -> None:
        wanted = event.response_id
        for run in list(self._side_runs):
            if run.id == wanted:
                run.cancel("client_cancelled")
                return
        if (
            not self._response_active()
            or self.response is None
            or (wanted is not None and wanted != self.response.id)
        ):
            raise ProtocolError(
                "there is no active response to cancel"
                + (f" with id {wanted!r}" if wanted else ""),
                code="response_cancel_not_active",
                param="response_id" if wanted else None,
            )
        self.response.cancel("client_cancelled")

    # --- responses -------------------------------------------------------------
    def _response_active(self) -> bool:
        return self._response_task is not None and not self._response_task.done()

    def _start_response(
        self,
        config: SessionConfig,
        *,
        latency: TurnLatency | None = None,
        instructions: str | None = None,
        run: ResponseRun | None = None,
        after: list[asyncio.Future[None]] | None = None,
    ) -> None:
        """Run a response as the session's one active response; ``after``: transcriptions
        of committed turns it waits for first (at most :data:`COMMIT_WAIT_S`)."""
        if run is None:
            run = ResponseRun(self.ctx, config, latency=latency, instructions=instructions)
        self.response = run
        self._interrupt_pending = False
        self._response_task = asyncio.create_task(
            self._run_response(run, after), name=f"resp-{run.id}"
        )

    async def _run_response(
        self, run: ResponseRun, after: list[asyncio.Future[None]] | None = None
    ) -> None:
        pending = [f for f in after or () if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=COMMIT_WAIT_S)
        await run.run()
        if run.output_state == "started":  # tell when the media output played it all
            watch = asyncio.create_task(run.played_out(), name=f"played-{run.id}")
            self._watchers.add(watch)
            watch.add_done_callback(self._watchers.discard)
        queued, self._queued_turn = self._queued_turn, None
        if queued is not None and self.response is run:
            self._start_response(self.config, latency=queued[1])

    async def _report_latency(self, latency: TurnLatency, response_id: str) -> None:
        fields = latency.event_fields(response_id)
        self.latencies.append(fields)
        log.info("turn latency %s (speculative: %s)", fields["latency_ms"], latency.speculative)
        await self.emitter.emit("voice.latency", **fields)

    # --- barge-in (called by the input side) ------------------------------------
    def voice_activity(self, voiced: bool) -> None:
        run = self.response
        td = self.config.turn_detection
        if run is None or not self._response_active() or td is None or not td.interrupt_response:
            return
        now = self.ctx.clock.now()
        if voiced:
            self._quiet_since = None
            if not run.held:
                run.hold()
                self._hold_since = now
            return
        if self._quiet_since is None:
            self._quiet_since = now
        if (
            run.held
            and not self._interrupt_pending  # speech under judgement: turn_dropped() releases
            and now - self._quiet_since >= self.options.barge_in_min_ms / 1000.0
        ):
            run.release()  # a click too short to be speech: carry on

    def speech_started(self) -> None:
        run = self.response
        td = self.config.turn_detection
        if run is not None and self._response_active() and td is not None and td.interrupt_response:
            run.hold()
            self._interrupt_pending = True

    async def partial_transcript(self, text: str) -> None:
        # Only where speech_started went out at once (focus mode): a deferred turn is
        # judged by the input side (confirms_interruption, with its voiced time).
        if self._interrupt_pending and not self.defers_speech_started() and _is_interruption(text):
            self._interrupt()

    def _interrupt(self) -> None:
        run = self.response
        self._interrupt_pending = False
        if run is not None and self._response_active():
            self._silenced.add(run.id)  # speech_started was sent: none of its audio after
            run.cancel("turn_detected")

    def _gate(self, send: Send) -> Send:
        """``send``, minus audio deltas of responses the user has been told they
        interrupted, and minus the extensions the client did not ask for."""

        async def gated(event: dict[str, Any]) -> None:
            if (
                event.get("type") == "response.output_audio.delta"
                and event.get("response_id") in self._silenced
            ):
                return
            if self._tap is not None:
                self._tap(event)
            view = client_view(event, self.config.extensions)
            if view is not None:
                await send(view)

        return gated

    def _interrupts_now(self) -> bool:
        td = self.config.turn_detection
        return (
            self.response is not None
            and self._response_active()
            and td is not None
            and td.interrupt_response
        )

    def defers_speech_started(self) -> bool:
        return self._interrupts_now() and self.config.speakers.focus is None

    def confirms_interruption(self, text: str, voiced_ms: float) -> bool:
        if not self._interrupts_now():
            return False
        return self._words_interrupt(text, voiced_ms) or (
            voiced_ms >= self.options.barge_in_confirm_ms
        )

    def keeps_deferred_turn(self, text: str, voiced_ms: float) -> bool:
        if self._interrupts_now():
            return self._words_interrupt(text, voiced_ms)
        return bool(text)  # the reply ended meanwhile: any words are a turn

    def _words_interrupt(self, text: str, voiced_ms: float) -> bool:
        """Whether ``text`` over the reply interrupts it: words beyond backchannels, heard
        in at least ``barge_in_words_min_ms`` of voice (the live recogniser turns a hum
        into words: "Mm-hmm" comes out as "in a month", "MMM" or "in Emma")."""
        return voiced_ms >= self.options.barge_in_words_min_ms and _is_interruption(text)

    def turn_confirmed(self) -> None:
        run = self.response
        self._interrupt_pending = False
        if run is not None and self._response_active():
            self._silenced.add(run.id)
            run.hold()
            run.cancel("turn_detected")

    def turn_dropped(self) -> None:
        self._interrupt_pending = False
        if self.response is not None and self.response.held:
            self.response.release()

    def may_interrupt(self, speaker: str | None) -> bool:
        focus = self.config.speakers.focus
        if focus is None:
            return True
        primary = self._primary or (None if focus == "first" else focus)
        if primary is None:
            return True  # focus on the first speaker, and nobody has spoken yet
        return speaker == primary

    def _follows(self, item: Item) -> bool:
        """Focus mode: whether ``item``'s speaker is the one the agent answers."""
        focus = self.config.speakers.focus
        if focus is None:
            return True
        if self._primary is None and focus == "first" and item.speaker:
            self._primary = item.speaker
        return self.may_interrupt(item.speaker)

    async def echo_turn(self, item: Item) -> None:
        if self._interrupt_pending:
            self._interrupt_pending = False
            if self.response is not None:
                self.response.release()

    async def idle_turn(self, item: Item) -> None:
        td = self.config.turn_detection
        if (
            self.config.type == "realtime"
            and td is not None
            and td.create_response
            and not self._response_active()
        ):
            self._start_response(self.config)

    async def user_turn(self, item: Item, latency: TurnLatency | None) -> None:
        td = self.config.turn_detection
        words = item.text.strip()
        if self.config.type == "transcription":
            return
        if not self._follows(item):
            await self.speculation_cancelled()
            if self._interrupt_pending:  # focus let the turn hold the reply on an early
                self._interrupt_pending = False  # look; the whole turn is someone else's
                if self.response is not None:
                    self.response.release()
            return
        if self._interrupt_pending:
            if _is_interruption(words):
                self._interrupt()
            else:
                self._interrupt_pending = False
                if self.response is not None:
                    self.response.release()  # false interruption: the agent continues
                return
        if td is None or not td.create_response or not words:
            return
        if self._response_active():
            self._queued_turn = (item, latency)  # answered when the current response ends
            return
        speculative, self._speculative = self._speculative, None
        if speculative is not None and same_words(speculative[0], words):
            speculative[1].latency = latency
            if latency is not None:
                latency.speculative = True
            self._start_response(self.config, run=speculative[1])
            return
        if speculative is not None:
            await speculative[1].discard_prefetch()
        self._start_response(self.config, latency=latency)

    async def speculative_transcript(
        self, item_id: str, text: str, speaker: str | None = None
    ) -> None:
        td = self.config.turn_detection
        turn = Item(id=item_id, type="message", role="user", text=text, speaker=speaker)
        if self._speculative is not None and self._speculative[1].prefetched_for(turn):
            return  # the request already started reads the same: it goes on
        await self.speculation_cancelled()
        if (
            not self.options.speculative_response
            or self.config.type == "transcription"
            or td is None
            or not td.create_response
            or self._response_active()
            or self._interrupt_pending
        ):
            return
        run = ResponseRun(self.ctx, self.config)
        run.prefetch(turn)
        self._speculative = (text, run)

    async def speculation_cancelled(self) -> None:
        speculative, self._speculative = self._speculative, None
        if speculative is not None:
            await speculative[1].discard_prefetch()

    def created_event(self) -> dict[str, Any]:
        """A ``session.created`` event for a client joining this session (a sideband),
        as that client may see it."""
        event = {
            "type": "session.created",
            "event_id": self.emitter.ids.new("event"),
            "session": self._session_protocol(),
        }
        return client_view(event, self.config.extensions) or event

    def _session_protocol(self) -> dict[str, Any]:
        server_tools = (
            self.ctx.tools.realtime_tools() if "server_tools" in self.config.extensions else []
        )
        return self.config.to_protocol(self.id, server_tools)


def _is_interruption(text: str) -> bool:
    """True when ``text`` has words beyond backchannels ("uh-huh", "yeah", ...)."""
    words = re.findall(r"[a-z']+(?:-[a-z']+)?", text.lower())
    return any(w not in BACKCHANNELS for w in words)
