"""Soak: the real server in a subprocess under concurrent realtime sessions (some
vanishing mid-stream) and meeting uploads in six short rounds, back to idle after
each with no leaked tasks or file descriptors, idle memory with no upward trend across
rounds, and every job ended with a reason. The figures are printed (``pytest -s``); ``bench/soak.py`` records them."""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak import rss_slope_mb, soak, summary
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import free_port

DURATION_S = 60.0
ROUNDS = 6
"""Six rounds of 10 s, the server idle after each (bench/soak.py runs longer). The slope
is fitted over the last five: with ±50 MB of noise per sample its own spread is about
12 MB per round, so the bound below sits over three spreads away from zero."""
SESSIONS = 3
SLOPE_MAX_MB = 40.0
"""Idle RSS slope over rounds 2-6 (MB per round). Measured +9.9 with malloc arenas capped
(+40 without the cap: fragmentation by the model and job threads, which the server now
prevents); idle RSS moves ±70 MB between rounds with no trend. A leak of a few MB per
session, with 5-10 sessions a round, adds tens of MB every round on top. RSS is read idle, after a heap trim
(web/operations/memory.py)."""
TOTAL_GROWTH_MAX = 500 * 2**20


def test_soak_leaves_no_leaks(llm: ScriptedLlmServer, tmp_path: Path) -> None:
    fig = soak(llm.base_url, tmp_path, free_port(), duration_s=DURATION_S, rounds=ROUNDS,
               sessions=SESSIONS)
    print("soak figures:", json.dumps(summary(fig), indent=2))
    assert fig.client_errors == []
    assert fig.sessions >= SESSIONS * ROUNDS and fig.answered >= 3
    assert fig.dropped_clean + fig.dropped_abort >= 2
    assert fig.jobs and fig.rejected_uploads + len(fig.jobs) >= 4
    for job_id, state in fig.jobs.items():
        assert state in ("succeeded", "cancelled") or state.startswith("failed:"), (job_id, state)
        if state.startswith("failed:"):
            assert state.endswith(":True") and "None" not in state, (job_id, state)
    before = fig.before
    assert len(fig.idle) == ROUNDS
    for idle in fig.idle:
        assert idle["sessions_active"] == 0 and idle["jobs_open"] == 0
        assert idle["tasks"] <= before["tasks"], (before, idle)
        assert idle["fds"] <= before["fds"] + 2, (before, idle)
    assert rss_slope_mb(fig) < SLOPE_MAX_MB, summary(fig)["idle_rss_mb"]
    assert fig.idle[-1]["rss_bytes"] - before["rss_bytes"] < TOTAL_GROWTH_MAX, summary(fig)
    assert fig.server_log_lines > 0 and fig.server_log_not_json == 0
