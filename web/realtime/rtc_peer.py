"""One WebRTC call: an aiortc peer connection carrying a realtime session.

A :class:`RtcCall` answers the caller's SDP offer, plays agent audio on an
outgoing track, pumps the caller's audio into the session and relays protocol
events over the ``oai-events`` data channel (client events in, session events
out, queued until the channel opens; one writer). The :class:`CallRegistry`
owns every call's lifetime task: a call ends on hang-up (connection failed or
closed, or the hang-up route), when one of its tasks fails, when it does not
connect in time, or at app shutdown, and its tasks are always awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from pipelines.realtime.audio_out import FrameQueue
from pipelines.realtime.emitter import Send
from pipelines.realtime.session import RealtimeSession
from web.realtime.client_events import handle_client_event
from web.realtime.rtc_ice import IceOptions, ice_configuration, use_host_addresses
from web.realtime.rtc_tracks import AgentAudioTrack, pump_input

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "oai-events"
CONNECT_TIMEOUT_S = 30.0
"""A call whose peer connection is not up this long after the answer is dropped."""
CLOSE_TIMEOUT_S = 5.0
LAST_EVENT_S = 0.3


class OfferError(ValueError):
    """The caller's SDP offer cannot be answered; the message says why (HTTP 400)."""


class RtcCall:
    """A peer connection and the session it carries. Create, then :meth:`start`."""

    def __init__(
        self,
        ice: IceOptions,
        *,
        owner: str | None = None,
        max_s: float | None = None,
        expired_event: dict[str, Any] | None = None,
    ) -> None:
        """``owner``: the key that placed the call (only it may hang up). After ``max_s``
        seconds the call ends, sending ``expired_event`` first."""
        self.id = "rtc_" + secrets.token_hex(12)
        self.owner = owner
        self._ice = ice
        self._max_s = max_s
        self._expired_event = expired_event
        self._last_event: dict[str, Any] | None = None
        self.pc: RTCPeerConnection | None = None
        self.session: RealtimeSession | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=2048)
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=256)
        self._channel: RTCDataChannel | None = None
        self._channel_open = asyncio.Event()
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    async def send(self, event: dict[str, Any]) -> None:
        """The session's ``send``: queue an event for the data channel (waits when full)
        and hand it to every attached listener (sideband WebSockets).

        Events emitted once the call is ending are dropped (nobody will write them).
        """
        if not self._ended.is_set():
            for listener in list(self._listeners):
                listener(event)
            await self._outbox.put(event)

    def attach(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Also give every session event to ``listener`` (must not block); returns the
        function that detaches it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def ended(self) -> None:
        """Wait until the call ends. Safe to cancel."""
        await self._ended.wait()

    async def start(self, offer_sdp: str, make_session: Callable[[Send], RealtimeSession]) -> str:
        """Answer ``offer_sdp`` and start the session; returns the answer SDP.

        Raises :class:`OfferError` for an offer that cannot be answered (the call is
        then already shut down). Cancelling it shuts the call down too.
        """
        try:
            return await self._start(offer_sdp, make_session)
        except BaseException:
            await self.shutdown()
            raise

    async def _start(self, offer_sdp: str, make_session: Callable[[Send], RealtimeSession]) -> str:
        use_host_addresses(self._ice.host_addresses)
        self.pc = pc = RTCPeerConnection(ice_configuration(self._ice.ice_servers))
        pc.on("datachannel", self._on_datachannel)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        self.session = session = make_session(self.send)
        queue = FrameQueue(
            sample_rate=48000, frame_ms=20, lead_ms=int(session.options.output_lead_ms)
        )
        session.ctx.audio_output = queue
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise OfferError(f"the SDP offer could not be parsed: {exc}") from exc
        if not any(t.kind == "audio" for t in pc.getTransceivers()):
            raise OfferError("the SDP offer has no audio section")
        pc.addTrack(AgentAudioTrack(queue))
        await session.start()
        self._spawn(self._write_events(), "writer")
        self._spawn(self._read_events(session), "reader")
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    def hang_up(self) -> None:
        """Ask :meth:`serve` to end the call (returns at once)."""
        self._ended.set()

    def end(self, event: dict[str, Any] | None) -> None:
        """End the call, sending ``event`` (an ``error``) as the last word (returns at once)."""
        if not self._ended.is_set() and self._last_event is None:
            self._last_event = event
        self.hang_up()

    async def serve(self) -> None:
        """Wait until the call ends, then shut it down. Cancel to end it (safe)."""
        loop = asyncio.get_running_loop()
        timers = [loop.call_later(CONNECT_TIMEOUT_S, self._connect_deadline)]
        if self._max_s is not None:
            timers.append(loop.call_later(self._max_s, self.end, self._expired_event))
        try:
            await self._ended.wait()
        finally:
            for timer in timers:
                timer.cancel()
            await self.shutdown()

    def _connect_deadline(self) -> None:
        if not self._connected.is_set():
            log.warning("call %s did not connect in %.0f s", self.id, CONNECT_TIMEOUT_S)
            self.hang_up()

    async def shutdown(self) -> None:
        """Stop the input pump, close the session, stop the event tasks, close the peer.

        Safe to call twice; waits for everything it stops (each step bounded in time).
        """
        self._ended.set()
        for task in self._tasks:
            task.cancel()
        await self._send_last_event()
        if self.session is not None:
            await self.session.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, CLOSE_TIMEOUT_S)
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        log.info("call %s closed", self.id)

    async def _send_last_event(self) -> None:
        """Send the ending's event straight on the data channel and give it
        :data:`LAST_EVENT_S` to leave before the peer closes (an SCTP abort drops
        what is still queued)."""
        event, self._last_event = self._last_event, None
        channel = self._channel
        if event is None or channel is None or channel.readyState != "open":
            return
        with contextlib.suppress(Exception):
            channel.send(json.dumps(event, separators=(",", ":")))
            await asyncio.sleep(LAST_EVENT_S)

    # --- peer events (callbacks from aiortc, on the event loop) -----------------
    def _on_connection_state(self) -> None:
        state = self.pc.connectionState if self.pc is not None else "closed"
        log.info("call %s: connection %s", self.id, state)
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self._connected.set()
            self.hang_up()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.session is not None and not self._ended.is_set():
            self._spawn(pump_input(track, self.session.feed_audio), "audio-in")

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            log.info("call %s: ignoring data channel %r", self.id, channel.label)
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self._channel_open.set)
        if channel.readyState == "open":
            self._channel_open.set()

    def _on_message(self, message: str | bytes) -> None:
        try:
            self._inbox.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("call %s: client events arrive faster than handled; one dropped", self.id)

    # --- tasks ---------------------------------------------------------------------
    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=f"{name}-{self.id}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("call %s: %s failed", self.id, task.get_name(), exc_info=task.exception())
            self.hang_up()

    async def _read_events(self, session: RealtimeSession) -> None:
        """Hand client events to the session in arrival order. Runs until cancelled."""
        while True:
            await handle_client_event(session, await self._inbox.get())

    async def _write_events(self) -> None:
        """The single writer: session events as JSON text, once the channel is open.

        Events emitted while the channel is closing are dropped. Runs until cancelled.
        """
        while True:
            event = await self._outbox.get()
            await self._channel_open.wait()
            channel = self._channel
            if channel is not None and channel.readyState == "open":
                channel.send(json.dumps(event, separators=(",", ":")))


