"""Run a client framework's scenario script (``tests/clients/*_scenario.py``) in the
second venv, ``.venv-clients/`` (``scripts/setup.sh --test`` creates it from
``tests/clients/requirements.txt``: those frameworks' pins do not fit the server's venv),
and read the JSON it prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SCENARIOS = ROOT / "tests" / "clients"


def write_pcm(path: Path, pcm: np.ndarray) -> Path:
    """``pcm`` (int16 samples) as raw little-endian bytes, as the scenarios read audio."""
    path.write_bytes(pcm.astype("<i2").tobytes())
    return path


def run_scenario(script: str, *args: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run ``tests/clients/<script>`` with ``args`` and return its JSON summary.

    Blocking (a subprocess); the servers it talks to run in their own threads.
    Fails the test with the script's stderr when it crashes, prints no JSON or runs
    past ``timeout_s``.
    """
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: run `bash scripts/setup.sh --test`")
    try:
        done = subprocess.run(
            [str(CLIENTS_PYTHON), str(SCENARIOS / script), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as late:
        stderr = late.stderr.decode(errors="replace") if isinstance(late.stderr, bytes) else ""
        pytest.fail(f"{script} ran past {timeout_s:g} s:\n{stderr[-4000:]}")
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"{script} exited with {done.returncode}:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["stderr"] = done.stderr[-8000:]
    return result
