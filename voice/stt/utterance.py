"""One short utterance through Whisper with a shortened encoder window.

Whisper pads every input to a 30 s window, and on a CPU the encoder pass over that
padding is most of the cost of a live turn (tiny.en on 1 thread: 480 ms for the 30 s
window against 65 ms for 10 s). Here the window is the utterance plus
:data:`PAD_FRAMES` of silence: the decoder still sees the speech end in silence, which
keeps it from repeating itself (with 1-5 s of padding tiny.en looped on 1 to 9 of 20
reference clips; with 7-10 s on none, at the 30 s window's WER). Greedy, text only, no
timestamps: what a live turn needs. A result that loops or is guesswork anyway is
left to the caller to decode the usual way (:func:`decode_utterance` returns None).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

PAD_FRAMES = 1000
"""Silence appended to the utterance in the encoder window (10 ms frames: 10 s)."""
WINDOW_FRAMES = 3000
"""Whisper's full window (30 s): the longest input here."""
MAX_UTTERANCE_S = 20.0
"""Longer utterances (s) gain little from a shorter window: decoded the usual way."""
TOKENS_PER_S = 10
"""Generous text rate bound (tokens per second of audio; speech runs at 3-5)."""


@dataclass(frozen=True, slots=True)
class UtteranceText:
    """The decoded text with Whisper's statistics: ``tokens`` (ids), ``avg_logprob``
    (nats per token), ``compression_ratio`` (text length over its zlib length) and
    ``no_speech_prob`` (in [0, 1])."""

    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    complete: bool
    """False when the text ran into the length bound (a loop, or far more words than
    the audio can hold)."""


def decode_utterance(
    model: WhisperModel,
    audio: np.ndarray,
    *,
    language: str,
    prompt: str | None = None,
) -> UtteranceText | None:
    """Greedy text of mono 16 kHz float32 ``audio`` (at most :data:`MAX_UTTERANCE_S`),
    decoded over the utterance plus :data:`PAD_FRAMES`; None when the audio is empty or too
    long for that to help. Blocking (a worker thread)."""
    if len(audio) > MAX_UTTERANCE_S * model.feature_extractor.sampling_rate or len(audio) == 0:
        return None
    features = model.feature_extractor(audio)
    frames = min(WINDOW_FRAMES, features.shape[-1] + PAD_FRAMES)
    window = np.zeros((features.shape[0], frames), dtype=np.float32)
    used = min(frames, features.shape[-1])
    window[:, :used] = features[:, :used]
    tokenizer = Tokenizer(
        model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
    )
    previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
    rate = model.feature_extractor.sampling_rate
    start = model.get_prompt(tokenizer, previous, without_timestamps=True)
    # CTranslate2 counts the prompt in the length: the text's own bound comes on top
    budget = 8 + int(TOKENS_PER_S * len(audio) / rate)
    max_length = min(model.max_length, len(start) + budget)
    result = model.model.generate(
        model.encode(window),
        [start],
        beam_size=1,
        max_length=max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
    )[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    text = tokenizer.decode(tokens).strip()
    encoded = text.encode("utf-8")
    return UtteranceText(
        text=text,
        tokens=tuple(tokens),
        avg_logprob=float(result.scores[0]) * len(tokens) / (len(tokens) + 1),
        compression_ratio=len(encoded) / len(zlib.compress(encoded)) if encoded else 0.0,
        no_speech_prob=float(result.no_speech_prob),
        complete=len(result.sequences_ids[0]) < max_length - len(start),
    )