class CallRegistry:
    """The calls of one app, each served by a task this registry owns."""

    def __init__(self) -> None:
        self._calls: dict[str, tuple[RtcCall, asyncio.Task[None]]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def ids(self) -> list[str]:
        """Ids of the calls in progress."""
        return list(self._calls)

    def get(self, call_id: str) -> RtcCall | None:
        entry = self._calls.get(call_id)
        return entry[0] if entry is not None else None

    async def open(
        self,
        call: RtcCall,
        offer_sdp: str,
        make_session: Callable[[Send], RealtimeSession],
        on_end: Callable[[], None] = lambda: None,
    ) -> str:
        """Start ``call`` and serve it until it ends; returns the answer SDP.
        ``on_end`` runs once the call is over (also when it fails to start)."""
        try:
            answer = await call.start(offer_sdp, make_session)
        except BaseException:
            on_end()
            raise
        task = asyncio.create_task(call.serve(), name=f"serve-{call.id}")
        self._calls[call.id] = (call, task)

        def done(_: asyncio.Task[None]) -> None:
            self._calls.pop(call.id, None)
            on_end()

        task.add_done_callback(done)
        return answer

    async def hang_up(self, call_id: str) -> bool:
        """End a call and wait until it is shut down; False if there is no such call."""
        entry = self._calls.get(call_id)
        if entry is None:
            return False
        entry[0].hang_up()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.shield(entry[1])
        return True

    async def close_all(self) -> None:
        """End every call (app shutdown) and wait for their tasks."""
        entries = list(self._calls.values())
        for call, _ in entries:
            call.hang_up()
        for _, task in entries:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2 * CLOSE_TIMEOUT_S + 5)
