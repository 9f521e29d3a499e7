"""The settings of one search, validated before anything is written."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smac.runhistory import TrialInfo, TrialValue

from safs_smac import parallel
from safs_smac.search.names import INTENSIFIERS, ask_tell_names

__all__ = ["FINAL_SEED_OFFSET", "SearchSettings", "search_settings"]

# The final retraining trains with seed + FINAL_SEED_OFFSET, a seed no trial of the run used
# (ask/tell optimizers train every trial with the run's seed, SMAC draws its own). Retraining the
# incumbent with one of its trials' seeds would repeat that trial and keep its lucky draw: the
# reported accuracy would then be biased upwards for some optimizers and not for others.
FINAL_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class SearchSettings:
    """The settings of one search (one run directory), validated."""

    n_trials: int
    walltime: float
    min_budget: float
    max_budget: float  # epochs of a trial at the highest fidelity
    final_epochs: int  # epochs of the retrained incumbent and baseline
    seed: int
    n_workers: int
    dask_client: Any | None
    scheduler_file: Path | None
    trial_walltime_limit: float | None
    trial_memory_limit: float | None
    eta: int
    intensifier: str  # multi-fidelity facades: "hyperband" or "successive-halving"
    progress: bool
    callbacks: tuple[Callable[[TrialInfo, TrialValue], None], ...]
    optimizer_kwargs: dict[str, Any]

    def replace(self, **changes: Any) -> SearchSettings:
        return SearchSettings(**{**self.__dict__, **changes})

    @property
    def retrain_seed(self) -> int:
        """Seed of the final retraining of the incumbent, the baseline and the references."""
        return self.seed + FINAL_SEED_OFFSET

    def limits(self) -> dict[str, float]:
        """The trial limits that were set: they change results, so they are part of a run's
        identity."""
        limits = {
            "trial_walltime_limit": self.trial_walltime_limit,
            "trial_memory_limit": self.trial_memory_limit,
        }
        return {name: value for name, value in limits.items() if value is not None}

    def check_optimizer(self, optimizer: str) -> None:
        """Refuse ask/tell settings for a SMAC facade."""
        if optimizer not in ask_tell_names() and self.optimizer_kwargs:
            raise ValueError(
                f"optimizer_kwargs apply to the ask/tell optimizers "
                f"({', '.join(ask_tell_names())}), not to the SMAC facade {optimizer!r}; "
                "drop optimizer_kwargs"
            )


def search_settings(
    *,
    n_trials: int,
    walltime: float,
    min_budget: float,
    max_budget: float,
    seed: int,
    n_workers: int,
    dask_client: Any | None,
    scheduler_file: str | Path | None,
    trial_walltime_limit: float | None,
    trial_memory_limit: float | None,
    eta: int,
    intensifier: str,
    progress: bool,
    callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]],
    optimizer_kwargs: Mapping[str, Any] | None,
) -> SearchSettings:
    """Validate the arguments of :func:`safs_smac.optimize` (one error per bad value)."""
    if int(n_trials) <= 0:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if int(n_workers) < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    for name, limit in (
        ("trial_walltime_limit", trial_walltime_limit),
        ("trial_memory_limit", trial_memory_limit),
    ):
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise ValueError(
                f"{name} must be a positive number (seconds / megabytes) or None, got {limit}"
            )
    if trial_walltime_limit is not None and trial_walltime_limit < 1:
        raise ValueError(
            f"trial_walltime_limit must be at least 1 second (the trial limiter counts whole "
            f"seconds), got {trial_walltime_limit}"
        )
    if dask_client is not None and scheduler_file is not None:
        raise ValueError("pass dask_client or scheduler_file, not both")
    if scheduler_file is not None:
        scheduler_file = parallel.check_scheduler_file(scheduler_file)
    max_budget, min_budget = float(max_budget), float(min_budget)
    if not 0 < min_budget <= max_budget:
        raise ValueError(
            f"budgets must satisfy 0 < min_budget <= max_budget, got min {min_budget} and max "
            f"{max_budget}; lower --min-budget or raise --max-budget"
        )
    if not math.isfinite(max_budget):
        raise ValueError(f"max_budget must be a finite number of epochs, got {max_budget}")
    if math.isnan(walltime) or walltime <= 0:
        raise ValueError(f"walltime must be positive seconds (inf: no limit), got {walltime}")
    if isinstance(eta, bool) or int(eta) != eta or int(eta) < 2:
        raise ValueError(
            f"eta must be an integer >= 2 (successive halving keeps 1/eta per rung), got {eta!r}"
        )
    if intensifier not in INTENSIFIERS:
        raise ValueError(
            f"intensifier must be one of {', '.join(INTENSIFIERS)}, got {intensifier!r}"
        )
    return SearchSettings(
        n_trials=int(n_trials),
        walltime=float(walltime),
        min_budget=min_budget,
        max_budget=max_budget,
        final_epochs=round(max_budget),
        seed=int(seed),
        n_workers=int(n_workers),
        dask_client=dask_client,
        scheduler_file=None if scheduler_file is None else Path(scheduler_file),
        trial_walltime_limit=trial_walltime_limit,
        trial_memory_limit=trial_memory_limit,
        eta=int(eta),
        intensifier=intensifier,
        progress=progress,
        callbacks=tuple(callbacks),
        optimizer_kwargs=dict(optimizer_kwargs or {}),
    )


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1, or a ValueError naming ``name``."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def stage_split(
    n_trials: int, stage1_trials: int | None, stage2_trials: int | None, protocol: str
) -> tuple[int, int]:
    """Trials of each stage of a two-stage protocol (default: half each)."""
    n1 = n_trials // 2 if stage1_trials is None else positive_int("stage1_trials", stage1_trials)
    n2 = n_trials - n1 if stage2_trials is None else positive_int("stage2_trials", stage2_trials)
    if n1 < 1 or n2 < 1:
        raise ValueError(
            f"protocol={protocol!r} needs at least one trial per stage, got {n1} and {n2} from "
            f"n_trials={n_trials}; raise n_trials or pass stage1_trials and stage2_trials"
        )
    return n1, n2
