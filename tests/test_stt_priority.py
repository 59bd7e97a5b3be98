"""Finals before partials in the process CPU budget: when the cores are busy, a
session's final transcription goes ahead of another session's partial that was
queued earlier (real Whisper tiny.en on real speech, the real gate)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from tests.conftest import load_clip
from voice import cpu_budget, workers
from voice.cpu_budget import REALTIME
from voice.stt import WhisperTranscriber
from voice.stt.streaming import StreamingRecognizer
from voice.stt.whisper import WhisperOptions

CLIP = "speechbrain/spk1_snt1.wav"


@pytest.fixture(scope="module")
def live_model(tmp_path_factory: pytest.TempPathFactory) -> WhisperTranscriber:
    """tiny.en as the server runs it for live sessions: two inferences may run at once."""
    return WhisperTranscriber(
        WhisperOptions("tiny.en", tmp_path_factory.mktemp("stt-cache"), cpu_threads=1,
                       num_workers=2)
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Poll ``predicate`` (a state of the gate, which runs in worker threads) until true."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"not reached in {timeout_s} s")


async def test_a_final_goes_before_an_earlier_partial(live_model: WhisperTranscriber) -> None:
    gate = cpu_budget.process_slots
    previous = gate.slots
    gate.resize(1)
    workers.assign(live_model, 1, REALTIME)
    busy, release = threading.Event(), threading.Event()

    def other_sessions_speech() -> None:  # e.g. a TTS sentence holding the only slot
        with gate.hold(1, REALTIME):
            busy.set()
            release.wait(30)

    holder = threading.Thread(target=other_sessions_speech)
    holder.start()
    try:
        assert busy.wait(5)
        speech = load_clip(CLIP)
        talking, finished = StreamingRecognizer(live_model), StreamingRecognizer(live_model)
        talking.append(speech)
        finished.append(speech)
        order: list[str] = []

        async def partial() -> None:
            assert await talking.maybe_partial()
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
    finally:
        release.set()
        holder.join(5)
        gate.resize(previous)


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
    previous = gate.slots
    gate.resize(1)
    workers.assign(model, 1, REALTIME)
    busy, release = threading.Event(), threading.Event()

    def other_sessions_speech() -> None:
        with gate.hold(1, REALTIME):
            busy.set()
            release.wait(30)

    holder = threading.Thread(target=other_sessions_speech)
    holder.start()
    try:
        assert busy.wait(5)
        speech = load_clip(CLIP)
        a, b, c = (StreamingRecognizer(model) for _ in range(3))
        order: list[str] = []

        async def partial(rec: StreamingRecognizer, label: str) -> None:
            rec.append(speech)
            assert await rec.maybe_partial()
            order.append(label)

        async def final() -> None:
            c.append(speech)
            assert (await c.finalize()).text.strip()
            order.append("final")

        tasks = [asyncio.create_task(partial(a, "partial a"))]
        await wait_for(lambda: gate.waiting == 1)
        tasks.append(asyncio.create_task(partial(b, "partial b")))
        await wait_for(lambda: gate.waiting == 2)
        tasks.append(asyncio.create_task(final()))
        await wait_for(lambda: gate.waiting == 3)  # the final is in the gate's queue too
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 180)
        assert order[0] == "final", order
    finally:
        release.set()
        holder.join(5)
        gate.resize(previous)
