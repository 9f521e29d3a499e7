"""Checks of :class:`~safs_smac.problem.SAFSProblem`'s arguments, and what ``pruning=`` names: a
pruning scope or a pruning strategy.

Imports :mod:`safs_smac.pruning` and :mod:`safs_smac.problem.outcome` only.
"""

from __future__ import annotations

import math

from safs_smac import pruning as pruning_lib
from safs_smac.problem.outcome import OBJECTIVES, PRUNING_SCOPES


def resolve_pruning(
    pruning: str | pruning_lib.PruningSchedule,
    prune_schedule: str | pruning_lib.PruningSchedule,
) -> tuple[str, pruning_lib.PruningSchedule]:
    """The pruning scope and strategy that ``SAFSProblem(pruning=..., prune_schedule=...)`` means.

    ``pruning`` is a scope (``"layerwise"``, ``"global"``; the strategy is then
    ``prune_schedule``) or a strategy (a name registered in
    :data:`~safs_smac.pruning.PRUNING_SCHEDULES` such as ``"ap"`` or ``"set"``, or a
    :class:`~safs_smac.pruning.PruningSchedule`), which then runs at the first scope it supports:
    ``pruning="ap"`` is ``pruning="global", prune_schedule="ap"``, with the same settings and
    cache keys.
    """
    if isinstance(pruning, str) and pruning in PRUNING_SCOPES:
        scope, schedule = pruning, pruning_lib.resolve_schedule(prune_schedule)
    else:
        if not isinstance(pruning, pruning_lib.PruningSchedule) and (
            pruning_lib.schedule_key(pruning) not in pruning_lib.PRUNING_SCHEDULES
        ):
            raise ValueError(
                f"unknown pruning {pruning!r}; valid values: {', '.join(PRUNING_SCOPES)} (scopes) "
                f"or a pruning strategy: {', '.join(pruning_lib.PRUNING_SCHEDULES)} (or a "
                "safs_smac.pruning.PruningSchedule instance)"
            )
        default = isinstance(prune_schedule, str) and (
            pruning_lib.schedule_key(prune_schedule) == "one-shot"
        )
        if not default:
            raise ValueError(
                f"pruning={pruning!r} is a strategy and prune_schedule={prune_schedule!r} another; "
                "pass the strategy once: pruning=<strategy>, or pruning=<scope> with "
                "prune_schedule=<strategy>"
            )
        schedule = pruning_lib.resolve_schedule(pruning)
        scope = schedule.scopes[0]
    if scope not in schedule.scopes:
        raise ValueError(
            f"pruning schedule {schedule.name!r} supports "
            f"pruning={' or '.join(map(repr, schedule.scopes))}, not {scope!r}"
        )
    return scope, schedule


def check_arguments(
    pruning_rate: float,
    max_budget: object,
    dense_epochs: int | None,
    objective: str,
    num_threads: int | None,
    continuation_max_bytes: int,
) -> None:
    """Raise ``ValueError`` (saying what to pass instead) for an invalid numeric argument."""
    if not 0.0 <= float(pruning_rate) < 1.0:
        raise ValueError(
            f"pruning_rate must satisfy 0 <= rate < 1, got {pruning_rate}; "
            "use e.g. 0.99 for 99% sparsity"
        )
    if (
        isinstance(max_budget, bool)
        or not isinstance(max_budget, (int, float))
        or not math.isfinite(max_budget)
        or int(max_budget) != max_budget
        or max_budget < 1
    ):
        raise ValueError(
            f"max_budget must be a whole number of epochs >= 1, got {max_budget!r}; "
            f"pass e.g. max_budget=9"
        )
    if dense_epochs is not None and int(dense_epochs) < 0:
        raise ValueError(f"dense_epochs must be >= 0, got {dense_epochs}")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {objective!r}; valid objectives: {', '.join(OBJECTIVES)}"
        )
    if num_threads is not None and int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
    if isinstance(continuation_max_bytes, bool) or int(continuation_max_bytes) < 0:
        raise ValueError(
            f"continuation_max_bytes must be an integer >= 0, got {continuation_max_bytes!r}; "
            "pass 0 to keep no state between trials"
        )
