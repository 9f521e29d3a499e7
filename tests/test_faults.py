"""Faults in a search: each failed trial is recorded with its status and reason; the run goes on.

The faults are real: an exception, a training run that diverges, a trial past its wall-time limit,
an allocation past its memory limit, and a Dask worker process that dies in the middle of a trial
(see ``fault_targets.FaultyProblem``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from fault_targets import FaultyProblem, fault_log, faulty_problem

from safs_smac.search import optimize

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _problem(tmp_path: Path, faults: dict[int, str]) -> FaultyProblem:
    return faulty_problem(tmp_path, faults)


def _memory_limit_mb() -> int:
    # pynisher limits virtual memory: leave room above what this (torch) process maps already.
    return psutil.Process().memory_info().vms // 2**20 + 1024


def _rows(out: Path) -> list[dict[str, Any]]:
    return pd.read_csv(out / "results.csv").to_dict("records")


def test_crash_divergence_timeout_and_memoryout_are_recorded(tmp_path) -> None:
    problem = _problem(tmp_path, {1: "raise", 2: "nan", 3: "sleep", 4: "memory"})
    out = tmp_path / "run"
    result = optimize(
        problem,
        "smac-hpo",
        protocol="joint",  # one SMAC run: trial numbers map to the faults one to one
        n_trials=6,
        max_budget=1,
        output_dir=out,
        progress=False,
        trial_walltime_limit=5,
        trial_memory_limit=_memory_limit_mb(),
    )
    assert (out / "summary.json").exists()  # the run went on to the end
    rows = _rows(out)
    assert len(rows) == len(result.trials) == 6
    by_status: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    (crash,) = by_status["CRASHED"]
    assert "injected failure in trial 1" in crash["reason"]
    (timeout,) = by_status["TIMEOUT"]
    assert timeout["reason"] == "exceeded the trial wall-time limit of 5 s"
    (memoryout,) = by_status["MEMORYOUT"]
    assert memoryout["reason"].startswith("exceeded the trial memory limit of")
    (diverged,) = [row for row in by_status["SUCCESS"] if row["diverged"] is True]
    assert diverged["cost"] == 1.0  # the worst cost, so every optimizer ranks it last
    assert diverged["reason"].startswith("non-finite loss")
    assert len(by_status["SUCCESS"]) == 3
    for row in (crash, timeout, memoryout):
        assert row["cost"] == 1.0
    settings = json.loads((out / "run.json").read_text())
    assert settings["trial_walltime_limit"] == 5


def test_ask_tell_optimizers_get_the_same_limits(tmp_path) -> None:
    problem = _problem(tmp_path, {1: "sleep", 2: "raise"})
    out = tmp_path / "run"
    optimize(
        problem,
        "random",
        n_trials=3,
        max_budget=1,
        output_dir=out,
        progress=False,
        trial_walltime_limit=4,
    )
    statuses = sorted(row["status"] for row in _rows(out))
    assert statuses == ["CRASHED", "SUCCESS", "TIMEOUT"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trial_walltime_limit": 0}, "trial_walltime_limit must be a positive number"),
        ({"trial_memory_limit": -5}, "trial_memory_limit must be a positive number"),
    ],
)
def test_bad_trial_limits_write_nothing(tmp_path, kwargs, message) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        optimize(_problem(tmp_path, {}), output_dir=out, progress=False, **kwargs)
    assert not out.exists()


@pytest.mark.slow
def test_a_trial_that_kills_its_dask_workers_is_recorded_as_crashed(tmp_path) -> None:
    problem = _problem(tmp_path, {2: "doomed"})
    out = tmp_path / "run"
    optimize(
        problem,
        "smac-hpo",
        protocol="joint",
        n_trials=4,
        max_budget=1,
        output_dir=out,
        progress=False,
        n_workers=2,
    )
    rows = _rows(out)
    assert len(rows) == 4
    (crashed,) = [row for row in rows if row["status"] == "CRASHED"]
    assert "Dask worker running this trial died (KilledWorker)" in crashed["reason"]
    assert sum(row["status"] == "SUCCESS" for row in rows) == 3
    assert [fault for _, fault, _ in fault_log(problem.fault_dir)].count("doomed") == 1


@pytest.mark.slow
def test_lahc_on_two_workers_reruns_the_trial_of_a_dead_worker(tmp_path) -> None:
    problem = _problem(tmp_path, {2: "exit"})
    out = tmp_path / "run"
    result = optimize(
        problem, "lahc", n_trials=5, max_budget=1, output_dir=out, progress=False, n_workers=2
    )
    rows = _rows(out)
    assert len(rows) == len(result.trials) == 5
    assert {row["status"] for row in rows} == {"SUCCESS"}  # Dask ran the lost trial again
    log = fault_log(problem.fault_dir)
    assert [fault for _, fault, _ in log].count("exit") == 1
    assert len(log) == 6  # five trials, one of them twice
    assert len({pid for _, _, pid in log}) >= 2  # on more than one worker process
    assert json.loads((out / "run.json").read_text())["n_workers"] == 2
