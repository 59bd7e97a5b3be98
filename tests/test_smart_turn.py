"""The Smart-Turn v3.2 end-of-turn model on real speech: loaded from the pipecat-ai wheel,
features computed without torch, probabilities that tell a finished sentence from a pause
inside one."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_clip
from voice.vad import make_classifier, speech_regions
from voice.vad.smart_turn import WINDOW_SAMPLES, SmartTurnModel, find_smart_turn_model

RATE = 16000


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    return SmartTurnModel()


def _pauses_ms(samples: np.ndarray) -> list[float]:
    """Where each speech region of the clip ends (ms), by the project's own VAD."""
    return [end for _, end in speech_regions(samples, make_classifier("silero"))]


def test_the_model_ships_in_the_pipecat_wheel() -> None:
    path = find_smart_turn_model()
    assert path.name == "smart-turn-v3.2-cpu.onnx"
    assert "pipecat" in path.parts


def test_features_cover_the_last_eight_seconds(model: SmartTurnModel) -> None:
    clip = load_clip("lhotse/2412-153948-0000.wav")  # 11.7 s
    assert len(clip) > WINDOW_SAMPLES
    whole = model.features(clip)
    assert whole.shape == (80, 800) and whole.dtype == np.float32
    # Only the last 8 s count: cutting the start off changes nothing.
    np.testing.assert_allclose(model.features(clip[-WINDOW_SAMPLES:]), whole, atol=1e-5)
    # int16 input is read as PCM.
    pcm = (clip * 32768).astype(np.int16)
    np.testing.assert_allclose(model.features(pcm), whole, atol=1e-3)
    # A short clip is padded at the front: its last frames are speech, its first silence.
    short = model.features(load_clip("speechbrain/spk1_snt1.wav"))
    assert short[:, :100].std() < 1e-3 < short[:, -100:].std()


def test_a_pause_inside_a_sentence_scores_below_its_end(model: SmartTurnModel) -> None:
    clip = load_clip("openai-whisper/jfk.wav")
    ends = _pauses_ms(clip)
    assert len(ends) >= 3  # "And so my fellow Americans | ask not | what your country ..."
    scores = [model.probability(clip[: int(end * RATE / 1000)]) for end in ends]
    final = scores[-1]
    assert final >= 0.5, scores
    # After "ask not" the speaker is plainly not done.
    assert min(scores[1:-1]) < 0.2 < final, scores
    assert min(scores) >= 0.0 and max(scores) <= 1.0


def test_the_end_of_a_read_paragraph_is_a_finished_turn(model: SmartTurnModel) -> None:
    clip = load_clip("picovoice-leopard/test.wav")
    end = _pauses_ms(clip)[-1]
    assert model.probability(clip[: int(end * RATE / 1000)]) > 0.8
