"""Speech probabilities of a whole recording, scored in lanes side by side.

A recurrent VAD scores one 32 ms frame per call, and such a call costs mostly its
fixed overhead: an 11-minute recording is 21,000 calls, 2.7 s of one core with
Silero. A model that takes a batch (:class:`LaneModel`) scores long recordings
here in *lanes*: the recording is cut at its quietest frames into stretches of at
least :data:`LANE_S` seconds, and one call scores the next frame of every lane
(an 11-minute recording in 11 lanes: 1.8 s against 3.1 s). Each lane after the
first starts from a fresh state :data:`WARMUP_FRAMES` frames before its first frame
(those scores are dropped), so its state has heard the audio leading into it.

Exactness: a recording shorter than two lanes is scored in one lane, frame by frame
from a fresh state, which is exactly what scoring the frames one call at a time
gives. In a longer one, the first seconds of each later lane can differ from the
sequential scores: Silero's state remembers the level of the audio for tens of
seconds. With 16 s of warm-up the meeting pipeline's planning VAD found speech
differing from one stream's in 0.3 % of the speech time on the meeting bench's
recording (1.4 s of 465 s) and 0.5 % on nine AMI excerpts joined (0.7 s of 143 s;
1.6 s and 2.3 % with 4 s of warm-up). Lanes are cut at the quietest frame near
each even cut. Blocking; the caller runs it in a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from voice.vad.base import FrameProbabilities, SpeechClassifier

SAMPLE_RATE = 16000
"""Hz of the audio scored."""
LANE_S = 60.0
"""Shortest lane (s); recordings under twice this are scored in one lane."""
MAX_LANES = 16
"""Most lanes scored at once (Silero's time per call grows past this)."""
WARMUP_FRAMES = 512
"""Frames (16.4 s of 32 ms) a later lane's state hears before its first scored frame."""
CUT_SEARCH_S = 5.0
"""A lane boundary moves to the quietest frame within this many seconds (either side)."""
_STOP_EVERY = 64
"""Steps between checks of the stop event."""


class StageStopped(Exception):
    """The ``stop`` event was set while scoring."""


@runtime_checkable
class LaneModel(Protocol):
    """A VAD model that scores a batch of independent streams, one frame each."""

    model_name: str
    frame_samples: int

    def fresh_state(self, lanes: int) -> object:
        """The state of ``lanes`` streams at their start."""
        ...

    def step(self, frames: np.ndarray, state: object) -> tuple[np.ndarray, object]:
        """Scores of ``frames`` (``lanes`` x ``frame_samples`` float32, each row the next
        frame of its stream) and the state after them."""
        ...


def lane_starts(audio: np.ndarray, frame: int, frames: int) -> list[int]:
    """First frame of each lane over ``frames`` whole frames of ``audio`` (frame 0 first):
    even cuts, each moved to the frame of least energy within :data:`CUT_SEARCH_S`."""
    lane_frames = LANE_S * SAMPLE_RATE / frame
    lanes = max(1, min(MAX_LANES, int(frames // lane_frames)))
    if lanes == 1:
        return [0]
    reach = int(CUT_SEARCH_S * SAMPLE_RATE / frame)
    starts = [0]
    for lane in range(1, lanes):  # energy of the frames near each cut only (no copy of it all)
        nominal = lane * frames // lanes
        lo, hi = max(starts[-1] + 1, nominal - reach), min(frames, nominal + reach + 1)
        near = audio[lo * frame : hi * frame].reshape(hi - lo, frame)
        starts.append(lo + int(np.argmin(np.square(near).sum(axis=1))))
    return starts


def score_in_lanes(
    model: LaneModel,
    audio: np.ndarray,
    stop: threading.Event | None = None,
    progress: Callable[[float], None] = lambda fraction: None,
) -> np.ndarray:
    """``model``'s probability of every whole frame of 16 kHz float32 ``audio``
    (float32, one value per frame). ``progress(fraction)`` is called every
    :data:`_STOP_EVERY` steps. Raises :class:`StageStopped` once ``stop`` is set."""
    frame = model.frame_samples
    frames = len(audio) // frame
    if frames == 0:
        return np.zeros(0, np.float32)
    starts = lane_starts(audio, frame, frames)
    ends = [*starts[1:], frames]
    warm = [0] + [min(WARMUP_FRAMES, s) for s in starts[1:]]
    first = np.array([s - w for s, w in zip(starts, warm, strict=True)])
    length = np.array(ends) - first
    grid = audio[: frames * frame].reshape(frames, frame)
    silence = np.zeros((len(starts), frame), np.float32)
    out = np.zeros(frames, np.float32)
    state = model.fresh_state(len(starts))
    steps = int(length.max())
    for step in range(steps):
        if step % _STOP_EVERY == 0:
            if stop is not None and stop.is_set():
                raise StageStopped
            progress(step / steps)
        index = first + step
        live = step < length
        batch = np.where(live[:, None], grid[np.minimum(index, frames - 1)], silence)
        scores, state = model.step(batch, state)
        keep = live & (step >= np.array(warm))
        out[index[keep]] = scores[keep]
    return out


def score_signal(
    classifier: SpeechClassifier,
    audio: np.ndarray,
    stop: threading.Event | None = None,
    progress: Callable[[float], None] = lambda fraction: None,
) -> FrameProbabilities:
    """``classifier``'s probability of every whole frame of 16 kHz ``audio``, from a fresh
    state: in lanes when it is a :class:`LaneModel`, else frame by frame (the classifier is
    reset before and after). Blocking; ``progress(fraction)`` now and then; raises
    :class:`StageStopped` once ``stop`` is set."""
    name = getattr(classifier, "model_name", type(classifier).__name__)
    size = classifier.frame_samples
    if isinstance(classifier, LaneModel):
        return FrameProbabilities(name, size, score_in_lanes(classifier, audio, stop, progress))
    classifier.reset()
    values = np.zeros(len(audio) // size, np.float32)
    for i in range(len(values)):
        if i % (_STOP_EVERY * 16) == 0:
            if stop is not None and stop.is_set():
                raise StageStopped
            progress(i / len(values))
        values[i] = classifier.probability(audio[i * size : (i + 1) * size])
    classifier.reset()
    return FrameProbabilities(name, size, values)
