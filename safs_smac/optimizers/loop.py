"""The evaluation loop of the ask/tell optimizers: :func:`run_optimizer` asks, evaluates (in this
process or through a SMAC runner, e.g. on Dask workers), records every trial in a SMAC
``RunHistory`` and tells; a run history of a killed run is replayed instead of re-evaluated.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ConfigSpace import Configuration
from smac.runhistory import RunHistory
from smac.runhistory.dataclasses import TrialInfo, TrialKey, TrialValue
from smac.runhistory.enumerations import StatusType
from smac.runner.abstract_runner import AbstractRunner

from safs_smac._io import atomic_path
from safs_smac.optimizers.base import AskTellOptimizer, TargetFunction, check_batch_size, config_key

__all__ = ["lookup_trial", "run_optimizer"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- runhistory helpers
class _TrialIndex:
    """Finds a trial of a RunHistory by configuration value, seed and budget."""

    def __init__(self, runhistory: RunHistory) -> None:
        self.runhistory = runhistory
        self._ids: dict[Hashable, int] = {}
        for config_id, config in runhistory.ids_config.items():
            self._ids.setdefault(config_key(config), config_id)

    def stored_config(self, config: Configuration) -> Configuration:
        """The RunHistory's own object for ``config`` (so that ``add`` reuses its id)."""
        config_id = self._ids.get(config_key(config))
        return config if config_id is None else self.runhistory.ids_config[config_id]

    def lookup(self, info: TrialInfo) -> TrialValue | None:
        config_id = self._ids.get(config_key(info.config))
        if config_id is None:
            return None
        budget = None if info.budget is None else float(info.budget)
        key = TrialKey(config_id=config_id, instance=info.instance, seed=info.seed, budget=budget)
        value = self.runhistory.get(key)
        if value is None or value.status == StatusType.RUNNING:
            return None
        return value

    def add(self, info: TrialInfo, value: TrialValue) -> None:
        config = self.stored_config(info.config)
        # RunHistory.add takes the trial's instance, seed and budget and every field of the
        # value (cost, time, cpu_time, status, starttime, endtime, additional_info) by name.
        self.runhistory.add(
            config=config,
            instance=info.instance,
            seed=info.seed,
            budget=info.budget,
            **{field.name: getattr(value, field.name) for field in dataclasses.fields(value)},
            force_update=True,  # replaces a stale RUNNING entry; lookup() never returns one
        )
        self._ids.setdefault(config_key(config), self.runhistory.config_ids[config])


def lookup_trial(runhistory: RunHistory, info: TrialInfo) -> TrialValue | None:
    """The stored result of ``info`` (same configuration, instance, seed and budget), or None.

    Use it in a custom ask/tell loop to skip trials that were already evaluated.
    """
    return _TrialIndex(runhistory).lookup(info)


def _save_atomically(runhistory: RunHistory, path: Path) -> None:
    # A kill during the write must leave the previous complete file, never a truncated one.
    with atomic_path(path, suffix=".json") as tmp:
        runhistory.save(tmp)


