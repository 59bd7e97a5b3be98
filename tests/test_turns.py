"""Turn-taking logic without sockets or models: the end-of-turn policy for
``server_vad`` (adaptive) and ``semantic_vad`` (eagerness), the detector's early
end, and the amortised input window."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.realtime.input_window import AudioWindow
from voice.vad import SpeechStarted, SpeechStopped, TurnDetector, VadOptions
from voice.vad.endpoint import LONG_TURN_MS, EndpointPolicy, text_verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("What's the weather like?", "complete"),
        ("Turn off the lights in the kitchen.", "complete"),
        ("And so my fellow Americans,", "incomplete"),
        ("And so am I fellow America.", "incomplete"),  # tiny.en's reading of the preamble
        ("I would like to order a pizza with", "incomplete"),
        ("Ask not what your country can do for you, and", "incomplete"),
        ("", None),
    ],
)
def test_text_verdict(text: str, verdict: str | None) -> None:
    assert text_verdict(text) == verdict


def test_server_vad_waits_less_after_a_sentence_and_longer_mid_clause() -> None:
    policy = EndpointPolicy("server_vad", silence_ms=500, adaptive=True)
    complete = policy.wait_ms("Turn off the lights in the kitchen.", None)
    unsure = policy.wait_ms("turn off the lights", None)
    mid_clause = policy.wait_ms("And so my fellow Americans,", None)
    assert complete is not None and unsure is not None and mid_clause is not None
    assert complete < 500 == unsure < mid_clause
    assert mid_clause > 1100  # longer than the pauses inside jfk.wav's sentence
    assert mid_clause == policy.max_wait_ms
    # Until the transcript of the pause is in, the policy cannot decide.
    assert policy.wait_ms(None, None) is None
    # The turn model, when used, overrides a full stop that Whisper put mid-sentence.
    with_model = EndpointPolicy("server_vad", silence_ms=500, adaptive=True, use_model=True)
    assert with_model.wait_ms("Ask not what your country can do for you.", None) is None
    assert with_model.wait_ms("And so my fellow Americans,", None) == mid_clause  # text suffices
    # A late model holds a finished sentence no longer than a doubted one; a sentence
    # with no ending waits for it (jfk.wav's "... ask not" pause is 1.5 s).
    assert with_model.undecided_wait_ms("Turn off the lights.") == 800 < mid_clause
    assert with_model.undecided_wait_ms("And so my fellow Americans ask not") == mid_clause
    # Whisper's full stop against the model's "not done": unsure, waited longer than usual
    # (jfk.wav pauses 544 ms after "for you.").
    unsure_wait = with_model.wait_ms("Ask not what your country can do for you.", 0.03)
    assert unsure_wait is not None and 600 < unsure_wait < mid_clause
    assert with_model.wait_ms("ask not", 0.01) == mid_clause
    assert with_model.wait_ms("What's the weather like?", 0.02) == complete  # a question
    assert with_model.wait_ms("Turn off the lights in the kitchen.", 0.95) == complete


def test_server_vad_does_not_take_a_sentence_that_ends_a_long_turn_for_its_end() -> None:
    """lhotse/2412-153948-0000.wav pauses 672 ms after its first sentence, 7.2 s in."""
    policy = EndpointPolicy("server_vad", silence_ms=500, adaptive=True, use_model=True)
    first = "If the reader will excuse me, I will say nothing of my antecedents nor of the " \
        "circumstances which led me to leave my native country."
    quick = policy.wait_ms(first, 0.95, turn_ms=LONG_TURN_MS - 1)
    held = policy.wait_ms(first, 0.95, turn_ms=LONG_TURN_MS)
    assert quick == 300
    assert held == policy.wait_ms(first, 0.03) == 800 > 672  # as if the model doubted it
    # A question still gets its quick answer; mid-clause waits as long as ever.
    assert policy.wait_ms("So what do you think?", 0.95, turn_ms=9000) == quick
    assert policy.wait_ms("And so my fellow Americans,", None, turn_ms=9000) == policy.max_wait_ms
    # OpenAI's exact timing knows nothing of it.
    exact = EndpointPolicy("server_vad", silence_ms=500, adaptive=False, use_model=True)
    assert exact.wait_ms(first, 0.95, turn_ms=9000) == 500


def test_server_vad_without_adaptation_is_exactly_openais() -> None:
    policy = EndpointPolicy("server_vad", silence_ms=500, adaptive=False, use_model=True)
    assert policy.max_wait_ms == 500
    for text in (None, "And so my fellow Americans,", "Turn it off."):
        assert policy.wait_ms(text, None) == 500


def test_semantic_vad_eagerness_orders_the_waits() -> None:
    def waits(text: str, probability: float) -> list[float]:
        out = []
        for eagerness in ("high", "medium", "low"):
            wait = EndpointPolicy("semantic_vad", eagerness=eagerness, use_model=True).wait_ms(
                text, probability
            )
            assert wait is not None
            out.append(wait)
        return out

    finished = waits("Turn off the lights in the kitchen.", 0.97)
    # Whisper's full stop against the model's "not finished": unsure, a middle wait.
    unsure = waits("Ask not what your country can do for you.", 0.03)
    unfinished = waits("ask not", 0.01)
    assert finished[0] < finished[1] < finished[2]
    assert unfinished == [2000, 4000, 8000]  # OpenAI's maximum timeouts
    for f, u, n in zip(finished, unsure, unfinished, strict=True):
        assert f < u < n
    assert unsure[1] > 1100  # waits through jfk.wav's pauses
    auto = EndpointPolicy("semantic_vad", eagerness="auto", use_model=True)
    medium = EndpointPolicy("semantic_vad", eagerness="medium", use_model=True)
    assert auto.wait_ms("Okay.", 0.9) == medium.wait_ms("Okay.", 0.9)
    # A transcript that stops mid-clause needs no model to wait long.
    assert medium.wait_ms("And so my fellow Americans,", None) == 4000
    assert medium.wait_ms("Turn it off.", None) is None


def test_detector_ends_a_turn_early_only_during_trailing_silence() -> None:
    detector = TurnDetector(VadOptions(min_speech_ms=64, silence_ms=4000))
    events = [detector.update(p, 32.0 * i, 32.0) for i, p in enumerate([0.9, 0.9, 0.9])]
    assert events[1] == SpeechStarted(0.0)
    assert detector.end_turn() is None  # still voiced
    assert detector.update(0.1, 96.0, 32.0) is None
    assert detector.update(0.1, 128.0, 32.0) is None
    assert detector.end_turn() == SpeechStopped(96.0)
    assert not detector.in_speech and detector.end_turn() is None


def test_audio_window_appends_in_amortised_time_and_slices_by_stream_time() -> None:
    window = AudioWindow()
    chunk = np.arange(640, dtype=np.int16)  # 40 ms
    capacities = set()
    for _ in range(1500):  # one minute
        window.append(chunk)
        capacities.add(len(window._data))
    assert len(window) == 1500 * 640
    assert len(capacities) <= 8  # storage doubled a few times, not once per chunk
    assert np.array_equal(window.slice(40.0, 80.0), chunk)
    window.drop_before(30000.0)
    assert window.start_ms == 30000.0 and len(window) == 750 * 640
    window.keep_last(100.0)
    assert len(window) == 1600 and window.start_ms == 60000.0 - 100.0
    assert np.array_equal(window.slice(59960.0), chunk)
    before = len(window._data)
    for _ in range(100):  # trims keep the storage bounded: the dead head is reused
        window.append(chunk)
        window.keep_last(100.0)
    assert len(window._data) == before
    window.clear(61000.0)
    assert len(window) == 0 and window.start_ms == 61000.0
