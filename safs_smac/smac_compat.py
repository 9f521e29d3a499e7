"""Patches of SMAC's behaviour, in one place, each undone when its context ends.

* :func:`atomic_smac_saves`: SMAC rewrites its state files in place after every trial; within
  this context they are written to a staging directory of this process and renamed into place,
  so a kill leaves complete files.
* :func:`refuse_smac_prompts`: SMAC asks on stdin whether to overwrite a run whose scenario
  changed; within this context the question is a clear error, so a batch job never hangs.
* :func:`surrogate_in_this_thread`: SMAC's random forest fits and predicts its 10 trees through
  joblib threads (``n_jobs=-1``); for the few dozen points of a SAFS search the threads' start-up
  and polling cost more than the trees. Within this context joblib runs them in the calling
  thread: the same trees, the same predictions (each tree writes its own column), the same
  proposals, at about half of SMAC's time per trial (measured in ``benchmarks/overhead.py``).
* :func:`bounded_forest_trees`: SMAC 2.4's random forest (scikit-learn trees) grows each tree
  best-first with ``max_leaf_nodes=2**20``, and scikit-learn sizes a best-first tree's node
  array for that bound before it splits anything: about 0.06 s per tree, whatever the data.
  A tree fitted on ``n`` points has at most ``n`` leaves, so within this context each fit bounds
  ``max_leaf_nodes`` by ``n``: a bound that never binds, so the same trees, the same
  predictions and the same proposals, at about a hundredth of the fitting time.
* :func:`fast_surrogate`: both of the above.
* :func:`deterministic_local_search`: SMAC's local search starts from ``list(set(configs))``,
  whose order follows the configurations' string hashes, which Python salts per process
  (``PYTHONHASHSEED``): the same seed then proposed other configurations in another process.
  Within this context the start points are ordered by their vector, the same in every process.
* :func:`smac_proposes`: :func:`fast_surrogate` and :func:`deterministic_local_search`, the
  context every SMAC search of :func:`safs_smac.optimize` runs in.

Imports smac only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smac.main.smbo import SMBO
from smac.scenario import Scenario

__all__ = [
    "SURROGATE_PATCHES",
    "atomic_smac_saves",
    "bounded_forest_trees",
    "deterministic_local_search",
    "fast_surrogate",
    "refuse_smac_prompts",
    "smac_proposes",
    "surrogate_in_this_thread",
    "surrogate_patches",
]

# Which patches fast_surrogate applies; benchmarks switch them off (surrogate_patches) to measure
# SMAC with and without each, side by side.
SURROGATE_PATCHES = {"in_this_thread": True, "bounded_trees": True}


@contextlib.contextmanager
def surrogate_patches(**switches: bool) -> Iterator[None]:
    """Within this context :func:`fast_surrogate` applies the patches as ``switches`` say
    (``in_this_thread=``, ``bounded_trees=``); the previous switches are back after it."""
    unknown = sorted(set(switches) - set(SURROGATE_PATCHES))
    if unknown:
        valid = ", ".join(sorted(SURROGATE_PATCHES))
        raise ValueError(f"unknown surrogate patch(es) {unknown}; valid: {valid}")
    previous = dict(SURROGATE_PATCHES)
    SURROGATE_PATCHES.update(switches)
    try:
        yield
    finally:
        SURROGATE_PATCHES.update(previous)


# Staging directories are named .saving-<pid>-<random>: each belongs to the process that made it.
_STAGING_PREFIX = ".saving-"


@contextlib.contextmanager
def atomic_smac_saves() -> Iterator[None]:
    """Within this context, SMAC's run files are replaced atomically, never rewritten in place.

    ``SMBO.save`` (``optimization.json``, ``runhistory.json``, ``intensifier.json``, after every
    trial) and ``Scenario.save`` (``scenario.json``, ``configspace.json``, once) write into a
    staging directory next to the run's files; each file is then moved over its old version with
    :func:`os.replace`. A kill at any moment leaves every file either old or new, and the three
    state files at most one trial apart. The patch is undone on exit; staging directories of a
    killed process are removed by the next save in the same directory.
    """
    smbo_save, scenario_save = SMBO.save, Scenario.save

    def save_smbo(self: SMBO) -> None:
        target = self._scenario.output_directory
        if target is None:
            return smbo_save(self)
        with _staged(self._scenario, Path(target)) as staging:
            smbo_save(self)
        return _publish(staging, Path(target))

    def save_scenario(self: Scenario) -> None:
        target = Path(self.output_directory)
        with _staged(self, target) as staging:
            scenario_save(self)
        # The staged scenario.json names the staging directory; SMAC compares it on resume.
        scenario_file = staging / "scenario.json"
        data = json.loads(scenario_file.read_text(encoding="utf-8"))
        data["output_directory"] = str(target)
        scenario_file.write_text(json.dumps(data, indent=4), encoding="utf-8")
        _publish(staging, target)

    with _replaced(SMBO, "save", save_smbo), _replaced(Scenario, "save", save_scenario):
        yield


@contextlib.contextmanager
def _replaced(owner: type, name: str, replacement: Any) -> Iterator[None]:
    """``owner.<name>`` is ``replacement`` within this context, the original again after it."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def _staged(scenario: Scenario, target: Path) -> Iterator[Path]:
    """Point ``scenario.output_directory`` at a fresh staging directory for one save."""
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob(f"{_STAGING_PREFIX}*"):
        if not _owner_alive(stale):  # left by a killed process, never another live one's
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}-", dir=target))
    # Scenario is a frozen dataclass: bypass its __setattr__ for the duration of the save.
    object.__setattr__(scenario, "output_directory", staging)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        object.__setattr__(scenario, "output_directory", target)