# ---------------------------------------------------------------------- evaluation loop
def _evaluate(target: TargetFunction, info: TrialInfo) -> TrialValue:
    """Run the target the way SMAC's TargetFunctionRunner does (crash -> CRASHED, cost inf)."""
    kwargs: dict[str, Any] = {"seed": info.seed}
    if info.budget is not None:
        kwargs["budget"] = info.budget
    start, cpu_start = time.time(), time.process_time()
    try:
        result = target(copy.deepcopy(info.config), **kwargs)
    except Exception as err:
        return TrialValue(
            cost=math.inf,
            time=time.time() - start,
            cpu_time=time.process_time() - cpu_start,
            status=StatusType.CRASHED,
            starttime=start,
            endtime=time.time(),
            additional_info={"traceback": traceback.format_exc(), "error": repr(err)},
        )
    cpu_time, end = time.process_time() - cpu_start, time.time()
    if isinstance(result, tuple) and len(result) != 2:
        raise ValueError(
            f"the target returned a tuple of {len(result)} items; return a float cost or "
            "(cost, additional_info dict) as for SMAC."
        )
    cost, additional_info = result if isinstance(result, tuple) else (result, {})
    if isinstance(cost, (np.ndarray, np.generic)) and np.size(cost) == 1:
        cost = np.asarray(cost).item()
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        raise ValueError(
            f"the target returned cost {cost!r}; return a float cost or (cost, additional_info "
            "dict) as for SMAC — these optimizers are single-objective."
        )
    if not isinstance(additional_info, dict):
        raise ValueError(
            f"the target returned additional_info of type {type(additional_info).__name__}; "
            "return (cost, dict) with a JSON-serialisable dict."
        )
    status = StatusType.SUCCESS
    if not math.isfinite(cost):  # SMAC treats a non-finite cost as a crash
        status, cost = StatusType.CRASHED, math.inf
    return TrialValue(
        cost=float(cost),
        time=end - start,
        cpu_time=cpu_time,
        status=status,
        starttime=start,
        endtime=end,
        additional_info=additional_info,
    )


def _evaluate_all(
    target: TargetFunction | AbstractRunner, trials: Mapping[Hashable, TrialInfo]
) -> Iterator[tuple[Hashable, TrialValue]]:
    """Evaluate ``trials`` (key -> trial) and yield ``(key, value)`` as each result comes in."""
    if not isinstance(target, AbstractRunner):
        for key, info in trials.items():
            yield key, _evaluate(target, info)
        return
    waiting = list(trials.items())
    for _, info in waiting:
        target.submit_trial(trial_info=info)  # blocks while every worker is busy
    while waiting:
        for info, value in target.iter_results():
            # Results come back as copies (pickled by Dask): match them by value.
            match = next(i for i, (_, asked) in enumerate(waiting) if asked == info)
            key, _ = waiting.pop(match)
            yield key, value
        if waiting:
            target.wait()


