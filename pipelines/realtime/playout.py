"""Pacing of outgoing agent audio and the server's record of what was heard.

The client is sent audio no faster than real time plus ``lead_ms``: that bounds
how long sound outlives an interruption, even for a client that cannot clear
its buffer, and lets the server estimate how much the listener has heard.
"""

from __future__ import annotations

from pipelines.clock import Clock


class AudioPacer:
    """Meters one item's audio. Times in ms of audio; clock in seconds.

    Call :meth:`wait_to_send` before sending each chunk, then :meth:`sent`.
    Pausing (barge-in hold) stops the listener's playback estimate from running
    ahead while nothing is being sent, once the client's lead has drained.
    """

    def __init__(self, clock: Clock, lead_ms: float = 250.0) -> None:
        self._clock = clock
        self.lead_ms = lead_ms
        self.sent_ms = 0.0
        self._origin: float | None = None
        """Clock time at which audio position 0 would have started playing."""

    def played_ms(self) -> float:
        """Audio the listener has heard by now: real time since start, capped at what was sent."""
        if self._origin is None:
            return 0.0
        return max(0.0, min(self.sent_ms, 1000.0 * (self._clock.now() - self._origin)))

    async def wait_to_send(self, duration_ms: float) -> None:
        """Sleep until sending ``duration_ms`` more keeps the client's lead within bounds.

        Safe to cancel: nothing is recorded until :meth:`sent`.
        """
        now = self._clock.now()
        if self._origin is None or self.played_ms() >= self.sent_ms:
            # Playback has caught up (start, or an underrun): restart the clock so that
            # the time nothing was playing does not count as heard.
            self._origin = now - self.sent_ms / 1000.0
            return
        ahead_ms = self.sent_ms + duration_ms - 1000.0 * (now - self._origin)
        if ahead_ms > self.lead_ms:
            await self._clock.sleep((ahead_ms - self.lead_ms) / 1000.0)

    def sent(self, duration_ms: float) -> None:
        self.sent_ms += duration_ms
