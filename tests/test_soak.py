"""Soak: the real server in a subprocess under concurrent realtime sessions (some
vanishing mid-stream) and meeting uploads for 120 s in two halves, back to idle after
each with no leaked tasks or file descriptors, memory that stops growing, and every
job ended with a reason. The figures are printed (``pytest -s``); ``bench/soak.py`` records them."""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak import soak, summary
from tests.fakes.scripted_llm import ScriptedLlmServer
from tests.servers import free_port

DURATION_S = 120.0
"""Two halves of 60 s, the server idle after each. With 40 s halves the first half did
not always reach the allocator's high-water mark (fresh-clone CI run: +147 MB, then
+139 MB); with 60 s halves: +371 MB, then -54 MB (bench/results/soak.json)."""
SESSIONS = 3
SECOND_HALF_GROWTH_MAX = 120 * 2**20
"""A leak grows RSS in the second half as in the first; caches and allocator high-water
marks settle in the first (measured: +300 MB, then +24 MB). RSS is read idle, after a
heap trim (web/operations/memory.py)."""
TOTAL_GROWTH_MAX = 500 * 2**20


def test_soak_leaves_no_leaks(llm: ScriptedLlmServer, tmp_path: Path) -> None:
    fig = soak(llm.base_url, tmp_path, free_port(), duration_s=DURATION_S, sessions=SESSIONS)
    print("soak figures:", json.dumps(summary(fig), indent=2))
    assert fig.client_errors == []
    assert fig.sessions >= SESSIONS * 3 and fig.answered >= 3
    assert fig.dropped_clean + fig.dropped_abort >= 2
    assert fig.jobs and fig.rejected_uploads + len(fig.jobs) >= 4
    for job_id, state in fig.jobs.items():
        assert state in ("succeeded", "cancelled") or state.startswith("failed:"), (job_id, state)
        if state.startswith("failed:"):
            assert state.endswith(":True") and "None" not in state, (job_id, state)
    before, middle, after = fig.before, fig.middle, fig.after
    for idle in (middle, after):
        assert idle["sessions_active"] == 0 and idle["jobs_open"] == 0
        assert idle["tasks"] <= before["tasks"], (before, idle)
        assert idle["fds"] <= before["fds"] + 2, (before, idle)
    assert after["rss_bytes"] - middle["rss_bytes"] < SECOND_HALF_GROWTH_MAX, (middle, after)
    assert after["rss_bytes"] - before["rss_bytes"] < TOTAL_GROWTH_MAX, (before, after)
    assert fig.server_log_lines > 0 and fig.server_log_not_json == 0