def run_optimizer(
    optimizer: AskTellOptimizer,
    target: TargetFunction | AbstractRunner,
    *,
    n_trials: int,
    walltime: float = math.inf,
    runhistory: RunHistory | None = None,
    save_path: str | Path | None = None,
    callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]] = (),
    max_consecutive_revisits: int = 1000,
    batch_size: int = 1,
) -> RunHistory:
    """Ask -> evaluate -> tell until ``n_trials`` trials, ``walltime`` or the optimizer's stop rule.

    A trial (configuration, seed, budget) that is already in ``runhistory`` is not evaluated again:
    its stored result is told instead. Such a trial left by an earlier, interrupted run is a
    *replay*: it counts toward ``n_trials``, so resuming with the same optimizer settings and the
    runhistory of the killed run continues it to ``n_trials`` without repeating a finished trial.
    A trial already told in this call is a *revisit* (the walk came back to a configuration): it
    is told again, costs no evaluation and does not count; ``max_consecutive_revisits`` in a row
    end the run (a tiny space is exhausted).

    Parameters
    ----------
    optimizer : AskTellOptimizer
        A fresh optimizer (nothing asked yet).
    target : TargetFunction | AbstractRunner
        ``target(config, seed=..., budget=...)`` returning a cost or (cost, additional_info);
        ``budget`` is only passed when the optimizer has one. An exception is recorded as
        ``StatusType.CRASHED`` with cost inf and the traceback in additional_info, and the run goes
        on; a non-finite cost is recorded as CRASHED too (SMAC's convention). Or a SMAC runner
        (``TargetFunctionRunner`` for time and memory limits, ``DaskParallelRunner`` for parallel
        trials): each trial is submitted to it and recorded with the status it reports.
    n_trials : int
        Distinct trials the run holds at the end: fresh evaluations plus replays.
    walltime : float, defaults to inf
        Seconds after which no new trial is started (measured in this call; replays are instant).
    runhistory : RunHistory | None
        Trials to replay / record into (e.g. :func:`load_runhistory` of the killed run); a new
        one by default. It is updated in place and returned.
    save_path : str | Path | None
        ``runhistory.json`` path, rewritten atomically after every evaluated trial.
    callbacks : Sequence[Callable[[TrialInfo, TrialValue], None]]
        Called after every *evaluated* trial (not for replays or revisits).
    max_consecutive_revisits : int, defaults to 1000
        Guard against endless revisits on a tiny space.
    batch_size : int, defaults to 1
        Trials asked at once with ``optimizer.ask_batch`` and evaluated together (in parallel on a
        Dask runner); a local search takes one step per batch, from the best of its neighbours.
        Each result is recorded (and saved) as soon as it is in; the batch is told once complete.
        A resumed run must use the same batch size to replay the same walk.

    Returns
    -------
    RunHistory
        The runhistory with every trial of the run.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative int, got {n_trials!r}.")
    if isinstance(max_consecutive_revisits, bool) or max_consecutive_revisits < 1:
        raise ValueError(
            f"max_consecutive_revisits must be a positive int, got {max_consecutive_revisits!r}."
        )
    if not walltime > 0:
        raise ValueError(f"walltime must be positive seconds, got {walltime!r}; pass e.g. 3600.")
    if optimizer.pending or optimizer.n_told:
        raise ValueError(
            "run_optimizer needs a fresh optimizer (nothing asked or told yet); create a new one "
            "with the same settings — the runhistory replays what the old one did."
        )
    if save_path is not None:
        save_path = Path(save_path)
        if save_path.suffix != ".json":
            raise ValueError(f"save_path must end in .json (SMAC's format), got {save_path}.")
    check_batch_size(batch_size)
    runhistory = RunHistory() if runhistory is None else runhistory
    index = _TrialIndex(runhistory)
    told: set[Hashable] = set()
    revisits_in_a_row = 0
    n_evaluated = n_replayed = n_revisits = 0
    start = time.monotonic()
    reason = f"{n_trials} trials done"
    while len(told) < n_trials:
        if optimizer.should_stop():
            reason = f"{optimizer.name} stopping rule"
            break
        if time.monotonic() - start >= walltime:
            reason = f"walltime of {walltime} s used"
            break
        size = min(batch_size, n_trials - len(told))
        infos = [optimizer.ask()] if size == 1 else optimizer.ask_batch(size)
        keys = [(config_key(i.config), i.instance, i.seed, i.budget) for i in infos]
        values: list[TrialValue | None] = [index.lookup(info) for info in infos]
        # Evaluate each new trial once, even if the batch holds it twice.
        fresh = {key: info for key, info, value in zip(keys, infos, values) if value is None}
        results: dict[Hashable, TrialValue] = {}
        for key, value in _evaluate_all(target, fresh):
            index.add(fresh[key], value)
            if save_path is not None:
                _save_atomically(runhistory, save_path)
            results[key] = value
        n_evaluated += len(results)
        for info, key, stored in zip(infos, keys, values):
            value = results.pop(key, None)
            evaluated = value is not None
            value = stored if stored is not None else (value or index.lookup(info))
            assert value is not None  # every trial was evaluated or stored
            if key in told:
                n_revisits += 1
                revisits_in_a_row += 1
            else:
                told.add(key)
                revisits_in_a_row = 0
                n_replayed += not evaluated
            optimizer.tell(info, value)
            if evaluated:
                for callback in callbacks:
                    callback(info, value)
        if revisits_in_a_row >= max_consecutive_revisits:
            reason = f"{max_consecutive_revisits} revisits in a row (space exhausted?)"
            break
    logger.info(
        "%s stopped (%s): %d evaluated, %d replayed, %d revisits; incumbent cost %s",
        optimizer.name,
        reason,
        n_evaluated,
        n_replayed,
        n_revisits,
        optimizer.incumbent_cost,
    )
    return runhistory
