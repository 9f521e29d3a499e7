"""A run killed with SIGKILL resumes with the same command: nothing lost, nothing repeated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safs_smac._io import sha256_bytes

N_TRIALS = 8


def _command(out: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "safs_smac",
        "run",
        *("--dataset", "synthetic", "--dense-epochs", "1", "--protocol", "joint"),
        *("--n-trials", str(N_TRIALS), "--min-budget", "1", "--max-budget", "3"),
        *("--output-dir", str(out), "--cache-dir", str(cache), "--no-progress"),
    ]


def _finished(runhistory: Path) -> dict[tuple[str, float], tuple[float, float]]:
    """(configuration, budget) -> (cost, start time) of every finished trial."""
    try:
        content = json.loads(runhistory.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    configs = {int(k): json.dumps(v, sort_keys=True) for k, v in content["configs"].items()}
    trials: dict[tuple[str, float], tuple[float, float]] = {}
    for entry in content["data"]:
        if entry["status"] == 0:  # RUNNING
            continue
        key = (configs[entry["config_id"]], entry["budget"])
        assert key not in trials, f"trial evaluated twice: {key}"
        trials[key] = (entry["cost"], entry["starttime"])
    return trials


def _assert_cache_intact(cache: Path) -> int:
    sidecars = list(cache.glob("*/*.json"))
    for sidecar in sidecars:
        payload = sidecar.with_suffix(".pt")
        assert json.loads(sidecar.read_text())["sha256"] == sha256_bytes(payload.read_bytes())
    assert not list(cache.glob("*/.*.tmp"))  # no half-written entry left behind
    return len(sidecars)


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_resumes(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    runhistory = out / "smac" / "0" / "runhistory.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        _command(out, cache), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 240
    while len(_finished(runhistory)) < 2:
        assert first.poll() is None, first.stdout.read().decode()
        assert time.monotonic() < deadline, "the run never finished two trials"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    before = _finished(runhistory)
    assert 2 <= len(before) < N_TRIALS, "the kill should land in the middle of the run"
    assert not (out / "summary.json").exists()
    assert _assert_cache_intact(cache) == 2  # the dense and the pruned checkpoint

    second = subprocess.run(
        _command(out, cache), env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr
    after = _finished(runhistory)
    assert len(after) == N_TRIALS
    for key, value in before.items():
        assert after[key] == value, "a trial finished before the kill was lost or re-run"
    assert (out / "summary.json").exists()
    assert _assert_cache_intact(cache) == 2  # reused, not rebuilt or damaged
    assert not list(runhistory.parent.glob(".saving-*"))
