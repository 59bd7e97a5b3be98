"""Input side of a realtime session: client audio → 16 kHz → VAD → streaming STT → user items.

Runs as one task per session consuming a queue, so audio, commits and clears are
handled in the order the client sent them. Model work (VAD frames, Whisper)
runs in worker threads. The session is told about voice activity at once (for
barge-in) and about each finished user turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from pipelines.realtime.config import SessionConfig, TurnDetection
from pipelines.realtime.context import SessionContext
from pipelines.realtime.conversation import Item
from pipelines.realtime.input_window import AudioWindow
from pipelines.realtime.latency import TurnLatency
from pipelines.realtime.live_meeting import LiveSegment, RecordingSpool
from pipelines.realtime.partials import StablePrefix
from pipelines.realtime.protocol import ProtocolError
from pipelines.realtime.speakers import TurnSpeakers, TurnVoice
from pipelines.realtime.turn_transcripts import TurnTranscripts, commit_quiet_input
from voice.audio.resample import StreamResampler, resample
from voice.stt import StreamingRecognizer, Transcriber
from voice.vad import SpeechStarted, SpeechStopped, StreamingVad, VadOptions, make_classifier
from voice.vad.endpoint import EndpointPolicy
from voice.vad.smart_turn import shared_turn_model, turn_model_available
from voice.workers import run_on

log = logging.getLogger(__name__)

RATE = 16000
"""Rate (Hz) of the VAD and STT side."""
PROBE_AFTER_MS = 200.0
"""Silence (ms) into a pause at which the turn model is asked whether the turn is over."""
FOCUS_JUDGE_MS = (600, 1000, 1400, 1800, 2200, 2600, 3000)
"""Voice (ms) into a turn at which focus mode asks whose voice it is, until it is the
primary speaker's (each look embeds the whole turn so far)."""
STALLED_INPUT_MS = 400.0
"""Wall-clock gap (ms) in the client's audio after which a pause that already lasted
``silence_duration_ms`` ends the turn although the adaptive wait asks for more: a client
that stopped streaming (a file sent whole) gets OpenAI's exact ``server_vad`` timing."""


@dataclass(frozen=True)
class Audio:
    """Client audio: mono int16 ``samples`` at ``sample_rate`` Hz, received at clock
    time ``received_at`` (s; None = when processed)."""

    samples: np.ndarray
    sample_rate: int
    received_at: float | None = None


@dataclass(frozen=True)
class Commit:
    """Client asked to commit the input buffer (``input_audio_buffer.commit``); ``done``
    is resolved once the committed turn is transcribed (or the commit failed)."""

    event_id: str | None
    done: asyncio.Future[None] | None = None


@dataclass(frozen=True)
class Clear:
    """Client asked to drop the input buffer (``input_audio_buffer.clear``)."""


@dataclass(frozen=True)
class InputStalled:
    """No client audio arrived for :data:`STALLED_INPUT_MS` since the stream reached
    ``position_ms`` (ms), in a pause the adaptive wait was still holding open."""

    position_ms: float


class TurnListener(Protocol):
    """What the session hears from the input side."""

    def voice_activity(self, voiced: bool) -> None:
        """Called for every chunk processed: was its last VAD frame voiced?"""

    def speech_started(self) -> None:
        """The VAD confirmed the start of speech (longer than the minimum)."""

    async def partial_transcript(self, text: str) -> None:
        """A new partial hypothesis of the current user turn."""

    async def speculative_transcript(
        self, item_id: str, text: str, speaker: str | None = None
    ) -> None:
        """What the turn (the user item ``item_id``) says, before the turn is handed over:
        trailing silence began (not committed yet), or the turn is committed and its final
        transcript waits for the speaker label. Called again with the same words when both
        happen. ``speaker``: the label the turn is expected to get (None: not labelled)."""

    async def speculation_cancelled(self) -> None:
        """Speech resumed: the last speculative transcript no longer holds."""

    async def user_turn(self, item: Item, latency: TurnLatency | None) -> None:
        """A user turn was committed and transcribed (``item.text`` may be empty)."""

    async def echo_turn(self, item: Item) -> None:
        """A turn turned out to be the agent's own voice; it was removed from history."""

    def may_interrupt(self, speaker: str | None) -> bool:
        """Whether a voice (None: not yet known) may hold or interrupt the agent (focus)."""

    def defers_speech_started(self) -> bool:
        """Speech is starting: should ``speech_started`` wait until it is confirmed (a
        reply is playing that it would interrupt)?"""

    def confirms_interruption(self, text: str, voiced_ms: float) -> bool:
        """Does a deferred turn with this partial text and voiced time interrupt the reply?"""

    def keeps_deferred_turn(self, text: str, voiced_ms: float) -> bool:
        """A deferred turn ended with this transcript and voiced time: is it a user turn
        (else dropped)?"""

    def turn_confirmed(self) -> None:
        """A deferred turn is confirmed: stop the reply for good (``speech_started`` follows)."""

    def turn_dropped(self) -> None:
        """A deferred turn was a cough or a backchannel: the reply carries on."""

    @property
    def responding(self) -> bool:
        """Whether a response is running (the idle timeout waits while one does)."""

    async def idle_turn(self, item: Item) -> None:
        """The idle timeout committed the quiet input as ``item``: answer it."""


