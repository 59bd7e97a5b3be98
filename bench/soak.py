"""Soak test: the real server (``voice serve`` in a subprocess, JSON logs) under a mixed
load on loopback, then a check that it is back where it started.

Load, for ``duration_s``: ``sessions`` concurrent realtime WebSocket clients, each
opening session after session and speaking a real clip at real-time pace; about
``drop_p`` of them vanish mid-stream (half closing cleanly, half aborting the TCP
connection), the others wait for the spoken answer. Beside them one client uploads
real recordings as meeting jobs (and a few that are not audio, and cancels some).

The load runs in ``rounds`` equal rounds, the server idle after each. Figures (from
the server's own ``/metrics``): asyncio tasks, open fds and RSS after a warm-up
(concurrent turns and a job: models loaded) and after every round once the server is
idle (each after a heap trim, :mod:`web.operations.memory`), RSS every 5 s during the
load, the sessions, turns, drops and client errors, and every job's final state.

Leak or plateau: idle RSS after a round moves by ±70 MB from round to round with no
trend (allocator arenas; measured over 6 rounds of sessions alone and of meetings
alone), so two samples cannot tell a leak from a plateau. The figure that does is the
least-squares slope of idle RSS over the rounds after the first (MB per round): a leak
of a few MB per session grows it by tens of MB every round, so this benchmark fails (exit
status 1) when the slope passes ``--max-slope`` (40 MB per round: measured +9.9 with the
server's malloc arenas capped, +40 without; ±50 MB of noise per sample gives the fitted
slope a spread of about 12 MB over six rounds). ``tests/test_soak.py`` is a two-round smoke
version (leaked tasks, fds, jobs, errors). Run this one with

    .venv/bin/python -m bench.soak --duration 240 --rounds 8 --sessions 3

which writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from bench.common import DATA, QUESTIONS, ROOT, write_result
from bench.realtime import Clip, prepare, send_clip

TRIM_INTERVAL_S = 5.0
"""The server's heap trim interval here (``VOICE_HEAP_TRIM_INTERVAL_S``); RSS is read
after one has run, before and after the load."""
MEETING_CLIPS = ("speechbrain/LJ050-0131.wav", "faster-whisper/stereo_diarization.wav")
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class SoakFigures:
    duration_s: float = 0.0
    sessions: int = 0
    answered: int = 0
    dropped_clean: int = 0
    dropped_abort: int = 0
    client_errors: list[str] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)
    """Job id → final state (``failed:<code>`` for failures)."""
    rejected_uploads: int = 0
    before: dict[str, float] = field(default_factory=dict)
    idle: list[dict[str, float]] = field(default_factory=list)
    """Figures once idle after each round."""
    rss_mb_during: list[float] = field(default_factory=list)
    """RSS sampled every 5 s during the load (MB)."""
    server_log_lines: int = 0
    server_log_not_json: int = 0


@contextlib.contextmanager
def serve(llm_url: str, workdir: Path, port: int,
          trim_interval_s: float = TRIM_INTERVAL_S) -> Iterator[str]:
    """``voice serve`` on 127.0.0.1:``port`` with JSON logs in ``workdir/server.log``."""
    env = {
        **os.environ,
        "VOICE_LLM_BASE_URL": llm_url,
        "VOICE_DATA_DIR": str(workdir / "data"),
        "VOICE_CACHE_DIR": str(workdir / "cache"),
        "VOICE_LOG_FORMAT": "json",
        "VOICE_LOG_LEVEL": "info",
        "VOICE_HOST": "127.0.0.1",
        "VOICE_PORT": str(port),
        "VOICE_HEAP_TRIM_INTERVAL_S": str(trim_interval_s),
    }
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve"], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}); see {log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not get ready in 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def scrape(url: str) -> dict[str, float]:
    """The figures compared before and after (a fresh connection each time)."""
    text = httpx.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text
    wanted = {
        "voice_asyncio_tasks": "tasks",
        "process_open_fds": "fds",
        "process_resident_memory_bytes": "rss_bytes",
    }
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in wanted:
                out[wanted[s.name]] = s.value
            elif s.name == "voice_realtime_sessions_active":
                out["sessions_active"] = out.get("sessions_active", 0) + s.value
            elif s.name == "voice_meeting_jobs":
                out["jobs_open"] = out.get("jobs_open", 0) + s.value
    return out


async def one_session(url: str, clip: Clip, rng: random.Random, drop_p: float, fig: SoakFigures) -> None:
    """One realtime session: speak ``clip``; vanish mid-stream or wait for the answer."""
    ws_url = url.replace("http", "ws", 1) + "/v1/realtime"
    drop = rng.random() < drop_p
    async with websockets.connect(ws_url, max_size=None, open_timeout=30) as ws:
        fig.sessions += 1
        if drop:
            cut = Clip(clip.pcm[: int(len(clip.pcm) * rng.uniform(0.1, 0.9)) // 2 * 2], 0, 0)
            await send_clip(ws, cut)
            if rng.random() < 0.5:
                fig.dropped_clean += 1
                await ws.close()
            else:
                fig.dropped_abort += 1
                ws.transport.abort()
            return
        sender = asyncio.create_task(send_clip(ws, clip))
        try:
            async with asyncio.timeout(60):
                async for raw in ws:
                    event = json.loads(raw)
                    if event["type"] == "response.done":
                        fig.answered += 1
                        break
                    if event["type"] == "error":
                        fig.client_errors.append(f"error event: {event['error']}")
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)


async def session_worker(url: str, clips: list[Clip], until: float, rng: random.Random,
                         drop_p: float, fig: SoakFigures) -> None:
    while time.monotonic() < until:
        try:
            await one_session(url, rng.choice(clips), rng, drop_p, fig)
        except Exception as exc:  # counted: the soak reports every client-side failure
            fig.client_errors.append(f"session: {type(exc).__name__}: {exc}")


async def meeting_worker(url: str, until: float, rng: random.Random, fig: SoakFigures) -> None:
    """Upload recordings (and some non-audio) until ``until``; cancel about one in four."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while time.monotonic() < until:
            if rng.random() < 0.2:
                files = {"file": ("noise.wav", os.urandom(2048), "audio/wav")}
            else:
                clip = rng.choice(MEETING_CLIPS)
                files = {"file": (Path(clip).name, (DATA / clip).read_bytes(), "audio/wav")}
            try:
                r = await client.post("/v1/meetings", files=files, data={"summarize": "false"})
                if r.status_code == 202:
                    job_id = r.json()["id"]
                    fig.jobs[job_id] = "open"
                    if rng.random() < 0.25:
                        await client.post(f"/v1/meetings/{job_id}/cancel")
                elif 400 <= r.status_code < 500:
                    fig.rejected_uploads += 1
                else:
                    fig.client_errors.append(f"upload: HTTP {r.status_code} {r.text[:200]}")
            except httpx.HTTPError as exc:
                fig.client_errors.append(f"upload: {type(exc).__name__}: {exc}")
            await asyncio.sleep(rng.uniform(2.0, 6.0))


