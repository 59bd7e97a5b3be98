"""Turn detection: speech probabilities in, speech started/stopped events out.

A pure state machine (no audio, no model, no clock): the caller passes each
frame's probability with its position in the stream, in ms.
"""

from __future__ import annotations

from collections.abc import Iterable

from voice.vad.base import SpeechStarted, SpeechStopped, VadOptions

_EPS_MS = 1e-6  # absorbs float error in summed frame times


class TurnDetector:
    """Debounces per-frame speech probabilities into turns.

    Outside speech, a run of frames at or above ``threshold`` (continuing while
    they stay at or above the lower ``stay_threshold``) starts speech once it
    has lasted ``min_speech_ms``; the event carries the run's first frame's
    start. In speech, frames below ``stay_threshold`` for ``silence_ms`` end it;
    the event carries the time that silence began.
    """

    def __init__(self, options: VadOptions | None = None) -> None:
        self.options = options or VadOptions()
        self._in_speech = False
        self._onset_ms: float | None = None
        self._silence_ms: float | None = None

    @property
    def in_speech(self) -> bool:
        """True between a SpeechStarted and the next SpeechStopped."""
        return self._in_speech

    @property
    def pending_end_ms(self) -> float | None:
        """In speech: when the current run of silence began (ms), None while voiced.

        Lets a consumer start work speculatively before ``silence_ms`` confirms the end.
        """
        return self._silence_ms if self._in_speech else None

    def end_turn(self) -> SpeechStopped | None:
        """End speech now, during trailing silence (an end-of-turn decision made outside,
        e.g. by a turn model); the event carries when that silence began. None (and no
        change) while voiced or outside speech."""
        if not self._in_speech or self._silence_ms is None:
            return None
        end_ms = self._silence_ms
        self.reset()
        return SpeechStopped(end_ms)

    def reset(self) -> None:
        """Back to silence, forgetting any partial run."""
        self._in_speech = False
        self._onset_ms = None
        self._silence_ms = None

    def update(
        self, probability: float, frame_start_ms: float, frame_ms: float
    ) -> SpeechStarted | SpeechStopped | None:
        """Feed one frame's speech probability; returns the event it completes, if any."""
        frame_end_ms = frame_start_ms + frame_ms
        opts = self.options
        if not self._in_speech:
            if self._onset_ms is None:
                if probability < opts.threshold:
                    return None
                self._onset_ms = frame_start_ms
            elif probability < opts.stay_threshold:
                self._onset_ms = None  # too short: a click or a breath
                return None
            if frame_end_ms - self._onset_ms < opts.min_speech_ms - _EPS_MS:
                return None
            self._in_speech = True
            self._silence_ms = None
            return SpeechStarted(self._onset_ms)

        if probability >= opts.stay_threshold:
            self._silence_ms = None
            return None
        if self._silence_ms is None:
            self._silence_ms = frame_start_ms
        if frame_end_ms - self._silence_ms < opts.silence_ms - _EPS_MS:
            return None
        end_ms = self._silence_ms
        self.reset()
        return SpeechStopped(end_ms)


def regions_of(
    probabilities: Iterable[float], frame_ms: float, options: VadOptions, end_ms: float
) -> list[tuple[float, float]]:
    """Speech regions ``(start_ms, end_ms)`` that a :class:`TurnDetector` with ``options``
    finds in per-frame ``probabilities`` (frame ``i`` starts at ``i * frame_ms``), in
    order. Speech still going at the last frame is closed where its trailing silence
    began, else at ``end_ms`` (the signal's end)."""
    detector = TurnDetector(options)
    regions: list[tuple[float, float]] = []
    start: float | None = None
    for i, probability in enumerate(probabilities):
        event = detector.update(float(probability), i * frame_ms, frame_ms)
        if isinstance(event, SpeechStarted):
            start = event.start_ms
        elif isinstance(event, SpeechStopped) and start is not None:
            regions.append((start, event.end_ms))
            start = None
    if start is not None:
        pending = detector.pending_end_ms
        regions.append((start, pending if pending is not None else end_ms))
    return regions
