"""Meeting transcription waits behind live conversation for the cores even when both
use the same Whisper model (``VOICE_STT_MODEL`` = ``VOICE_REALTIME_STT_MODEL``): one
model in memory, two places in the CPU budget (real tiny.en on real speech)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from pipelines.services import Services
from tests.api_helpers import api_settings, close_services, load_services
from tests.conftest import load_clip
from tests.polling import wait_for
from voice import cpu_budget
from voice.cpu_budget import REALTIME
from voice.stt.base import transcribe_async
from voice.stt.timed import TimedTranscriber

CLIP = "speechbrain/spk2_snt1.wav"


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    # A hosted LLM address that is never called: no llama.cpp needed here.
    settings = api_settings(tmp_path_factory.mktemp("batch"), realtime_speakers=False,
                            llm_base_url="http://127.0.0.1:9/v1")
    assert settings.stt_model == settings.realtime_stt_model
    loaded = load_services(settings)
    try:
        yield loaded
    finally:
        close_services(loaded)
        cpu_budget.configure(cpu_budget.plan(cpu_budget.available_cores()))


async def test_a_meeting_window_queues_behind_live_speech(services: Services) -> None:
    batch = services.batch_transcriber
    assert batch is not services.transcriber
    live_model = services.transcriber
    assert isinstance(batch, TimedTranscriber) and isinstance(live_model, TimedTranscriber)
    assert batch.inner is live_model.inner  # one model in memory

    gate = cpu_budget.process_slots
    previous = gate.slots
    gate.resize(1)
    busy, release = threading.Event(), threading.Event()

    def live_speech() -> None:  # another session's TTS sentence holding the only slot
        with gate.hold(1, REALTIME):
            busy.set()
            release.wait(30)

    holder = threading.Thread(target=live_speech)
    holder.start()
    try:
        assert busy.wait(5)
        speech = load_clip(CLIP)
        order: list[str] = []

        async def transcribe(label: str, model: object) -> None:
            result = await transcribe_async(model, speech)  # type: ignore[arg-type]
            assert result.text.strip()
            order.append(label)

        meeting = asyncio.create_task(transcribe("meeting", batch))
        await wait_for(lambda: gate.waiting == 1)
        live = asyncio.create_task(transcribe("live", services.transcriber))
        await wait_for(lambda: gate.waiting == 2)
        release.set()
        await asyncio.wait_for(asyncio.gather(meeting, live), 120)
        assert order == ["live", "meeting"]
    finally:
        release.set()
        holder.join(5)
        gate.resize(previous)