async def settle_jobs(url: str, fig: SoakFigures, timeout_s: float) -> None:
    """Wait for every job to end; record its final state (and failure code)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for job_id in list(fig.jobs):
            while True:
                job = (await client.get(f"/v1/meetings/{job_id}")).json()
                if job["state"] in FINAL:
                    error = job.get("error") or {}
                    fig.jobs[job_id] = (
                        f"failed:{error.get('code')}:{bool(error.get('message'))}"
                        if job["state"] == "failed" else job["state"]
                    )
                    break
                if time.monotonic() > deadline:
                    fig.jobs[job_id] = f"stuck:{job['state']}"
                    break
                await asyncio.sleep(1.0)


async def settle_server(url: str, baseline_tasks: float, timeout_s: float = 30.0) -> dict[str, float]:
    """Figures once no session is open and the task count is back (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        figures = await asyncio.to_thread(scrape, url)
        idle = figures.get("sessions_active", 0) == 0 and figures.get("jobs_open", 0) == 0
        if (idle and figures["tasks"] <= baseline_tasks) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.5)


async def sample_rss(url: str, fig: SoakFigures, every_s: float = 5.0) -> None:
    """Append the server's RSS (MB) to ``fig.rss_mb_during`` every ``every_s``; until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        figures = await asyncio.to_thread(scrape, url)
        fig.rss_mb_during.append(round(figures["rss_bytes"] / 2**20, 1))


async def run_load(url: str, *, duration_s: float, rounds: int, sessions: int, drop_p: float,
                   seed: int, meetings: bool, fig: SoakFigures,
                   trim_interval_s: float = TRIM_INTERVAL_S) -> None:
    clips = [prepare(q, pad_s=1.0) for q in QUESTIONS]
    rng = random.Random(seed)
    # Warm-up: concurrent answered turns and one meeting job, so every model is loaded
    # and every worker thread has run them.
    await asyncio.gather(*(one_session(url, clips[n % len(clips)], random.Random(n), 0.0,
                                       SoakFigures()) for n in range(max(1, sessions))))
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        clip = MEETING_CLIPS[1]
        files = {"file": (Path(clip).name, (DATA / clip).read_bytes(), "audio/wav")}
        warm = (await client.post("/v1/meetings", files=files, data={"summarize": "false"})).json()
    warm_fig = SoakFigures(jobs={warm["id"]: "open"})
    await settle_jobs(url, warm_fig, 180)
    await asyncio.sleep(trim_interval_s + 1)
    fig.before = await settle_server(url, baseline_tasks=float("inf"), timeout_s=5)
    # Equal rounds, each ending idle: a leak keeps growing round after round, while
    # caches and allocator high-water marks settle in the first.
    start = time.monotonic()
    for _ in range(rounds):
        until = time.monotonic() + duration_s / rounds
        workers = [session_worker(url, clips, until, random.Random(rng.random()), drop_p, fig)
                   for _ in range(sessions)]
        if meetings:
            workers.append(meeting_worker(url, until, random.Random(rng.random()), fig))
        sampler = asyncio.create_task(sample_rss(url, fig))
        try:
            await asyncio.gather(*workers)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        await settle_jobs(url, fig, 240)
        await settle_server(url, fig.before["tasks"])
        await asyncio.sleep(trim_interval_s + 1)
        fig.idle.append(await settle_server(url, fig.before["tasks"]))
    fig.duration_s = round(time.monotonic() - start, 1)


def check_log(path: Path, fig: SoakFigures) -> None:
    for line in path.read_text().splitlines():
        fig.server_log_lines += 1
        try:
            json.loads(line)
        except ValueError:
            fig.server_log_not_json += 1


def soak(llm_url: str, workdir: Path, port: int, *, duration_s: float = 60.0, rounds: int = 4,
         sessions: int = 3, drop_p: float = 0.4, seed: int = 7,
         meetings: bool = True, trim_interval_s: float = TRIM_INTERVAL_S) -> SoakFigures:
    """Run the whole soak against a fresh server; returns the figures (asserts nothing).
    ``trim_interval_s``: the server's heap trim interval (s); idle RSS is read one
    interval (plus 1 s) after the load stops."""
    fig = SoakFigures()
    with serve(llm_url, workdir, port, trim_interval_s) as url:
        asyncio.run(run_load(url, duration_s=duration_s, rounds=rounds, sessions=sessions,
                             drop_p=drop_p, seed=seed, meetings=meetings, fig=fig,
                             trim_interval_s=trim_interval_s))
    check_log(workdir / "server.log", fig)
    return fig


def summary(fig: SoakFigures) -> dict[str, Any]:
    out = asdict(fig)
    states: dict[str, int] = {}
    for state in fig.jobs.values():
        states[state] = states.get(state, 0) + 1
    out["jobs"] = states
    out["idle_rss_mb"] = [round(fig.before.get("rss_bytes", 0) / 2**20, 1)] + [
        round(v.get("rss_bytes", 0) / 2**20, 1) for v in fig.idle]
    out["rss_slope_mb_per_round"] = round(rss_slope_mb(fig), 1)
    return out


def rss_slope_mb(fig: SoakFigures) -> float:
    """Least-squares slope of idle RSS (MB per round) over the rounds after the first
    (the first reaches the allocator's high-water mark); 0.0 with fewer than 2 of them."""
    values = [v["rss_bytes"] / 2**20 for v in fig.idle[1:]]
    if len(values) < 2:
        return 0.0
    xs = range(len(values))
    mean_x, mean_y = (len(values) - 1) / 2, sum(values) / len(values)
    num = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True))
    return num / sum((x - mean_x) ** 2 for x in xs)


