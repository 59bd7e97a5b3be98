"""Finals before partials in the process CPU budget: while the cores are busy a live
partial is skipped (it never queues), and a partial inference already queued gives way
to another session's final that was queued later (real Whisper tiny.en on real speech,
the real gate)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import load_clip
from tests.polling import wait_for
from voice import cpu_budget, workers
from voice.cpu_budget import LIVE_AUX, REALTIME
from voice.stt import WhisperTranscriber
from voice.stt.base import Transcriber, transcribe_async
from voice.stt.streaming import StreamingRecognizer
from voice.stt.timed import TimedTranscriber
from voice.stt.whisper import WhisperOptions

CLIP = "speechbrain/spk1_snt1.wav"


@pytest.fixture(scope="module")
def live_model(tmp_path_factory: pytest.TempPathFactory) -> WhisperTranscriber:
    """tiny.en as the server runs it for live sessions: two inferences may run at once."""
    return WhisperTranscriber(
        WhisperOptions("tiny.en", tmp_path_factory.mktemp("stt-cache"), cpu_threads=1,
                       num_workers=2)
    )


@contextlib.contextmanager
def cores_held(slots: int, model: Transcriber) -> Iterator[threading.Event]:
    """The process gate sized to ``slots`` with ``model`` gated in it and one core held
    by another session's live call (a thread) until the yielded event is set; the gate's
    size is restored after."""
    gate = cpu_budget.process_slots
    previous = gate.slots
    gate.resize(slots)
    workers.assign(model, 1, REALTIME)
    busy, release = threading.Event(), threading.Event()

    def other_sessions_call() -> None:  # e.g. a final or a TTS sentence
        with gate.hold(1, REALTIME):
            busy.set()
            release.wait(30)

    holder = threading.Thread(target=other_sessions_call)
    holder.start()
    try:
        assert busy.wait(5)
        yield release
    finally:
        release.set()
        holder.join(5)
        gate.resize(previous)


async def test_a_final_goes_before_an_earlier_partial(live_model: WhisperTranscriber) -> None:
    gate = cpu_budget.process_slots
    with cores_held(1, live_model) as release:
        speech = load_clip(CLIP)
        finished = StreamingRecognizer(live_model)
        finished.append(speech)
        order: list[str] = []

        async def partial() -> None:  # a partial that reached the gate before it filled up
            assert (await transcribe_async(live_model, speech, priority=LIVE_AUX)).text.strip()
            order.append("partial")

        async def final() -> None:
            assert (await finished.finalize()).text.strip()
            order.append("final")

        first = asyncio.create_task(partial())
        await wait_for(lambda: gate.waiting == 1)  # the partial waits for the cores
        second = asyncio.create_task(final())
        await wait_for(lambda: gate.waiting == 2)  # then the final, queued after it
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), 120)
        assert order == ["final", "partial"]


async def test_a_final_reaches_the_cores_while_partials_fill_the_models_workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two sessions' partials take both of the model's workers; a third session's final
    still gets the next free core (a gated model's pool has a spare thread)."""
    model = WhisperTranscriber(
        WhisperOptions("tiny.en", tmp_path_factory.mktemp("stt-cache"), cpu_threads=1,
                       num_workers=2)
    )
    gate = cpu_budget.process_slots
    with cores_held(1, model) as release:
        speech = load_clip(CLIP)
        c = StreamingRecognizer(model)
        order: list[str] = []

        async def partial(label: str) -> None:  # partials that reached the gate before it filled
            assert (await transcribe_async(model, speech, priority=LIVE_AUX)).text.strip()
            order.append(label)

        async def final() -> None:
            c.append(speech)
            assert (await c.finalize()).text.strip()
            order.append("final")

        tasks = [asyncio.create_task(partial("partial a"))]
        await wait_for(lambda: gate.waiting == 1)
        tasks.append(asyncio.create_task(partial("partial b")))
        await wait_for(lambda: gate.waiting == 2)
        tasks.append(asyncio.create_task(final()))
        await wait_for(lambda: gate.waiting == 3)  # the final is in the gate's queue too
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
        assert order[0] == "final", order


async def test_a_partial_is_skipped_while_the_cores_are_busy(live_model: WhisperTranscriber) -> None:
    """With another session's final holding one of two cores (the other kept for urgent
    work), a due partial is not queued: ``maybe_partial`` gives None at once without
    touching the model; once the cores are free the same partial runs and has words."""
    gate = cpu_budget.process_slots
    with cores_held(2, live_model) as release:
        talking = StreamingRecognizer(live_model)
        talking.append(load_clip(CLIP))
        assert await talking.maybe_partial() is None
        assert workers.queued(live_model) == 0 and gate.waiting == 0
        release.set()
        await wait_for(lambda: gate.busy == 0)
        text = await asyncio.wait_for(talking.maybe_partial(), 120)
        assert text and "dog" in text.lower()


async def test_a_superseded_final_never_runs_if_it_was_still_waiting(
    live_model: WhisperTranscriber,
) -> None:
    """A speculative final queued for busy cores, then superseded (the speaker went on),
    gives its place up: once the cores are free only the final of the whole utterance
    is computed (one Whisper run, not two)."""
    runs: list[float] = []
    timed = TimedTranscriber(live_model, lambda audio_s, _: runs.append(audio_s))
    gate = cpu_budget.process_slots
    speech = load_clip(CLIP)
    half = len(speech) // 2
    with cores_held(1, timed) as release:
        rec = StreamingRecognizer(timed)
        rec.append(speech[:half])
        rec.speculate()  # a pause: the final of the first half waits for the cores
        await wait_for(lambda: gate.waiting == 1)
        rec.append(speech[half:])  # speech went on
        final = asyncio.create_task(rec.finalize())
        await asyncio.sleep(0.1)
        release.set()
        text = (await asyncio.wait_for(final, 120)).text.lower()
    assert "dog" in text and "child" in text
    assert runs == [len(speech) / 16000]
