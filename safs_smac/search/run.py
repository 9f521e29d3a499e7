"""One run directory: its identity, claiming it, searching it with a backend, finishing it.

The protocols (:mod:`.staged`, :mod:`.paper`) compose these pieces; a joint search is one
:func:`optimize_one`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from ConfigSpace import Configuration

from safs_smac._version import __version__
from safs_smac.problem import FinalEvaluation, SAFSProblem
from safs_smac.report import write_csv
from safs_smac.runs import environment, prepare_run_dir, run_identity
from safs_smac.runs.results import SearchResult, concat_stage_trials, load_result, write_result
from safs_smac.search.backends import ask_tell_optimizer, run_ask_tell, run_smac
from safs_smac.search.names import SMAC_OPTIMIZERS
from safs_smac.search.settings import FINAL_SEED_OFFSET, SearchSettings

__all__ = ["claim_run_dir", "finish_run", "identity", "optimize_one", "two_stage_result"]

logger = logging.getLogger(__name__)


def identity(
    problem: SAFSProblem, optimizer: str, *, budgets: bool, **settings: Any
) -> dict[str, Any]:
    """The ``run.json`` of a run of ``problem`` by ``optimizer`` (a label) with ``settings``.

    ``budgets``: whether any trial runs below the max budget. Only then does the span of the
    learning-rate schedule (``schedule_horizon``) change results, so only then is it part of the
    identity; runs that train every trial at the max budget keep the identity they had before
    schedules spanned the max budget, and resume.
    """
    problem_settings = problem.settings()
    if not budgets:
        problem_settings.pop("schedule_horizon", None)
    return run_identity(
        problem_settings,
        optimizer,
        version=__version__,
        data=problem.dataset.fingerprint(),
        env=environment(problem.num_threads),
        **settings,
    )


def claim_run_dir(
    problem: SAFSProblem, output_dir: Path, settings: Mapping[str, Any], *, overwrite: bool
) -> SearchResult | None:
    """:func:`~safs_smac.runs.prepare_run_dir`, then warm the problem's caches (dense training,
    pruning) before any search clock starts; the result instead when this run already finished."""
    if prepare_run_dir(output_dir, settings, overwrite=overwrite) == "finished":
        try:
            result = load_result(output_dir)
        except (ValueError, FileNotFoundError) as err:
            # The search's state is intact; only the retraining's files are not: redo those.
            logger.warning("%s; retraining the incumbent to write them again", err)
            (output_dir / "summary.json").unlink(missing_ok=True)
        else:
            logger.info("%s already holds this finished run; returning its results", output_dir)
            return result
    problem.pruned_checkpoint()
    return None


def optimize_one(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: SearchSettings,
    *,
    overwrite: bool,
    extra_settings: Mapping[str, Any] | None = None,
    baseline: FinalEvaluation | None = None,
    desc: str = "trials",
    initial_configs: Sequence[Configuration] = (),
) -> SearchResult:
    """One search in one run directory: identity check, search, retraining, result files."""
    extra = dict(extra_settings or {}, **search.limits())
    common = search_fields(search, "n_trials", "walltime", "max_budget", "seed")
    if optimizer in SMAC_OPTIMIZERS:
        ask_tell = None
        settings = identity(
            problem,
            optimizer,
            budgets=SMAC_OPTIMIZERS[optimizer][1],
            **common,
            **search_fields(search, "min_budget", "n_workers", "eta"),
            **intensifier_setting(search, budgets=SMAC_OPTIMIZERS[optimizer][1]),
            **extra,
        )
    else:
        ask_tell = ask_tell_optimizer(problem, optimizer, search)
        # The optimizer's meta (algorithm settings) is part of the run's identity: a resumed run
        # must replay the same walk. Batches of n_workers trials make another walk; one worker
        # keeps the identities of runs made before batches existed.
        workers = {"n_workers": search.n_workers} if search.n_workers > 1 else {}
        settings = identity(
            problem,
            optimizer,
            budgets=False,
            **common,
            optimizer_settings=ask_tell.meta,
            **workers,
            **extra,
        )
    finished = claim_run_dir(problem, output_dir, settings, overwrite=overwrite)
    if finished is not None:
        return finished
    if ask_tell is None:
        incumbent, cost, trials = run_smac(
            problem, optimizer, output_dir, search, desc, initial_configs
        )
    else:
        incumbent, cost, trials = run_ask_tell(problem, ask_tell, output_dir, search, desc)
    # The search is over: no trial will continue. (A killed run keeps its states for the resume.)
    freed = problem.release_continuations()
    if freed:
        logger.info("released %d bytes of continuation states", freed)
    return finish_run(
        problem,
        output_dir,
        incumbent,
        cost,
        trials,
        seed=search.seed,
        epochs=search.final_epochs,
        baseline=baseline,
    )


def finish_run(
    problem: SAFSProblem,
    output_dir: Path,
    incumbent: Configuration,
    incumbent_cost: float,
    trials: pd.DataFrame,
    *,
    seed: int,
    epochs: int | None = None,
    baseline: FinalEvaluation | None = None,
) -> SearchResult:
    """Retrain the incumbent and the baseline and write the result files.

    Both are trained with seed ``seed + FINAL_SEED_OFFSET``, which no trial used, so the final
    accuracy is a fresh measurement of the incumbent, not a replay of its best trial. ``epochs``
    of the retraining default to ``problem.max_budget``; a ``baseline`` evaluated before (same
    problem, seed and epochs) is reused instead of retrained.
    """
    # The trials first: if retraining fails, they still say what the search did.
    write_csv(trials, output_dir / "results.csv")
    retrain_seed = int(seed) + FINAL_SEED_OFFSET
    final = problem.final_evaluation(problem.decode(incumbent), seed=retrain_seed, epochs=epochs)
    if baseline is None:
        baseline = problem.final_evaluation(
            problem.baseline_spec(), seed=retrain_seed, epochs=epochs
        )
    result = SearchResult(
        output_dir=output_dir,
        incumbent=incumbent,
        incumbent_cost=float(incumbent_cost),
        final=final,
        baseline=baseline,
        dense=problem.dense_metrics(),
        trials=trials,
        **problem_facts(problem),
    )
    write_result(result, title=f"{problem.model_name} / {problem.dataset_name}")
    return result


def problem_facts(problem: SAFSProblem) -> dict[str, Any]:
    """What a result records about its problem: pruning epochs and name, chance level."""
    return {
        "prune_epochs": problem.prune_epochs,
        "pruning": problem.prune_schedule.label,
        "chance": 1.0 / problem.dataset.num_classes,
    }


def start_two_stage_run(
    problem: SAFSProblem,
    label: str,
    protocol: str,
    output_dir: Path,
    search: SearchSettings,
    *,
    overwrite: bool,
    budgets: bool,
    **settings: Any,
) -> SearchResult | None:
    """Claim the run directory of a two-stage protocol; the result if it already finished.

    The checkpoints are loaded once here: both stage problems share them.
    """
    run = identity(
        problem,
        label,
        budgets=budgets,
        protocol=protocol,
        **search_fields(search, "walltime", "min_budget", "max_budget", "seed", "n_workers", "eta"),
        **intensifier_setting(search, budgets=budgets),
        **settings,
    )
    return claim_run_dir(problem, output_dir, run, overwrite=overwrite)


def search_fields(search: SearchSettings, *names: str) -> dict[str, Any]:
    """``{name: search.<name>}``: search settings a run's identity records under their names."""
    return {name: getattr(search, name) for name in names}


def intensifier_setting(search: SearchSettings, *, budgets: bool) -> dict[str, str]:
    """``{"intensifier": ...}`` for a run whose trials use budgets (part of its identity)."""
    return {"intensifier": search.intensifier} if budgets else {}


def two_stage_result(
    problem: SAFSProblem,
    output_dir: Path,
    chosen: SearchResult,
    first: SearchResult,
    second: SearchResult,
    *,
    later_stage_wins: bool,
    references: dict[str, FinalEvaluation] | None = None,
) -> SearchResult:
    """The result of a two-stage protocol: ``chosen``'s incumbent, both stages' trials."""
    return SearchResult(
        output_dir=output_dir,
        incumbent=chosen.incumbent,
        incumbent_cost=chosen.incumbent_cost,
        final=chosen.final,
        baseline=second.baseline,
        dense=second.dense,
        trials=concat_stage_trials(
            {1: first.trials, 2: second.trials}, later_stage_wins=later_stage_wins
        ),
        stages={"stage1": first, "stage2": second},
        references=dict(references or {}),
        **problem_facts(problem),
    )