def main() -> None:
    import tempfile

    from tests.fakes.llm_script import Turn
    from tests.fakes.scripted_llm import ScriptedLlmServer
    from tests.servers import free_port

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=240.0)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--drop", type=float, default=0.4)
    parser.add_argument("--no-meetings", action="store_true", help="realtime sessions only")
    parser.add_argument("--out", default="soak", help="result name under bench/results/")
    parser.add_argument("--max-slope", type=float, default=40.0,
                        help="idle-RSS slope bound, MB per round (exit status 1 above it)")
    args = parser.parse_args()
    with ScriptedLlmServer(default=Turn.say("Hello there. How can I help?")) as llm, \
            tempfile.TemporaryDirectory() as tmp:
        fig = soak(llm.base_url, Path(tmp), free_port(), duration_s=args.duration,
                   rounds=args.rounds, sessions=args.sessions, drop_p=args.drop, meetings=not args.no_meetings)
    result = summary(fig)
    print(json.dumps(result, indent=2))
    path = write_result(args.out, result, command=" ".join(["python -m bench.soak", *sys.argv[1:]]),
                        llm="scripted (tests/fakes)")
    print(f"wrote {path}")
    if result["rss_slope_mb_per_round"] >= args.max_slope:
        sys.exit(f"idle RSS grows {result['rss_slope_mb_per_round']} MB per round "
                 f"(bound {args.max_slope}): a leak")


if __name__ == "__main__":
    main()
