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


def start_scenario(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``tests/clients/<script>`` with ``args``; :func:`scenario_result` reads it.
    Several may run at once (their servers' work then overlaps)."""
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: run `bash scripts/setup.sh --test`")
    return subprocess.Popen(
        [str(CLIENTS_PYTHON), str(SCENARIOS / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scenario_result(running: subprocess.Popen[str], timeout_s: float = 300.0) -> dict[str, Any]:
    """The JSON summary of a started scenario.

    Blocking (waits for the subprocess); the servers it talks to run in their own threads.
    Fails the test with the script's stderr when it crashes, prints no JSON or runs
    past ``timeout_s`` (then it is killed).
    """
    script = Path(str(running.args[1])).name
    try:
        stdout, stderr = running.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        running.kill()
        _, stderr = running.communicate()
        pytest.fail(f"{script} ran past {timeout_s:g} s:\n{stderr[-4000:]}")
    if running.returncode != 0 or not stdout.strip():
        pytest.fail(f"{script} exited with {running.returncode}:\n{stderr[-4000:]}")
    result: dict[str, Any] = json.loads(stdout)
    result["stderr"] = stderr[-8000:]
    return result


def run_scenario(script: str, *args: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """Run ``tests/clients/<script>`` with ``args`` and return its JSON summary
    (:func:`start_scenario`, then :func:`scenario_result`)."""
    return scenario_result(start_scenario(script, *args), timeout_s)