def _publish(staging: Path, target: Path) -> None:
    """Move every staged file over its counterpart in ``target`` (fsynced, then renamed)."""
    try:
        # The runhistory first: the intensifier's state never names a trial it does not hold.
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        names.sort(key=lambda name: name != "runhistory.json")
        for name in names:
            with open(staging / name, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _owner_alive(staging: Path) -> bool:
    """Whether the process that made a staging directory still runs (not this one's own)."""
    pid_text = staging.name[len(_STAGING_PREFIX) :].split("-", 1)[0]
    if not pid_text.isdigit():
        return False  # written before staging directories carried their owner
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


@contextlib.contextmanager
def refuse_smac_prompts(smac_dir: Path) -> Iterator[None]:
    """Turn SMAC's interactive "overwrite or rename?" question into a clear error.

    SMAC asks on stdin when the state it finds was written by another scenario (another SMAC
    version, or a changed target function: it hashes the target's code). ``prepare_run_dir``
    already matched our settings, so that can only mean changed code; a batch job must not hang.
    """
    import smac.main.smbo as smbo

    def refuse(prompt: str = "") -> str:
        raise ValueError(
            f"the SMAC state in {smac_dir} was written by other code (safs_smac or SMAC changed "
            "since the run started) and cannot be resumed; delete that directory to restart the "
            "search, or choose another --output-dir"
        )

    smbo.input = refuse  # module global: shadows the builtin for SMAC's call only
    try:
        yield
    finally:
        del smbo.input


@contextlib.contextmanager
def surrogate_in_this_thread() -> Iterator[None]:
    """Run joblib's parallel loops (SMAC's random forest) sequentially within this context."""
    import joblib

    with joblib.parallel_config(backend="sequential"):
        yield


@contextlib.contextmanager
def bounded_forest_trees() -> Iterator[None]:
    """Fit SMAC's random forest with ``max_leaf_nodes`` bounded by the number of points."""
    from smac.model.random_forest.random_forest import RandomForest

    original = RandomForest._train

    def _train(self: RandomForest, X: Any, y: Any) -> RandomForest:
        options = self._rf_opts
        configured = options["max_leaf_nodes"]
        if configured is not None and len(X) < configured:
            # scikit-learn wants at least 2; a tree on len(X) points never has more leaves.
            options["max_leaf_nodes"] = max(2, len(X))
        try:
            return original(self, X, y)
        finally:
            options["max_leaf_nodes"] = configured  # SMAC's saved meta shows what it configured

    with _replaced(RandomForest, "_train", _train):
        yield


@contextlib.contextmanager
def fast_surrogate() -> Iterator[None]:
    """SMAC's surrogate in this thread with bounded trees (each as ``SURROGATE_PATCHES`` says)."""
    with contextlib.ExitStack() as stack:
        if SURROGATE_PATCHES["in_this_thread"]:
            stack.enter_context(surrogate_in_this_thread())
        if SURROGATE_PATCHES["bounded_trees"]:
            stack.enter_context(bounded_forest_trees())
        yield


@contextlib.contextmanager
def deterministic_local_search() -> Iterator[None]:
    """Order the start points of SMAC's local search by their vectors, not by hash."""
    import numpy as np
    from smac.acquisition.maximizer.local_search import LocalSearch

    original = LocalSearch._get_init_points_from_previous_configs

    def ordered(self: LocalSearch, *args: Any, **kwargs: Any) -> list[Any]:
        points = original(self, *args, **kwargs)
        # Vectors lie in [0, 1]; an inactive hyperparameter (NaN) sorts as -1.
        return sorted(points, key=lambda config: tuple(np.nan_to_num(config.get_array(), nan=-1)))

    with _replaced(LocalSearch, "_get_init_points_from_previous_configs", ordered):
        yield


@contextlib.contextmanager
def smac_proposes() -> Iterator[None]:
    """SMAC's ask with a fast surrogate and a local search that is the same in every process."""
    with fast_surrogate(), deterministic_local_search():
        yield
