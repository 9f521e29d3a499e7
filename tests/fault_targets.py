"""A SAFS problem that injects faults into chosen trials, for the fault-tolerance tests.

It lives in an importable module (not in a test file) because Dask workers and pynisher's child
processes must find its class by name. Trials are numbered across every process that evaluates
them, with a counter file under a file lock, so "the 2nd trial" means the same thing with one
process or four.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safs_smac._io import atomic_write_text, file_lock
from safs_smac.problem import SAFSProblem
from safs_smac.space import TrialSpec

# What a trial can be made to do:
#   raise   - the target raises an exception
#   nan     - training diverges for real (scales of 1e30 overflow float32: a non-finite loss)
#   sleep   - the target sleeps far past any trial wall-time limit
#   memory  - the target allocates 64 GiB (refused under a trial memory limit)
#   exit    - the process running the trial dies (os._exit), once: a re-run succeeds
#   doomed  - the process dies every time this trial's configuration runs
FAULTS = ("raise", "nan", "sleep", "memory", "exit", "doomed")


class FaultyProblem(SAFSProblem):
    """``SAFSProblem`` whose ``n``-th trial does ``faults[n]`` (1-based, see ``FAULTS``)."""

    def __init__(
        self, *args: Any, faults: Mapping[int, str], fault_dir: str | Path, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        unknown = set(faults.values()) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; valid: {', '.join(FAULTS)}")
        self.faults = dict(faults)
        self.fault_dir = str(fault_dir)
        self._diverge = False

    def train(self, config: Any, seed: int = 0, budget: float | None = None) -> Any:
        directory = Path(self.fault_dir)
        key = json.dumps(_plain(config), sort_keys=True)
        doomed = directory / "doomed.json"
        if doomed.exists() and doomed.read_text() == key:
            os._exit(1)
        number = _next_trial(directory)
        fault = self.faults.get(number)
        _log(directory, number, fault)
        if fault == "raise":
            raise RuntimeError(f"injected failure in trial {number}")
        if fault == "sleep":
            time.sleep(600)
        if fault == "memory":
            import numpy as np

            np.ones(64 * 2**30, dtype=np.uint8)
        if fault == "exit":
            os._exit(1)
        if fault == "doomed":
            atomic_write_text(doomed, key)
            os._exit(1)
        self._diverge = fault == "nan"
        return super().train(config, seed=seed, budget=budget)

    def finetune(self, spec: TrialSpec, **kwargs: Any) -> Any:
        if self._diverge:
            huge = {site: 1e30 for site in spec.alpha}
            spec = dataclasses.replace(spec, alpha=huge, beta=huge)
        return super().finetune(spec, **kwargs)


def _plain(config: Any) -> dict[str, Any]:
    return {k: v.item() if hasattr(v, "item") else v for k, v in dict(config).items()}


def _next_trial(directory: Path) -> int:
    counter = directory / "counter.txt"
    with file_lock(counter):
        number = int(counter.read_text()) + 1 if counter.exists() else 1
        atomic_write_text(counter, str(number))
    return number


def _log(directory: Path, number: int, fault: str | None) -> None:
    with file_lock(directory / "log.txt"), open(directory / "log.txt", "a") as handle:
        handle.write(f"{number} {fault or 'ok'} {os.getpid()}\n")


def fault_log(directory: str | Path) -> list[tuple[int, str, int]]:
    """The trials started so far: ``(number, fault or "ok", pid)``."""
    path = Path(directory) / "log.txt"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(n), fault, int(pid)) for n, fault, pid in rows]


def faulty_problem(tmp_path: Path, faults: Mapping[int, str]) -> FaultyProblem:
    """A tiny LeNet-5 problem (synthetic data, 1 epoch) whose trials do ``faults``."""
    from conftest import SYNTHETIC

    fault_dir = Path(tmp_path) / "faults"
    fault_dir.mkdir(exist_ok=True)
    return FaultyProblem(
        "lenet5",
        "synthetic",
        dataset_kwargs=dict(SYNTHETIC),
        dense_epochs=1,
        max_budget=1,
        cache_dir=Path(tmp_path) / "cache",
        device="cpu",
        dnr_probe_size=32,
        faults=faults,
        fault_dir=fault_dir,
    )