class InputAudio:
    """Owns the input buffer, VAD and streaming recognizer of one session."""

    def __init__(
        self,
        ctx: SessionContext,
        transcriber: Transcriber,
        listener: TurnListener,
        config: Callable[[], SessionConfig],
    ) -> None:
        self.ctx = ctx
        self._listener = listener
        self._config = config
        self._queue: asyncio.Queue[Audio | Commit | Clear | InputStalled] = asyncio.Queue(
            maxsize=256
        )
        self._transcriber = transcriber
        self._recognizer = self._new_recognizer()
        self._resampler: StreamResampler | None = None
        self._resampler_rate = 0
        self._vad: StreamingVad | None = None
        self._vad_turns: TurnDetection | None = None
        self._vad_offset_ms = 0.0
        """Stream position (ms) at which the current VAD was created."""
        self._window = AudioWindow()
        """Recent 16 kHz audio: the prefix window while idle, the whole utterance in speech."""
        self._position_ms = 0.0
        self._item_id: str | None = None
        self._utterance_start_ms = 0.0
        self._speculated_at: float | None = None
        self._pause_text: str | None = None
        self._pause_probability: float | None = None
        """What is known about the current pause: its transcript and the turn model's view."""
        self._probe: asyncio.Task[None] | None = None
        self._stall_watch: asyncio.Task[None] | None = None
        self._policy = EndpointPolicy("server_vad")
        self._deferred_start: float | None = None
        """audio_start_ms of a turn whose ``speech_started`` waits for confirmation."""
        self._voiced_ms = 0.0
        self._partial_task: asyncio.Task[None] | None = None
        self._speculation: asyncio.Task[None] | None = None
        self._turn_tasks: set[asyncio.Task[None]] = set()
        self._prefix = StablePrefix()
        self._voice: TurnVoice | None = None
        """Speaker attribution of the current utterance."""
        self._voiced_checks = 0
        self._echo_checks = 0
        """Voiced chunks of the current utterance, and how many of them were echo."""
        self._announced = False
        """The listener was told this utterance started (it is not echo, and focus allows)."""
        self._focus_check: asyncio.Task[None] | None = None
        self.recording: RecordingSpool | None = None
        """When set, every 16 kHz input chunk is written to it (live meeting recording)."""
        self.segments: list[LiveSegment] = []
        """User turns transcribed while recording, with their live speaker labels."""
        self._recording_start_ms = 0.0
        self._idle_from_ms: float | None = 0.0
        """Input position (ms) since which neither speech nor a response happened;
        None once the idle timeout fired (until the next turn or response)."""
        self._turns = TurnTranscripts(ctx, listener, self._keep_live_segment)

    def _keep_live_segment(self, item: Item) -> None:
        """While recording, a user turn with words joins the live meeting's segments
        (times from the recording's start, s)."""
        if self.recording is None or item.start_ms is None:
            return
        origin = self._recording_start_ms
        self.segments.append(
            LiveSegment(
                max(0.0, (item.start_ms - origin) / 1000.0),
                max(0.0, ((item.end_ms or item.start_ms) - origin) / 1000.0),
                item.speaker,
                item.text or "",
            )
        )

    def _new_recognizer(self) -> StreamingRecognizer:
        """A recogniser per utterance, so a committed turn's final transcription goes on
        undisturbed while the next utterance starts."""
        return StreamingRecognizer(
            self._transcriber,
            partial_interval_ms=self.ctx.options.partial_interval_ms,
            language=self._config().transcription_language,
            prompt=self._config().transcription_prompt,
        )

    # --- called by the session (event loop, non-blocking) ------------------
    async def put(self, entry: Audio | Commit | Clear) -> None:
        """Queue audio or a command; waits when the queue is full (backpressure)."""
        await self._queue.put(entry)

    async def run(self) -> None:
        """Consume the queue forever; cancel to stop (safe: in-flight work is dropped)."""
        try:
            while True:
                entry = await self._queue.get()
                try:
                    if isinstance(entry, Commit):
                        try:
                            await self._commit(entry)
                        except BaseException:
                            settle(entry.done)  # nothing committed: nothing to wait for
                            raise
                    elif isinstance(entry, Clear):
                        await self._clear()
                    elif isinstance(entry, InputStalled):
                        await self._end_stalled_pause(entry.position_ms)
                    else:
                        await self._audio(entry)
                except ProtocolError as err:
                    await self.ctx.emitter.error(err)
        finally:
            await self._cancel_work()

    async def _cancel_work(self) -> None:
        tasks = [
            t
            for t in (
                self._partial_task,
                self._speculation,
                self._focus_check,
                self._probe,
                self._stall_watch,
                *self._turn_tasks,
            )
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._voice is not None:
            await self._voice.aclose()

    # --- audio -----------------------------------------------------------------
    async def _audio(self, audio: Audio) -> None:
        config = self._config()
        pcm = await asyncio.to_thread(self._to_16k, audio.samples, audio.sample_rate)
        if len(pcm) == 0:
            return
        self._position_ms += 1000.0 * len(pcm) / RATE
        self._append_buffer(pcm)
        if self.recording is not None:
            if self.recording.samples == 0:
                self._recording_start_ms = self._position_ms - 1000.0 * len(pcm) / RATE
            await self.recording.append(pcm)
        now = self.ctx.clock.now()
        echo_guard = self.ctx.echo
        if echo_guard is not None:
            echo_guard.input_audio(pcm, RATE, audio.received_at or now)
        td = config.turn_detection
        if td is None:
            self._trim_buffer(self.ctx.options.max_input_buffer_ms)
            return
        vad = await self._ensure_vad(replace(td, adaptive=self._adapts(config)))
        events = await asyncio.to_thread(vad.push, pcm)
        voiced = vad.last_probability >= td.threshold
        echo = voiced and echo_guard is not None and echo_guard.is_echo(now)
        if voiced and self._listener.may_interrupt(None):
            self._listener.voice_activity(not echo)
        elif not voiced:
            self._listener.voice_activity(False)
        in_turn = self._item_id is not None
        await self._check_idle(td)
        for event in events:
            if isinstance(event, SpeechStarted):
                await self._speech_started(event.start_ms + self._vad_offset_ms, td)
            elif isinstance(event, SpeechStopped):
                await self._speech_stopped(event.end_ms + self._vad_offset_ms)
        if self._item_id is not None:
            if in_turn:  # a turn that started in this chunk already holds it
                self._recognizer.append(pcm)
                if self._voice is not None:
                    self._voice.add(pcm)
            if voiced:
                self._voiced_checks += 1
                self._echo_checks += echo
                if not echo:  # the agent's own voice never confirms a barge-in
                    self._voiced_ms += 1000.0 * len(pcm) / RATE
            if voiced and not echo and not self._announced:
                self._announce()
            if (
                self._deferred_start is not None
                and not self._is_echo_turn()
                and self._listener.confirms_interruption("", self._voiced_ms)
            ):
                await self._confirm_deferred()
            await self._maybe_speculate(vad)
            if vad.pending_end_ms is None:  # no partial once trailing silence began:
                self._schedule_partial()  # it would delay the final transcription
            else:
                await self._maybe_end_pause(vad)
        else:
            self._trim_buffer(td.prefix_padding_ms + self.ctx.options.vad_min_speech_ms + 500)

    async def _check_idle(self, td: TurnDetection) -> None:
        """``idle_timeout_ms``: commit the quiet input and have it answered once the
        user has said nothing for that long (input audio time) since the last turn
        or response."""
        if self._item_id is not None or self._listener.responding:
            self._idle_from_ms = self._position_ms
            return
        if td.type != "server_vad" or td.idle_timeout_ms is None or self._idle_from_ms is None:
            return
        if self._position_ms - self._idle_from_ms < td.idle_timeout_ms:
            return
        start_ms, self._idle_from_ms = self._idle_from_ms, None
        item = await commit_quiet_input(self.ctx, start_ms, self._position_ms)
        self._window.clear(self._position_ms)
        await self._listener.idle_turn(item)

    def _to_16k(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if rate == RATE:
            return samples
        if self._resampler is None or self._resampler_rate != rate:
            self._resampler = StreamResampler(rate, RATE, np.int16)
            self._resampler_rate = rate
        return self._resampler.process(samples)

    @staticmethod
    def _adapts(config: SessionConfig) -> bool:
        """Whether ``server_vad`` adapts its wait to the turn: only where the agent answers
        (a realtime session creating responses); transcription sessions and the browser's
        meeting mode keep OpenAI's exact timing, so two speakers' turns never merge."""
        td = config.turn_detection
        return td is not None and td.adaptive and td.create_response and config.type == "realtime"

    async def _ensure_vad(self, td: TurnDetection) -> StreamingVad:
        """The session's VAD for ``td`` (``adaptive`` as :meth:`_adapts` decides); a new one
        is built in a worker thread (loading the Silero session takes 100-250 ms, too long
        for the event loop)."""
        if self._vad is None or self._vad_turns != td:
            options = VadOptions(
                threshold=td.threshold,
                min_speech_ms=self.ctx.options.vad_min_speech_ms,
                silence_ms=td.silence_duration_ms,
                prefix_padding_ms=td.prefix_padding_ms,
            )
            self._policy = EndpointPolicy(
                td.type,
                silence_ms=td.silence_duration_ms,
                adaptive=td.adaptive,
                eagerness=td.eagerness,
                use_model=turn_model_available() and (td.type == "semantic_vad" or td.adaptive),
            )
            options = replace(options, silence_ms=self._policy.max_wait_ms)
            classifier = await asyncio.to_thread(make_classifier, self.ctx.options.vad_backend)
            self._vad = StreamingVad(classifier, options)
            self._vad_offset_ms = self._position_ms
            self._vad_turns = td
        return self._vad

    def _append_buffer(self, pcm: np.ndarray) -> None:
        self._window.append(pcm)

    def _trim_buffer(self, keep_ms: float) -> None:
        self._window.keep_last(keep_ms)

    def _slice(self, start_ms: float, end_ms: float | None = None) -> np.ndarray:
        return self._window.slice(start_ms, end_ms)

    # --- turns -------------------------------------------------------------------
    async def _speech_started(self, start_ms: float, td: TurnDetection) -> None:
        self._item_id = self.ctx.emitter.ids.new("item")
        self._utterance_start_ms = max(self._window.start_ms, start_ms - td.prefix_padding_ms)
        self._speculated_at = None
        self._prefix = StablePrefix()
        self._recognizer = self._new_recognizer()
        self._window.drop_before(self._utterance_start_ms)
        self._recognizer.append(self._window.samples)
        self._voiced_checks = self._echo_checks = 0
        self._announced = False
        self._voiced_ms = 0.0
        speakers = self.ctx.speakers
        self._voice = None
        if speakers is not None and self._config().speakers.enabled:
            self._voice = speakers.begin()
            self._voice.add(self._window.samples.copy())
        if self._listener.defers_speech_started():
            self._deferred_start = start_ms  # told once confirmed (see _confirm_deferred)
            return
        self._deferred_start = None
        await self._emit_started(start_ms)

    async def _emit_started(self, start_ms: float) -> None:
        await self.ctx.emitter.emit(
            "input_audio_buffer.speech_started", audio_start_ms=int(start_ms), item_id=self._item_id
        )

    async def _confirm_deferred(self) -> None:
        """The deferred turn is real speech: stop the reply for good, then tell the client."""
        start_ms, self._deferred_start = self._deferred_start, None
        if start_ms is None:
            return
        self._listener.turn_confirmed()
        await self._emit_started(start_ms)

    async def _drop_turn(self) -> None:
        """Forget the current (deferred) utterance without a word to the client."""
        self._deferred_start = None
        self._item_id = None
        self._reset_pause()
        if self._focus_check is not None:
            self._focus_check.cancel()
            self._focus_check = None
        if self._partial_task is not None:
            self._partial_task.cancel()
        if self._voice is not None:
            await self._voice.aclose()
            self._voice = None
        self._recognizer = self._new_recognizer()
        if self._vad is not None:
            self._vad.detector.reset()  # more speech is a new turn, with a new onset
        self._listener.turn_dropped()

    def _expected_speaker(self) -> str | None:
        """The label the current utterance would get if it ended now (None when
        speakers are not labelled or none of it is embedded yet)."""
        if self._voice is None or self.ctx.speakers is None:
            return None
        return self.ctx.speakers.provisional_label(self._voice)

    def _is_echo_turn(self) -> bool:
        return self._voiced_checks > 0 and self._echo_checks >= 0.6 * self._voiced_checks

    def _announce(self) -> None:
        """Tell the listener speech started, unless focus must first hear who it is."""
        self._announced = True
        if self._listener.may_interrupt(None):
            self._listener.speech_started()
        elif self.ctx.speakers is not None and self._voice is not None:
            if self._focus_check is not None:
                self._focus_check.cancel()
            audio = self._slice(self._utterance_start_ms)
            self._focus_check = asyncio.create_task(self._check_focus(audio, self._item_id))

    async def _check_focus(self, audio: np.ndarray, item_id: str | None) -> None:
        """Focus mode: let the turn hold the agent only once its voice is the primary one.

        Judged on the turn's first 0.6 s of voice, then again on all of it every further
        0.4 s up to 3 s: a short stretch can sound as much like one enrolled voice as the
        other (no name given), and a single early look would then let the primary speaker
        talk over the agent unheard for the whole turn. Ends with the turn (cancelled)."""
        assert self.ctx.speakers is not None
        for judge_ms in FOCUS_JUDGE_MS:
            while len(audio) < RATE * judge_ms // 1000 and item_id == self._item_id:
                await asyncio.sleep(0.05)
                audio = self._slice(self._utterance_start_ms)
            if item_id != self._item_id:
                return
            match = await self.ctx.speakers.quick(audio)
            log.debug("focus: %d ms of voice sounds like %s", 1000 * len(audio) // RATE, match)
            if item_id != self._item_id:
                return
            if self._listener.may_interrupt(match.label if match else None):
                self._listener.speech_started()
                return

    async def _maybe_speculate(self, vad: StreamingVad) -> None:
        """Start the final transcription (and, through the listener, the LLM) as soon as
        trailing silence begins; call it off when speech resumes."""
        pending = vad.pending_end_ms
        if pending == self._speculated_at:
            return
        if pending is None and self._speculated_at is not None:  # speech resumed
            paused_at = self._speculated_at + self._vad_offset_ms
            self._recognizer.paused(
                paused_at - self._utterance_start_ms, self._position_ms - paused_at
            )
        self._speculated_at = pending
        self._reset_pause()
        if self._voice is not None:  # the voice's tail is embedded while the silence lasts
            self._voice.resume()
            if pending is not None:
                self._voice.pause()
        if self._speculation is not None:
            self._speculation.cancel()
            self._speculation = None
            await self._listener.speculation_cancelled()
        if pending is not None:
            upto_ms = pending + self._vad_offset_ms - self._utterance_start_ms
            self._recognizer.speculate(upto_ms)
            self._speculation = asyncio.create_task(
                self._speculated(self._recognizer, upto_ms, self._item_id)
            )

    async def _speculated(
        self, recognizer: StreamingRecognizer, upto_ms: float, item_id: str | None
    ) -> None:
        result = await recognizer.finalize(upto_ms)
        if item_id != self._item_id:
            return
        self._pause_text = result.text.strip()
        if self._deferred_start is not None:
            if self._is_echo_turn() or not self._listener.keeps_deferred_turn(
                self._pause_text, self._voiced_ms
            ):
                await self._drop_turn()  # a cough or an "mm-hm": let the reply go on now
            else:
                await self._confirm_deferred()  # words: an interruption
            return
        if self._pause_text and item_id is not None:
            await self._listener.speculative_transcript(
                item_id, self._pause_text, self._expected_speaker()
            )

    def _reset_pause(self) -> None:
        self._pause_text = None
        self._pause_probability = None
        for task in (self._probe, self._stall_watch):
            if task is not None:
                task.cancel()
        self._probe = self._stall_watch = None

    async def _maybe_end_pause(self, vad: StreamingVad) -> None:
        """During trailing silence: consult the turn model once, and end the turn as soon
        as the pause has lasted as long as the policy asks for what is known of it."""
        pending = vad.pending_end_ms
        if pending is None or self._item_id is None:
            return
        silence_ms = vad.classified_ms - pending
        if self._policy.use_model and self._probe is None and silence_ms >= PROBE_AFTER_MS:
            audio = self._window.slice(self._utterance_start_ms)
            self._probe = asyncio.create_task(self._run_probe(audio, self._item_id, pending))
        turn_ms = pending + self._vad_offset_ms - self._utterance_start_ms
        wait_ms = self._policy.wait_ms(self._pause_text, self._pause_probability, turn_ms)
        if wait_ms is None:  # the evidence is late (a loaded machine): not for ever
            wait_ms = self._policy.undecided_wait_ms(self._pause_text)
        if silence_ms < wait_ms:
            if (
                self._policy.mode == "server_vad"
                and silence_ms >= self._policy.silence_ms
                and self._stall_watch is None
            ):
                self._stall_watch = asyncio.create_task(self._watch_for_stall())
            return
        await self._end_pause(vad)

    async def _end_pause(self, vad: StreamingVad) -> None:
        event = vad.end_turn()
        if event is not None:
            await self._speech_stopped(event.end_ms + self._vad_offset_ms)

    async def _watch_for_stall(self) -> None:
        """Queue :class:`InputStalled` once the client's audio stops for
        :data:`STALLED_INPUT_MS`; cancelled when the pause ends either way."""
        while True:
            position = self._position_ms
            await asyncio.sleep(STALLED_INPUT_MS / 1000.0)
            if self._position_ms == position and self._queue.empty():
                self._queue.put_nowait(InputStalled(position))
                return

    async def _end_stalled_pause(self, position_ms: float) -> None:
        """The client stopped streaming in a pause that lasted ``silence_duration_ms``:
        the turn ends now (unless audio came after all, or the pause is already over)."""
        self._stall_watch = None
        vad = self._vad
        if position_ms != self._position_ms or vad is None or vad.pending_end_ms is None:
            return
        if self._item_id is not None:
            await self._end_pause(vad)

    async def _run_probe(self, audio: np.ndarray, item_id: str | None, pending: float) -> None:
        model = await shared_turn_model()
        probability = await run_on(model, model.workers, model.probability, audio)
        if item_id == self._item_id and pending == self._speculated_at:
            self._pause_probability = probability

    def _schedule_partial(self) -> None:
        if self._partial_task is None or self._partial_task.done():
            self._partial_task = asyncio.create_task(self._partial(self._item_id))

    async def _partial(self, item_id: str | None) -> None:
        text = await self._recognizer.maybe_partial()
        if text is None or item_id != self._item_id:
            return
        if self._is_echo_turn():
            return
        delta = self._prefix.update(text)
        if delta:
            extra: dict[str, object] = {}
            if self._voice is not None and self.ctx.speakers is not None:
                guess = self.ctx.speakers.provisional(self._voice)
                if guess is not None:
                    extra["speaker"] = guess.label
            await self.ctx.emitter.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
                partial=text,
                **extra,
            )
        if (
            self._deferred_start is not None
            and self._announced
            and not self._is_echo_turn()
            and self._listener.confirms_interruption(text, self._voiced_ms)
        ):
            await self._confirm_deferred()
        if self._announced and (self._focus_check is None or self._focus_check.done()):
            await self._listener.partial_transcript(text)

    async def _speech_stopped(self, end_ms: float) -> None:
        item_id = self._item_id
        if item_id is None:
            return
        if self._deferred_start is not None:
            upto = end_ms - self._utterance_start_ms
            text = (await self._recognizer.finalize(upto)).text.strip()
            if item_id != self._item_id:
                return
            if self._is_echo_turn() or not self._listener.keeps_deferred_turn(text, self._voiced_ms):
                await self._drop_turn()
                return
            await self._confirm_deferred()
        now = self.ctx.clock.now()
        latency = TurnLatency(
            speech_end=now - (self._position_ms - end_ms) / 1000.0, item_id=item_id
        )
        latency.mark("speech_stopped", now)
        await self.ctx.emitter.emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=int(end_ms), item_id=item_id
        )
        await self._commit_turn(item_id, upto_ms=end_ms - self._utterance_start_ms, latency=latency)

    async def _commit(self, command: Commit) -> None:
        if self._item_id is None:
            # Manual turn mode (or a commit outside speech): the whole buffer is the turn.
            if len(self._window) < RATE // 10:
                raise ProtocolError(
                    "buffer too small: at least 100 ms of audio must be appended before commit",
                    code="input_audio_buffer_commit_empty",
                    event_id=command.event_id,
                )
            self._item_id = self.ctx.emitter.ids.new("item")
            self._utterance_start_ms = self._window.start_ms
            self._recognizer = self._new_recognizer()
            self._recognizer.append(self._window.samples)
            if self.ctx.speakers is not None and self._config().speakers.enabled:
                self._voice = self.ctx.speakers.begin()
                self._voice.add(self._window.samples.copy())
        task = await self._commit_turn(self._item_id, upto_ms=None, latency=None)
        if command.done is not None and not command.done.done():
            done = command.done
            task.add_done_callback(lambda _: settle(done))

    async def _commit_turn(
        self, item_id: str, upto_ms: float | None, latency: TurnLatency | None
    ) -> asyncio.Task[None]:
        """Commit the current utterance as a user item and transcribe it in a task
        (returned: it ends once the turn is transcribed and handed to the listener)."""
        item = Item(id=item_id, type="message", role="user", audio=True, status="completed")
        previous = self.ctx.conversation.add(item)
        await self.ctx.emitter.emit(
            "input_audio_buffer.committed", item_id=item_id, previous_item_id=previous
        )
        await self.ctx.emitter.item_added(item, previous)
        finalize = asyncio.create_task(self._recognizer.finalize(upto_ms))
        speaker: asyncio.Task[tuple[TurnSpeakers | None, float]] | None = None
        expected = self._expected_speaker()
        if self._voice is not None and self.ctx.speakers is not None:
            speaker = asyncio.create_task(self._turns.identify(self._voice))
        item.start_ms = self._utterance_start_ms
        item.end_ms = self._position_ms if upto_ms is None else self._utterance_start_ms + upto_ms
        echo = self._is_echo_turn()
        echo_possible = self.ctx.echo is not None and self.ctx.echo.agent_recent(
            self.ctx.clock.now()
        )
        self._voice = None
        if self._focus_check is not None:
            self._focus_check.cancel()
            self._focus_check = None
        self._item_id = None
        self._speculated_at = None
        self._reset_pause()
        if self._speculation is not None:
            self._speculation.cancel()
            self._speculation = None
        self._window.clear(self._position_ms)
        if self._partial_task is not None:
            self._partial_task.cancel()
        task = asyncio.create_task(
            self._turns.publish(
                item, previous, finalize, latency, speaker, echo=echo,
                echo_possible=echo_possible, expected_speaker=expected,
            )
        )
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)
        return task

    async def transcribe_item(
        self, item: Item, previous: str | None, samples: np.ndarray, rate: int
    ) -> asyncio.Task[None]:
        """Transcribe the audio of a client-created user item (``conversation.item.create``
        with ``input_audio``): int16 at ``rate`` Hz. The transcription events and
        ``conversation.item.done`` follow from the returned task; no response is started."""
        pcm = await asyncio.to_thread(resample, samples, rate, RATE)
        recognizer = self._new_recognizer()
        recognizer.append(pcm)
        finalize = asyncio.create_task(recognizer.finalize(None))
        task = asyncio.create_task(
            self._turns.publish(item, previous, finalize, None, answer=False)
        )
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_tasks.discard)
        return task

    async def _clear(self) -> None:
        self._window.clear(self._position_ms)
        self._recognizer.reset()
        self._recognizer = self._new_recognizer()
        self._item_id = None
        self._deferred_start = None
        self._reset_pause()
        self._vad = None
        if self._voice is not None:
            await self._voice.aclose()
            self._voice = None
        await self.ctx.emitter.emit("input_audio_buffer.cleared")


def settle(future: asyncio.Future[None] | None) -> None:
    """Resolve ``future`` (if any, and not yet done) with None."""
    if future is not None and not future.done():
        future.set_result(None)
