"""One CPU budget and admission by capacity: thread counts sized from the cores,
the process-wide gate that keeps busy model threads within them, and a session
over the machine's capacity refused with the documented error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from pipelines.services import Services, thread_plan
from tests.api_helpers import api_settings, close_services, load_services, serve
from tests.servers import ServerThread
from tests.test_limits import next_event, refused
from tests.test_realtime_ws import raw_connect
from voice import cpu_budget, workers
from voice.cpu_budget import BACKGROUND, LIVE_AUX, REALTIME, CpuSlots, plan
from voice.settings import load_settings
from web.access.live_sessions import session_capacity

# --- the plan -------------------------------------------------------------------------


@pytest.mark.parametrize("cores", [1, 2, 4, 8, 16])
def test_plan_never_runs_more_gated_threads_than_cores(cores: int) -> None:
    p = plan(cores)
    # The gate holds every core; llama.cpp's threads take theirs while it answers.
    assert p.gated_slots == cores and 1 <= p.llm_threads < max(2, cores)
    assert p.llm_threads <= p.llm_batch_threads <= cores
    for threads in (p.stt_threads, p.tts_threads, p.torch_threads):
        assert 1 <= threads <= max(1, p.gated_slots)
    if cores <= 4:
        assert (p.llm_threads, p.stt_threads, p.tts_threads, p.torch_threads) == (1, 1, 1, 1)


def test_plan_keeps_explicit_settings_and_reserves_nothing_for_a_hosted_llm() -> None:
    settings = load_settings(cpu_cores=8, stt_cpu_threads=3, llm_embedded_threads=2)
    p = thread_plan(settings)
    assert (p.cores, p.stt_threads, p.llm_threads) == (8, 3, 2)
    hosted = thread_plan(load_settings(cpu_cores=2, llm_base_url="http://127.0.0.1:9/v1"))
    assert (hosted.llm_threads, hosted.gated_slots) == (0, 2)


@pytest.mark.slow
def test_meeting_only_processes_give_torch_the_servers_share() -> None:
    """``voice meeting``/the bench (local_pipeline) and ``voice worker`` (BatchModels) give
    the diarizer the torch threads ``voice serve`` gives it: with 2 cores one, not torch's
    default of every core beside the transcription's two workers (a fresh interpreter:
    torch's count is process-wide)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import asyncio, torch\n"
        "from voice.settings import load_settings\n"
        "from pipelines.meeting.local import local_pipeline\n"
        "from pipelines.meeting.worker_models import BatchModels\n"
        "s = load_settings(cpu_cores=2, stt_model='tiny.en')\n"
        "async def run():\n"
        "    async with local_pipeline(s, use_llm=False):\n"
        "        print('pipeline', torch.get_num_threads())\n"
        "asyncio.run(run())\n"
        "torch.set_num_threads(2)\n"
        "BatchModels(s, None).diarizer\n"
        "print('worker', torch.get_num_threads())\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["pipeline", "1", "worker", "1"]
    assert cpu_budget.meeting_only_torch_threads(2) == thread_plan(
        load_settings(cpu_cores=2)
    ).torch_threads == 1
    assert cpu_budget.meeting_only_torch_threads(16) == 4


def test_session_capacity_follows_the_cores() -> None:
    assert session_capacity(load_settings(cpu_cores=2)) == 6
    assert session_capacity(load_settings(cpu_cores=2, realtime_sessions_per_core=0.5)) == 1
    assert session_capacity(load_settings(cpu_cores=64, max_realtime_sessions=16)) == 16


# --- the gate -------------------------------------------------------------------------


def test_slots_bound_busy_threads_and_serve_realtime_first() -> None:
    """Speaker embeddings (live, secondary) and meeting work wait behind a final and a
    sentence of speech; live calls never run more threads than the slots."""
    slots = CpuSlots(2)
    peak = 0
    order: list[str] = []
    lock = threading.Lock()
    blocker_in = threading.Event()
    release = threading.Event()

    def blocker() -> None:
        with slots.hold(2, REALTIME):
            blocker_in.set()
            release.wait(5)

    def work(label: str, threads: int, priority: int) -> None:
        nonlocal peak
        with slots.hold(threads, priority):
            with lock:
                order.append(label)
                peak = max(peak, slots.busy)
            time.sleep(0.01)

    first = threading.Thread(target=blocker)
    first.start()
    assert blocker_in.wait(5)
    jobs = [("meeting", 1, BACKGROUND), ("embed", 1, LIVE_AUX), ("final", 1, REALTIME),
            ("tts", 2, REALTIME)]
    threads = []
    for label, n, priority in jobs:
        t = threading.Thread(target=work, args=(label, n, priority))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # queued in this order
    release.set()
    for t in [first, *threads]:
        t.join(5)
    assert order[:2] == ["final", "tts"]  # tts (2 threads) waits for a free pair
    assert sorted(order[2:]) == ["embed", "meeting"]
    assert peak <= 2 and slots.busy == 0


async def test_run_on_holds_the_owners_share_of_the_budget() -> None:
    class Model:
        def infer(self) -> int:
            return cpu_budget.process_slots.busy

    model = Model()
    previous = cpu_budget.process_slots.slots
    cpu_budget.process_slots.resize(1)
    try:
        assert await workers.run_on(model, 2, model.infer) == 0  # not assigned: not gated
        workers.assign(model, 1)
        busy = await asyncio.gather(*(workers.run_on(model, 2, model.infer) for _ in range(4)))
        assert busy == [1, 1, 1, 1]  # two pool threads, but one inference at a time
    finally:
        cpu_budget.process_slots.resize(previous)


# --- admission through the real app ----------------------------------------------------


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """The real app planned for one core at two sessions per core: capacity 2."""
    settings = api_settings(tmp_path_factory.mktemp("capacity"), realtime_speakers=False,
                            cpu_cores=1, realtime_sessions_per_core=2.0)
    services: Services = load_services(settings)
    try:
        assert services.threads.cores == 1
        with serve(settings, services) as server:
            yield server
    finally:
        close_services(services)
        cpu_budget.configure(plan(cpu_budget.available_cores()))


async def test_a_session_over_capacity_is_refused(small_server: ServerThread) -> None:
    first, second = await raw_connect(small_server), await raw_connect(small_server)
    try:
        for ws in (first, second):
            assert (await next_event(ws))["type"] == "session.created"
        third = await raw_connect(small_server)
        error, code = await refused(third)
        assert (error["code"], code) == ("session_limit_reached", 1013)
        assert "capacity" in error["message"] and "2 realtime sessions" in error["message"]
        await first.close()
        # The slot is free again once the first session is gone.
        for _ in range(50):
            again = await raw_connect(small_server)
            event = await next_event(again)
            if event["type"] == "session.created":
                await again.close()
                break
            await again.close()
            await asyncio.sleep(0.1)
        else:
            pytest.fail("no session admitted after one closed")
    finally:
        await first.close()
        await second.close()
