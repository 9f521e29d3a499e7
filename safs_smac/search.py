"""``optimize``: run a search on a :class:`~safs_smac.problem.SAFSProblem` and report it.

A run directory is the unit of work. It holds SMAC's own directory (``smac/<seed>/``: scenario,
runhistory, intensifier state, so SMAC's resume and DeepCAVE work on it), ``run.json`` (the settings
that identify the run), and, once finished, ``results.csv``, ``incumbent.json``,
``summary.json`` and ``trajectory.png``. Re-running the same command resumes; a different
command aimed at the same directory is refused unless ``overwrite=True``.

Two kinds of optimiser fill ``smac/<seed>/runhistory.json``: SMAC's facades, and the ask/tell
optimisers of :mod:`safs_smac.optimizers` (LAHC and its baselines), which evaluate every trial at
the max budget, write the same RunHistory format and resume by replaying it.

Three protocols:

* ``"staged"`` (default): coarse to fine. Stage 1 searches one operator and one pair of scales for
  the whole network together with the fine-tuning hyperparameters (``granularity="network"``, a
  ten-dimensional space a surrogate can learn from a few trials), starting with every operator
  under a robust sparse fine-tuning recipe; stage 2 searches per layer, warm-started with stage
  1's incumbent expanded to every site and its single-site neighbours. Both start their rungs at
  ``max_budget / eta``. The better of the two final retrains *on validation data* is the result,
  so the per-layer search can only add to the network-level one. Stage 1 also yields the rows
  "best single operator" and "tuned fine-tuning, default activation" of the table.
* ``"joint"``: one run over the problem's space (by default operators, scales and fine-tuning
  hyperparameters together, searched by multi-fidelity SMAC).
* ``"paper"``: the SAFS paper's two stages. Stage 1 searches the operators with LAHC (alpha = beta
  = 1 frozen, default recipe); stage 2 searches the scales and the fine-tuning hyperparameters with
  SMAC, the stage-1 operators fixed; the stage-2 incumbent is retrained at the max budget. Each
  stage is a full run directory (``stage1/``, ``stage2/``) inside the protocol's directory, whose
  top-level files cover both stages, so ``safs-smac report`` works on it unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ConfigSpace import Configuration
from smac import (
    BlackBoxFacade,
    HyperbandFacade,
    HyperparameterOptimizationFacade,
    MultiFidelityFacade,
    RandomFacade,
    Scenario,
)
from smac.callback import Callback
from smac.runhistory import RunHistory, StatusType, TrialInfo, TrialValue

import safs_smac
from safs_smac import parallel
from safs_smac._io import atomic_write_json, read_json
from safs_smac.optimizers import (
    OPTIMIZERS,
    AskTellOptimizer,
    create_optimizer,
    load_runhistory,
    run_optimizer,
)
from safs_smac.problem import WORST_COST, FinalEvaluation, SAFSProblem
from safs_smac.pruning import SPARSE_FINETUNE
from safs_smac.report import (
    format_table,
    plot_trajectory,
    read_trials,
    trajectory_references,
    trials_dataframe,
    with_incumbent_columns,
    work_summary,
    write_csv,
)
from safs_smac.space import NETWORK_SITE
from safs_smac.workers import threads_per_worker

__all__ = [
    "ASK_TELL_OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "PROTOCOLS",
    "SMAC_OPTIMIZERS",
    "SearchResult",
    "optimize",
    "resolve_optimizers",
]

logger = logging.getLogger(__name__)

# name -> (facade class, uses budgets)
SMAC_OPTIMIZERS: dict[str, tuple[type, bool]] = {
    "smac-mf": (MultiFidelityFacade, True),
    "smac-hpo": (HyperparameterOptimizationFacade, False),
    "smac-bb": (BlackBoxFacade, False),
    "smac-random": (RandomFacade, False),
    "hyperband": (HyperbandFacade, True),
}
# LAHC, i.i.d. random search, greedy walk, simulated annealing: every trial at the max budget.
ASK_TELL_OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZERS)
OPTIMIZER_NAMES: tuple[str, ...] = (*SMAC_OPTIMIZERS, *ASK_TELL_OPTIMIZERS)
PROTOCOLS = ("staged", "joint", "paper")
# The SMAC facades with a surrogate model and a sized initial design: protocol="staged" runs these.
STAGED_OPTIMIZERS = ("smac-mf", "smac-hpo", "smac-bb")
# The final retraining trains with seed + FINAL_SEED_OFFSET, a seed no trial of the run used
# (ask/tell optimisers train every trial with the run's seed, SMAC draws its own). Retraining the
# incumbent with one of its trials' seeds would repeat that trial and keep its lucky draw: the
# reported accuracy would then be biased upwards for some optimisers and not for others.
FINAL_SEED_OFFSET = 10_000
# What each protocol runs when no optimiser is named.
DEFAULT_JOINT_OPTIMIZER = "smac-mf"
DEFAULT_STAGE1_OPTIMIZER = "lahc"
DEFAULT_STAGE2_OPTIMIZER = "smac-hpo"


@dataclass
class SearchResult:
    """What a finished search found.

    Attributes
    ----------
    output_dir
        The run directory.
    incumbent
        Best configuration (SMAC's incumbent; for multi-fidelity runs, at the highest budget seen;
        for ``protocol="paper"``, the stage-2 incumbent, a configuration of the scales_hpo space).
    incumbent_cost
        Its cost during the search (1 - validation accuracy, ties broken by the validation loss;
        see :func:`safs_smac.problem.trial_cost`).
    final
        The incumbent fine-tuned again at the max budget, with a seed no trial used: validation
        and test accuracy, per-site operators and learned alpha/beta.
    baseline
        Magnitude pruning + fine-tuning with the default activation and the dense recipe,
        same epochs.
    dense
        Validation and test accuracy of the dense model.
    trials
        One row per trial (see :func:`safs_smac.report.trials_dataframe`); with
        ``protocol="paper"`` both stages, in order, with a ``stage`` column.
    stages
        ``protocol="paper"`` and ``"staged"``: the full results of ``"stage1"`` and ``"stage2"``
        (paper: operators, then scales + HPO; staged: network level, then per layer); empty
        otherwise.
    references
        Further rows of the table, each fine-tuned like ``final``: with ``protocol="staged"``,
        ``"single_operator"`` (stage 1's incumbent: one operator for the whole network) and
        ``"tuned_finetuning"`` (the best stage-1 configuration that keeps the default activation).
    prune_epochs
        Fine-tuning epochs the pruning schedule spent before the search (0 for one-shot).
    pruning
        How the table names the pruning, e.g. ``"gradual magnitude pruning"``.
    chance
        Chance-level accuracy (``1 / classes``): the line a collapsed fine-tune ends on.
    """

    output_dir: Path
    incumbent: Configuration
    incumbent_cost: float
    final: FinalEvaluation
    baseline: FinalEvaluation
    dense: dict[str, Any]
    trials: pd.DataFrame
    stages: dict[str, SearchResult] = field(default_factory=dict)
    references: dict[str, FinalEvaluation] = field(default_factory=dict)
    prune_epochs: int = 0
    pruning: str | None = None
    chance: float | None = None

    @property
    def operators(self) -> dict[str, str]:
        return self.final.operators

    @property
    def alpha(self) -> dict[str, Any]:
        return self.final.alpha

    @property
    def beta(self) -> dict[str, Any]:
        return self.final.beta

    def summary(self) -> dict[str, Any]:
        """The JSON written to ``summary.json``."""
        summary = {
            "dense": self.dense,
            "baseline": self.baseline.to_dict(),
            "incumbent": self.final.to_dict(),
            "incumbent_cost": self.incumbent_cost,
            "n_trials": len(self.trials),
            "total_epochs": _total_epochs(self.trials),
            "prune_epochs": self.prune_epochs,
            "work": work_summary(self.trials),
        }
        # Absent from summaries written before they were recorded; the table then says less.
        if self.pruning is not None:
            summary["pruning"] = self.pruning
        if self.chance is not None:
            summary["chance"] = self.chance
        if self.references:
            summary["references"] = {k: v.to_dict() for k, v in self.references.items()}
        if self.stages:
            summary["stages"] = {
                name: {
                    "incumbent": stage.final.to_dict(),
                    "incumbent_cost": stage.incumbent_cost,
                    "n_trials": len(stage.trials),
                    "total_epochs": _total_epochs(stage.trials),
                }
                for name, stage in self.stages.items()
            }
        return summary

    def table(self) -> str:
        """The paper-shaped table as markdown."""
        return format_table(self.summary())


def _total_epochs(trials: pd.DataFrame) -> float:
    return float(trials["epochs"].sum()) if len(trials) else 0.0


def run_settings(problem: SAFSProblem, optimizer: str, **settings: Any) -> dict[str, Any]:
    """The JSON identity of a run: problem settings plus search settings.

    The ``environment`` entry (torch version and threads) is recorded, not compared: results are
    bit-for-bit reproducible for the same command, seed, torch version and thread count on the
    same machine, and a resume on another machine is allowed with a warning.
    """
    return {
        "safs_smac": safs_smac.__version__,
        "problem": problem.settings(),
        "optimizer": optimizer,
        **{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in settings.items()},
        ENVIRONMENT_KEY: _environment(problem),
    }


# run.json key that records where a run ran; not part of the run's identity.
ENVIRONMENT_KEY = "environment"


def _environment(problem: SAFSProblem) -> dict[str, Any]:
    import platform

    import torch

    return {
        "torch": torch.__version__,
        "torch_threads": problem.num_threads or torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def _identity(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != ENVIRONMENT_KEY}


def default_protocol(optimizer: str | None) -> str:
    """``"staged"`` for SMAC's model-based facades, else ``"joint"``.

    The staged protocol warm-starts the per-layer search with the network-level incumbent, which
    only a surrogate model can build on; the ask/tell optimisers, SMAC's random facade and
    Hyperband run one joint search.
    """
    return "staged" if optimizer is None or optimizer in STAGED_OPTIMIZERS else "joint"


def resolve_optimizers(optimizer: str | None, protocol: str = "joint") -> tuple[str, str | None]:
    """The optimiser(s) a protocol runs: ``(joint optimiser, None)`` or ``(stage 1, stage 2)``.

    With ``protocol="paper"``, an ask/tell name (``lahc``, ``random``, ``greedy``, ``sa``) replaces
    LAHC in stage 1 and a SMAC name replaces SMAC-HPO in stage 2; ``None`` keeps both defaults.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    if optimizer is not None and optimizer not in OPTIMIZER_NAMES:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; valid optimizers: {', '.join(OPTIMIZER_NAMES)}"
        )
    if protocol in ("joint", "staged"):
        return optimizer or DEFAULT_JOINT_OPTIMIZER, None
    stage1 = optimizer if optimizer in ASK_TELL_OPTIMIZERS else DEFAULT_STAGE1_OPTIMIZER
    stage2 = optimizer if optimizer in SMAC_OPTIMIZERS else DEFAULT_STAGE2_OPTIMIZER
    return stage1, stage2


def run_label(optimizer: str | None, protocol: str | None = None) -> str:
    """Short name of a run's search, e.g. ``staged-smac-mf`` or ``paper-lahc-smac-hpo``."""
    protocol = default_protocol(optimizer) if protocol is None else protocol
    first, second = resolve_optimizers(optimizer, protocol)
    if protocol == "staged":
        return f"staged-{first}"
    return first if second is None else f"paper-{first}-{second}"


def optimize(
    problem: SAFSProblem,
    optimizer: str | None = None,
    *,
    protocol: str | None = None,
    n_trials: int = 50,
    walltime: float = math.inf,
    min_budget: float = 1.0,
    max_budget: float | None = None,
    seed: int = 0,
    output_dir: str | Path = "safs_runs/run",
    n_workers: int = 1,
    dask_client: Any | None = None,
    scheduler_file: str | Path | None = None,
    trial_walltime_limit: float | None = None,
    trial_memory_limit: float | None = None,
    overwrite: bool = False,
    eta: int = 3,
    progress: bool = True,
    callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]] = (),
    optimizer_kwargs: Mapping[str, Any] | None = None,
    stage1_trials: int | None = None,
    stage1_epochs: int | None = None,
    stage2_trials: int | None = None,
    stage2_epochs: int | None = None,
) -> SearchResult:
    """Search the problem's space, then retrain and report the incumbent.

    Parameters
    ----------
    problem
        The :class:`SAFSProblem`.
    optimizer
        SMAC facades: ``"smac-mf"`` (Hyperband + random-forest BO, BOHB-like; budgets are
        fine-tuning epochs), ``"smac-hpo"`` (random-forest BO), ``"smac-bb"`` (Gaussian process
        BO), ``"smac-random"`` (SMAC's random facade) or ``"hyperband"`` (model-free). Ask/tell
        optimisers (:mod:`safs_smac.optimizers`): ``"lahc"`` (late acceptance hill climbing),
        ``"random"`` (i.i.d. random search), ``"greedy"`` (the reference's "RS", a greedy walk) or
        ``"sa"`` (simulated annealing). Only the multi-fidelity facades use budgets below
        ``max_budget``. ``None``: ``"smac-mf"``; for ``protocol="paper"`` see
        :func:`resolve_optimizers`.
    protocol
        ``"staged"`` (network level, then per layer warm-started from it; the default for SMAC
        facades; ``None`` picks it, or ``"joint"`` for an ask/tell optimiser),
        ``"joint"`` (one run over the problem's space) or ``"paper"`` (stage 1 operators, stage 2
        scales + fine-tuning hyperparameters), see the module docstring.
    n_trials
        Trials to run (a multi-fidelity trial at any budget counts as one). With
        ``protocol="paper"`` the default split is half for each stage.
    walltime
        Wall-clock limit of the search in seconds (final retraining not included); with
        ``protocol="paper"`` the limit of each stage.
    min_budget, max_budget
        Fine-tuning epochs of the lowest/highest fidelity; ``max_budget`` defaults to
        ``problem.max_budget`` and is what the incumbent and the baseline are retrained with.
    seed
        Seed of the optimiser; the final retraining uses ``seed + FINAL_SEED_OFFSET``.
    output_dir
        Run directory (see module docstring).
    n_workers
        Trials at a time. ``> 1`` starts a local Dask cluster of ``n_workers`` processes, each
        with ``cores // n_workers`` torch threads and, with ``device="auto"`` and several GPUs,
        its own GPU (round-robin). SMAC's facades keep every worker busy; the ask/tell
        optimisers evaluate ``n_workers`` trials per step with ``ask_batch`` (LAHC: the best of
        ``n_workers`` neighbours of the current state is the step's candidate), which is part of
        the run's identity. With several workers SMAC is no longer reproducible.
    dask_client
        A ``dask.distributed.Client`` of your own cluster (e.g. ``dask_jobqueue.SLURMCluster``)
        to run the trials on instead of a local cluster; it stays open. SMAC's facades use all
        its workers; ``n_workers`` still sets the ask/tell optimisers' batch size.
    scheduler_file
        The scheduler file of a running Dask cluster (``dask scheduler --scheduler-file F``), as
        an alternative to ``dask_client``.
    trial_walltime_limit, trial_memory_limit
        Limits of one trial, in seconds and megabytes: the trial runs in a child process (pynisher)
        and is recorded as ``TIMEOUT`` / ``MEMORYOUT`` when it exceeds them; the search goes on.
        The memory limit caps virtual memory, so leave room above the process's footprint (and
        avoid it with CUDA, which maps huge ranges). ``None``: no limit.
    overwrite
        Replace a *different* run found in ``output_dir`` instead of refusing.
    eta
        Successive-halving reduction factor for ``smac-mf`` and ``hyperband``.
    progress
        Show a progress bar (trials done, best so far, ETA).
    callbacks
        Called as ``callback(trial_info, trial_value)`` after every evaluated trial.
    optimizer_kwargs
        Settings of an ask/tell optimiser, e.g. ``{"history_length": 5}`` for LAHC. By default
        the trial budget ends every search: LAHC's ``min_steps`` is ``n_trials - 2`` (its idle rule
        cannot stop it earlier; pass ``{"min_steps": 20}`` for the reference's rule) and simulated
        annealing's schedule spans the ``n_trials``.
    stage1_trials, stage2_trials
        ``protocol="paper"`` or ``"staged"``: trials of each stage (default ``n_trials // 2`` and
        the rest).
    stage1_epochs, stage2_epochs
        ``protocol="paper"``: fine-tuning epochs of every stage-1 / stage-2 trial (default
        ``max_budget``; the reference used 80 per trial and 200 for the final retraining).
    """
    protocol = default_protocol(optimizer) if protocol is None else protocol
    stage1_opt, stage2_opt = resolve_optimizers(optimizer, protocol)
    # The search sets the problem's max budget; the caller's problem keeps its own. A shallow
    # copy shares the data set and the loaded checkpoints, as with_space does.
    problem = copy.copy(problem)
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
    if dask_client is not None and scheduler_file is not None:
        raise ValueError("pass dask_client or scheduler_file, not both")
    if scheduler_file is not None:
        scheduler_file = parallel.check_scheduler_file(scheduler_file)
    max_budget = float(problem.max_budget if max_budget is None else max_budget)
    min_budget = float(min_budget)
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
    search = _SearchSettings(
        n_trials=int(n_trials),
        walltime=float(walltime),
        min_budget=min_budget,
        max_budget=max_budget,
        final_epochs=round(max_budget),
        seed=int(seed),
        n_workers=int(n_workers),
        dask_client=dask_client,
        scheduler_file=scheduler_file,
        trial_walltime_limit=trial_walltime_limit,
        trial_memory_limit=trial_memory_limit,
        eta=int(eta),
        progress=progress,
        callbacks=tuple(callbacks),
        optimizer_kwargs=dict(optimizer_kwargs or {}),
    )
    stage_settings = {
        "stage1_trials": stage1_trials,
        "stage1_epochs": stage1_epochs,
        "stage2_trials": stage2_trials,
        "stage2_epochs": stage2_epochs,
    }
    if protocol in ("joint", "staged"):
        allowed = ("stage1_trials", "stage2_trials") if protocol == "staged" else ()
        given = [k for k, v in stage_settings.items() if v is not None and k not in allowed]
        if given:
            raise ValueError(
                f"{', '.join(given)} do not apply to protocol={protocol!r}; drop them or pass "
                "protocol='paper'"
            )
        _check_optimizer_settings(stage1_opt, search)
        problem.max_budget = round(max_budget)
        if protocol == "staged":
            return _optimize_staged(
                problem,
                stage1_opt,
                Path(output_dir),
                search,
                overwrite=overwrite,
                stage1_trials=stage1_trials,
                stage2_trials=stage2_trials,
            )
        return _optimize_one(problem, stage1_opt, Path(output_dir), search, overwrite=overwrite)
    assert stage2_opt is not None
    return _optimize_paper(
        problem,
        stage1_opt,
        stage2_opt,
        Path(output_dir),
        search,
        overwrite=overwrite,
        **stage_settings,
    )


@dataclass(frozen=True)
class _SearchSettings:
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
    progress: bool
    callbacks: tuple[Callable[[TrialInfo, TrialValue], None], ...]
    optimizer_kwargs: dict[str, Any]

    def replace(self, **changes: Any) -> _SearchSettings:
        return _SearchSettings(**{**self.__dict__, **changes})


def _check_optimizer_settings(optimizer: str, search: _SearchSettings) -> None:
    if optimizer not in ASK_TELL_OPTIMIZERS and search.optimizer_kwargs:
        raise ValueError(
            f"optimizer_kwargs apply to the ask/tell optimizers ({', '.join(ASK_TELL_OPTIMIZERS)})"
            f", not to the SMAC facade {optimizer!r}; drop optimizer_kwargs"
        )


def _optimize_one(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: _SearchSettings,
    *,
    overwrite: bool,
    extra_settings: Mapping[str, Any] | None = None,
    baseline: FinalEvaluation | None = None,
    desc: str = "trials",
    initial_configs: Sequence[Configuration] = (),
) -> SearchResult:
    """One search in one run directory: identity check, search, retraining, result files."""
    extra = dict(extra_settings or {})
    ask_tell: AskTellOptimizer | None = None
    if optimizer in SMAC_OPTIMIZERS:
        settings = run_settings(
            problem,
            optimizer,
            n_trials=search.n_trials,
            walltime=search.walltime,
            min_budget=search.min_budget,
            max_budget=search.max_budget,
            seed=search.seed,
            n_workers=search.n_workers,
            eta=search.eta,
            **_limit_settings(search),
            **extra,
        )
    else:
        kwargs = {**_ask_tell_defaults(optimizer, search.n_trials), **search.optimizer_kwargs}
        try:
            ask_tell = create_optimizer(optimizer, problem.configspace, seed=search.seed, **kwargs)
        except TypeError as err:
            raise ValueError(
                f"optimizer_kwargs {search.optimizer_kwargs} do not fit optimizer {optimizer!r} "
                f"({err}); see help(safs_smac.optimizers.{_type_name(optimizer)})"
            ) from None
        # The optimiser's meta (algorithm settings) is part of the run's identity: a resumed run
        # must replay the same walk.
        settings = run_settings(
            problem,
            optimizer,
            n_trials=search.n_trials,
            walltime=search.walltime,
            max_budget=search.max_budget,
            seed=search.seed,
            optimizer_settings=ask_tell.meta,
            # Batches of n_workers trials make another walk; one worker keeps older identities.
            **({"n_workers": search.n_workers} if search.n_workers > 1 else {}),
            **_limit_settings(search),
            **extra,
        )
    finished = _claim_run_dir(problem, output_dir, settings, overwrite=overwrite)
    if finished is not None:
        return finished
    if ask_tell is None:
        incumbent, cost, trials = _run_smac(
            problem, optimizer, output_dir, search, desc, initial_configs
        )
    else:
        incumbent, cost, trials = _run_ask_tell(problem, ask_tell, output_dir, search, desc)
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


def _limit_settings(search: _SearchSettings) -> dict[str, float]:
    """The trial limits that were set: they change results, so they are part of a run's identity."""
    limits = {
        "trial_walltime_limit": search.trial_walltime_limit,
        "trial_memory_limit": search.trial_memory_limit,
    }
    return {name: value for name, value in limits.items() if value is not None}


@contextlib.contextmanager
def _trial_runner(
    problem: SAFSProblem, scenario: Scenario, arguments: Sequence[str], search: _SearchSettings
) -> Iterator[Any]:
    """The SMAC runner of a search: in this process, or on the workers of a Dask cluster.

    A local cluster (``n_workers > 1``) gives each worker ``cores // n_workers`` torch threads;
    the workers of a user's cluster size their threads themselves (see safs_smac.workers).
    """
    with parallel.dask_client(
        search.n_workers, scheduler_file=search.scheduler_file, client=search.dask_client
    ) as client:
        local = client is not None and search.dask_client is None and search.scheduler_file is None
        target = problem
        if local and problem.num_threads is None:
            target = copy.copy(problem)  # the caller's problem keeps its settings
            target.num_threads = threads_per_worker(search.n_workers)
        yield parallel.make_runner(
            scenario,
            target.train,
            arguments,
            client,
            # A user's cluster may wait in a batch queue; a local one must come up in minutes.
            worker_timeout=parallel.LOCAL_WORKER_TIMEOUT if local else None,
        )


def _type_name(optimizer: str) -> str:
    """Class name of an ask/tell optimiser, for error messages."""
    return OPTIMIZERS[optimizer].__name__


def _ask_tell_defaults(optimizer: str, n_trials: int) -> dict[str, Any]:
    """Size the local searches' own stopping rules to the trial budget (see ``optimize``)."""
    if optimizer == "lahc":
        # LAHC stops once step > min_steps (and it idles); step n_trials - 1 is trial n_trials.
        return {"min_steps": max(0, n_trials - 2)}
    if optimizer == "sa":
        n_steps = max(2, n_trials - 1)
        return {"n_steps": n_steps, "calibration_steps": min(5, n_steps - 1)}
    return {}


def _run_smac(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: _SearchSettings,
    desc: str,
    initial_configs: Sequence[Configuration] = (),
) -> tuple[Configuration, float, pd.DataFrame]:
    smac_dir = output_dir / "smac" / str(search.seed)
    done = _finished_smac_search(problem, smac_dir)
    if done is not None:
        return done
    facade_cls, uses_budgets = SMAC_OPTIMIZERS[optimizer]
    scenario = Scenario(
        problem.configspace,
        name="smac",
        output_directory=output_dir,
        deterministic=True,
        n_trials=search.n_trials,
        walltime_limit=search.walltime,
        min_budget=search.min_budget if uses_budgets else None,
        max_budget=search.max_budget if uses_budgets else None,
        seed=search.seed,
        # The workers are ours (_trial_runner): with n_workers > 1 the facade would wrap our runner
        # in a second Dask cluster of its own.
        n_workers=1,
        # A failed trial is as bad as the worst accuracy; an infinite crash cost would also turn
        # SMAC's TIMEOUT and MEMORYOUT into CRASHED and break its log-scaled cost model.
        crash_cost=WORST_COST,
        trial_walltime_limit=search.trial_walltime_limit,
        trial_memory_limit=parallel.memory_limit(search.trial_memory_limit),
    )
    tracker = _ProgressCallback(search.n_trials, search.progress, search.callbacks, desc=desc)
    kwargs: dict[str, Any] = {}
    if uses_budgets:
        kwargs["intensifier"] = facade_cls.get_intensifier(scenario, eta=search.eta)
    else:
        # Our target is deterministic for a seed: one evaluation per configuration is enough.
        kwargs["intensifier"] = facade_cls.get_intensifier(scenario, max_config_calls=1)
    if initial_configs:
        # The warm start takes the place of SMAC's random initial design (sized as SMAC sizes it:
        # a quarter of the trials); random configurations only fill what it leaves free. SMAC
        # evaluates its random design before the additional configurations.
        warm = list(initial_configs)[: search.n_trials]
        own = min(10 * len(list(problem.configspace)), max(1, int(0.25 * search.n_trials)))
        kwargs["initial_design"] = facade_cls.get_initial_design(
            scenario, n_configs=max(0, own - len(warm)), additional_configs=warm
        )
    drop_unfinished_trials(smac_dir / "runhistory.json")
    arguments = parallel.required_arguments(kwargs["intensifier"])
    with (
        _trial_runner(problem, scenario, arguments, search) as runner,
        parallel.atomic_smac_saves(),  # a kill never leaves SMAC a truncated state file
    ):
        with _refuse_smac_prompts(smac_dir):
            facade = facade_cls(
                scenario,
                runner,
                callbacks=[tracker],
                overwrite=False,  # prepare_run_dir already decided; SMAC must never prompt
                logging_level=40,
                **kwargs,
            )
        incumbent = facade.optimize()
    tracker.close()
    if isinstance(incumbent, list):
        incumbent = incumbent[0]
    if incumbent is None:
        raise RuntimeError(
            f"no trial finished successfully in {output_dir}; see results.csv for the reasons"
        )
    runhistory = facade.runhistory
    return incumbent, runhistory.get_cost(incumbent), trials_dataframe(runhistory)


def _finished_smac_search(
    problem: SAFSProblem, smac_dir: Path
) -> tuple[Configuration, float, pd.DataFrame] | None:
    """SMAC's incumbent when its search already finished (the run was killed while retraining).

    Read from SMAC's own files instead of rebuilding the facade: nothing is left to search, and a
    facade would refuse the stored state if the target's code changed since.
    """
    state = smac_dir / "optimization.json"
    if not state.exists() or not read_json(state).get("finished"):
        return None
    incumbent_ids = read_json(smac_dir / "intensifier.json").get("incumbent_ids") or []
    if not incumbent_ids:
        return None
    runhistory = load_runhistory(smac_dir / "runhistory.json", problem.configspace)
    incumbent = runhistory.get_config(incumbent_ids[0])
    logger.info("%s: the search had finished; retraining its incumbent", smac_dir)
    return incumbent, runhistory.get_cost(incumbent), trials_dataframe(runhistory)


@contextlib.contextmanager
def _refuse_smac_prompts(smac_dir: Path) -> Iterator[None]:
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


def _run_ask_tell(
    problem: SAFSProblem,
    optimizer: AskTellOptimizer,
    output_dir: Path,
    search: _SearchSettings,
    desc: str,
) -> tuple[Configuration, float, pd.DataFrame]:
    """Evaluate every trial at the max budget; record and resume like a SMAC run."""
    smac_dir = output_dir / "smac" / str(search.seed)
    runhistory_file = smac_dir / "runhistory.json"
    runhistory = (
        load_runhistory(runhistory_file, problem.configspace)
        if runhistory_file.exists()
        else RunHistory()
    )
    if len(runhistory):
        logger.info("resuming: replaying %d stored trial(s)", len(runhistory))
    tracker = _ProgressCallback(
        search.n_trials, search.progress, search.callbacks, desc=desc, initial=len(runhistory)
    )
    # SMAC's runner, as for SMAC runs: the same statuses, reasons, limits and Dask workers.
    scenario = Scenario(
        problem.configspace,
        name="smac",
        output_directory=output_dir,
        deterministic=True,
        n_trials=search.n_trials,
        walltime_limit=search.walltime,
        seed=search.seed,
        crash_cost=WORST_COST,
        trial_walltime_limit=search.trial_walltime_limit,
        trial_memory_limit=parallel.memory_limit(search.trial_memory_limit),
    )
    # scenario.json and configspace.json next to the run history, as SMAC's facades write them:
    # load_result reads the space, DeepCAVE's SMAC3 converter both. The meta is what a facade
    # records there (SMAC warns when a scenario is saved without it).
    scenario._set_meta({"optimizer": {"name": type(optimizer).__name__, **optimizer.meta}})
    with parallel.atomic_smac_saves():
        scenario.save()
    arguments = ["seed"] if optimizer.budget is None else ["seed", "budget"]
    with _trial_runner(problem, scenario, arguments, search) as runner:
        run_optimizer(
            optimizer,
            runner,
            n_trials=search.n_trials,
            walltime=search.walltime,
            runhistory=runhistory,
            save_path=runhistory_file,
            callbacks=[lambda info, value: tracker.on_tell_end(None, info, value)],
            batch_size=search.n_workers,  # ask_batch: n_workers neighbours per step
        )
    tracker.close()
    if optimizer.incumbent is None:
        raise RuntimeError(
            f"no trial finished successfully in {output_dir}; see results.csv for the reasons"
        )
    return optimizer.incumbent, float(optimizer.incumbent_cost), trials_dataframe(runhistory)


def _optimize_paper(
    problem: SAFSProblem,
    stage1_opt: str,
    stage2_opt: str,
    output_dir: Path,
    search: _SearchSettings,
    *,
    overwrite: bool,
    stage1_trials: int | None,
    stage1_epochs: int | None,
    stage2_trials: int | None,
    stage2_epochs: int | None,
) -> SearchResult:
    """The paper's protocol: LAHC over operators, then SMAC over scales + HPO, then retraining."""
    if problem.stage != "joint":
        raise ValueError(
            f"protocol='paper' builds its own stage spaces but the problem has stage "
            f"{problem.stage!r}; leave stage at 'joint' or use protocol='joint'"
        )
    if problem.search_rate is not None:
        raise ValueError(
            "protocol='paper' keeps the pruning rate fixed, as the paper did; drop search_rate "
            "or use protocol='joint'"
        )
    n1, n2 = _stage_split(search.n_trials, stage1_trials, stage2_trials, "paper")
    e1 = (
        search.final_epochs
        if stage1_epochs is None
        else _positive_int("stage1_epochs", stage1_epochs)
    )
    e2 = (
        search.final_epochs
        if stage2_epochs is None
        else _positive_int("stage2_epochs", stage2_epochs)
    )
    stage2_budgets = SMAC_OPTIMIZERS[stage2_opt][1]
    if stage2_budgets and search.min_budget > e2:
        raise ValueError(
            f"min_budget {search.min_budget:g} exceeds stage2_epochs {e2}; lower --min-budget "
            "or raise --stage2-epochs"
        )
    stage1 = search.replace(
        n_trials=n1, max_budget=float(e1), min_budget=min(search.min_budget, e1)
    )
    stage2 = search.replace(n_trials=n2, max_budget=float(e2), optimizer_kwargs={})
    _check_optimizer_settings(stage1_opt, stage1)
    _check_optimizer_settings(stage2_opt, stage2)

    problem.max_budget = search.final_epochs  # as for a joint run: part of the run's identity
    stage1_settings = {
        "optimizer": stage1_opt,
        "n_trials": n1,
        "epochs": e1,
        "optimizer_kwargs": search.optimizer_kwargs,
    }
    stage2_settings = {"optimizer": stage2_opt, "n_trials": n2, "epochs": e2}
    finished = _start_two_stage_run(
        problem,
        f"paper-{stage1_opt}-{stage2_opt}",
        "paper",
        output_dir,
        search,
        overwrite=overwrite,
        stage1=stage1_settings,
        stage2=stage2_settings,
    )
    if finished is not None:
        return finished

    extra = {"protocol": "paper", "final_epochs": search.final_epochs}
    operators_problem = problem.with_space(stage="operators")
    operators_problem.max_budget = e1
    first = _optimize_one(
        operators_problem,
        stage1_opt,
        output_dir / "stage1",
        stage1,
        overwrite=False,
        extra_settings={**extra, "stage": 1},
        desc=f"stage 1 ({stage1_opt})",
    )
    scales_problem = problem.with_space(
        stage="scales_hpo", fixed_operators=operators_problem.decode(first.incumbent).operators
    )
    scales_problem.max_budget = e2
    second = _optimize_one(
        scales_problem,
        stage2_opt,
        output_dir / "stage2",
        stage2,
        overwrite=False,
        extra_settings={**extra, "stage": 2},
        baseline=first.baseline,  # the same training as stage 1's: no need to run it twice
        desc=f"stage 2 ({stage2_opt})",
    )
    result = _two_stage_result(problem, output_dir, second, first, second, later_stage_wins=True)
    _write_result(
        result,
        title=f"{problem.model_name} / {problem.dataset_name} (paper protocol)",
        incumbent_extra={"stage1_config": _plain(first.incumbent)},
    )
    return result


def _start_two_stage_run(
    problem: SAFSProblem,
    label: str,
    protocol: str,
    output_dir: Path,
    search: _SearchSettings,
    *,
    overwrite: bool,
    **settings: Any,
) -> SearchResult | None:
    """Claim the run directory of a two-stage protocol; the result if it already finished.

    The checkpoints are loaded once here: both stage problems share them.
    """
    identity = run_settings(
        problem,
        label,
        protocol=protocol,
        walltime=search.walltime,
        min_budget=search.min_budget,
        max_budget=search.max_budget,
        seed=search.seed,
        n_workers=search.n_workers,
        eta=search.eta,
        **settings,
    )
    return _claim_run_dir(problem, output_dir, identity, overwrite=overwrite)


def _claim_run_dir(
    problem: SAFSProblem, output_dir: Path, settings: dict[str, Any], *, overwrite: bool
) -> SearchResult | None:
    """:func:`prepare_run_dir`, then warm the problem's caches (dense training, pruning) before
    any search clock starts; the result instead when this run already finished."""
    finished = prepare_run_dir(output_dir, settings, overwrite=overwrite)
    if finished is not None:
        logger.info("%s already holds this finished run; returning its results", output_dir)
        return finished
    problem.pruned_checkpoint()
    return None


def _two_stage_result(
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
        **_problem_facts(problem),
    )


def staged_min_budget(search: _SearchSettings) -> float:
    """Lowest rung of the staged protocol: ``max(min_budget, max_budget / eta)``."""
    return max(search.min_budget, search.max_budget / search.eta)


def _stage_split(
    n_trials: int, stage1_trials: int | None, stage2_trials: int | None, protocol: str
) -> tuple[int, int]:
    n1 = n_trials // 2 if stage1_trials is None else _positive_int("stage1_trials", stage1_trials)
    n2 = n_trials - n1 if stage2_trials is None else _positive_int("stage2_trials", stage2_trials)
    if n1 < 1 or n2 < 1:
        raise ValueError(
            f"protocol={protocol!r} needs at least one trial per stage, got {n1} and {n2} from "
            f"n_trials={n_trials}; raise n_trials or pass stage1_trials and stage2_trials"
        )
    return n1, n2


def _optimize_staged(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: _SearchSettings,
    *,
    overwrite: bool,
    stage1_trials: int | None,
    stage2_trials: int | None,
) -> SearchResult:
    """Network-level search, then per-layer search warm-started from it (see module docstring)."""
    if optimizer not in STAGED_OPTIMIZERS:
        raise ValueError(
            f"protocol='staged' warm-starts a SMAC surrogate model, so it runs "
            f"{', '.join(STAGED_OPTIMIZERS)}, not {optimizer!r}; use protocol='joint' for it"
        )
    if problem.stage != "joint" or problem.granularity != "layer":
        raise ValueError(
            f"protocol='staged' builds its own network- and layer-level spaces but the problem "
            f"has stage {problem.stage!r} and granularity {problem.granularity!r}; leave both "
            "at their defaults ('joint', 'layer') or use protocol='joint'"
        )
    n1, n2 = _stage_split(search.n_trials, stage1_trials, stage2_trials, "staged")
    # At high sparsity one epoch from a pruned network tells nothing (every configuration is at
    # chance), so both stages start their rungs at max_budget / eta: budgets 3 and 9 by default.
    lowest_rung = staged_min_budget(search)
    finished = _start_two_stage_run(
        problem,
        f"staged-{optimizer}",
        "staged",
        output_dir,
        search,
        overwrite=overwrite,
        stage1={
            "granularity": "network",
            "n_trials": n1,
            "warm_start": "operators",
            "min_budget": lowest_rung,
        },
        stage2={"granularity": "layer", "n_trials": n2, "warm_start": "neighbours"},
        **_limit_settings(search),
    )
    if finished is not None:
        return finished
    extra = {"protocol": "staged"}
    network_problem = problem.with_space(granularity="network")
    search = search.replace(min_budget=lowest_rung)

    def stage(number: int, stage_problem: SAFSProblem, n: int, **kwargs: Any) -> SearchResult:
        return _optimize_one(
            stage_problem,
            optimizer,
            output_dir / f"stage{number}",
            search.replace(n_trials=n),
            overwrite=False,
            extra_settings={**extra, "stage": number},
            **kwargs,
        )

    first = stage(
        1,
        network_problem,
        n1,
        desc=f"stage 1, network level ({optimizer})",
        initial_configs=operator_screen(network_problem.configspace)[:n1],
    )
    second = stage(
        2,
        problem,
        n2,
        baseline=first.baseline,
        desc=f"stage 2, per layer ({optimizer})",
        initial_configs=refinement_configs(
            first.incumbent, first.trials, problem.configspace, limit=max(1, n2 // 2)
        ),
    )
    # Validation decides, never test: the per-layer result must earn its place.
    chosen, chosen_name = (
        (second, "stage2")
        if second.final.val_accuracy >= first.final.val_accuracy
        else (first, "stage1")
    )
    references = {"single_operator": first.final}
    tuned = _best_default_activation_trial(first.trials, network_problem, search.max_budget)
    if tuned is not None:
        references["tuned_finetuning"] = network_problem.final_evaluation(
            network_problem.decode(tuned),
            seed=search.seed + FINAL_SEED_OFFSET,
            epochs=search.final_epochs,
        )
    result = _two_stage_result(
        problem, output_dir, chosen, first, second, later_stage_wins=False, references=references
    )
    _write_result(
        result,
        title=f"{problem.model_name} / {problem.dataset_name} (staged)",
        incumbent_extra={"stage": chosen_name},
    )
    return result


def operator_screen(network_space: Any) -> list[Configuration]:
    """One configuration per operator for the whole network, fine-tuned with a robust recipe.

    The dense recipe is a poor start for a pruned network (at 99% sparsity it often stays at
    chance), so the network-level search begins with every operator under
    :data:`safs_smac.pruning.SPARSE_FINETUNE` (Adam, lr 0.01, cosine decay; unit initial scales,
    learned): the single-operator baseline, inside the search.
    """
    recipe = {f"ft:{key}": value for key, value in dict(SPARSE_FINETUNE).items()}
    configs = []
    for op in network_space[f"act:{NETWORK_SITE}"].choices:
        values = dict(network_space.get_default_configuration())
        values.update({f"act:{NETWORK_SITE}": op, **recipe})
        values = {
            k: v for k, v in values.items() if k != "ft:momentum" or values["ft:optimizer"] == "sgd"
        }
        configs.append(Configuration(network_space, values=values))
    return configs


def refinement_configs(
    incumbent: Configuration,
    trials: pd.DataFrame,
    layer_space: Any,
    *,
    alternatives: int = 2,
    limit: int | None = None,
) -> list[Configuration]:
    """Where the per-layer search starts: the network-level incumbent on every site, then its
    single-site neighbours.

    A neighbour changes the operator of one site to one of the ``alternatives`` operators that
    did best in the network-level search (ranked by the highest budget they reached, then by
    cost), keeping every other setting; sites take turns so that a ``limit`` shorter than the
    list still covers every site once before any twice.
    """
    base = expand_network_config(incumbent, layer_space)
    key = f"act:{NETWORK_SITE}"
    ranked: list[str] = []
    if not trials.empty and key in trials:
        budgets = pd.to_numeric(trials["budget"], errors="coerce").fillna(math.inf)
        frame = trials.assign(_budget=budgets).sort_values(
            ["_budget", "cost"], ascending=[False, True]
        )
        ranked = [op for op in dict.fromkeys(frame[key]) if op != incumbent[key]]
    sites = [name for name in layer_space if name.startswith("act:")]
    configs = [base]
    for alternative in ranked[:alternatives]:
        for site in sites:
            if alternative in layer_space[site].choices:
                configs.append(Configuration(layer_space, values={**dict(base), site: alternative}))
    return configs if limit is None else configs[:limit]


def expand_network_config(
    config: Configuration | Mapping[str, Any], layer_space: Any
) -> Configuration:
    """A network-level configuration (``act:all``, ...) as the same network in a per-layer space."""
    values: dict[str, Any] = {}
    for key, value in dict(config).items():
        prefix, _, site = key.partition(":")
        if site == NETWORK_SITE:
            for name in layer_space:
                if name.startswith(f"{prefix}:"):
                    values[name] = value
        else:
            values[key] = value
    return Configuration(layer_space, values=_plain(values))


def _best_default_activation_trial(
    trials: pd.DataFrame, problem: SAFSProblem, max_budget: float
) -> Configuration | None:
    """The lowest-cost trial at the highest budget that kept the default activation, if any."""
    key = f"act:{NETWORK_SITE}"
    if trials.empty or key not in trials:
        return None
    budgets = pd.to_numeric(trials["budget"], errors="coerce").fillna(max_budget)
    rows = trials[
        (trials[key] == problem.default_activation)
        & (budgets >= max_budget)
        & (trials["status"] == "SUCCESS")
    ]
    if rows.empty:
        return None
    best = rows.loc[pd.to_numeric(rows["cost"]).idxmin()]
    values = {
        name: best[name]
        for name in problem.configspace
        if name in best and not (isinstance(best[name], float) and math.isnan(best[name]))
    }
    return Configuration(problem.configspace, values=_plain(values))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def concat_stage_trials(
    stages: Mapping[int, pd.DataFrame], *, later_stage_wins: bool = True
) -> pd.DataFrame:
    """The trials of consecutive stages as one table with a ``stage`` column.

    Trial numbers, cumulative epochs, elapsed time and the incumbent curve
    (:func:`safs_smac.report.incumbent_curve`) run on across the stages, so the anytime curve of
    a two-stage protocol is comparable with a one-stage run's. With ``later_stage_wins`` (the
    paper protocol) the incumbent moves to stage 2 at its first trial: stage 2 searches another
    space, and its incumbent is the protocol's result. Without it (the staged protocol, whose
    result is the better of its stages) the budgets of both stages rank together.
    """
    frames = [frame.assign(stage=stage) for stage, frame in stages.items() if len(frame)]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True, sort=False)
    frame["trial"] = range(1, len(frame) + 1)
    frame.insert(1, "stage", frame.pop("stage"))
    epochs = pd.to_numeric(frame["epochs"], errors="coerce").fillna(0)
    frame["cumulative_epochs"] = epochs.cumsum()
    frame["elapsed"] = frame["endtime"] - frame["starttime"].min()
    return _with_stage_curve(frame, later_stage_wins=later_stage_wins)


def _with_stage_curve(frame: pd.DataFrame, *, later_stage_wins: bool) -> pd.DataFrame:
    """The incumbent columns of a (possibly two-stage) trials table, see concat_stage_trials."""
    if later_stage_wins or "stage" not in frame:
        return with_incumbent_columns(frame)
    curve = with_incumbent_columns(frame.drop(columns="stage"))
    return curve.assign(stage=frame["stage"])[frame.columns.union(curve.columns, sort=False)]


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
        **_problem_facts(problem),
    )
    _write_result(result, title=f"{problem.model_name} / {problem.dataset_name}")
    return result


def _problem_facts(problem: SAFSProblem) -> dict[str, Any]:
    """What a result records about its problem: pruning epochs and name, chance level."""
    return {
        "prune_epochs": problem.prune_epochs,
        "pruning": problem.prune_schedule.label,
        "chance": 1.0 / problem.dataset.num_classes,
    }


def _write_result(
    result: SearchResult,
    *,
    title: str,
    incumbent_extra: Mapping[str, Any] | None = None,
) -> None:
    output_dir = result.output_dir
    write_csv(result.trials, output_dir / "results.csv")
    atomic_write_json(
        output_dir / "incumbent.json",
        {
            "config": _plain(result.incumbent),
            "operators": result.final.operators,
            "alpha": result.final.alpha,
            "beta": result.final.beta,
            **dict(incumbent_extra or {}),
        },
    )
    summary = result.summary()
    plot_trajectory(
        result.trials,
        output_dir / "trajectory.png",
        title=title,
        references=trajectory_references(summary),
    )
    # summary.json last: its presence marks the run as finished.
    atomic_write_json(output_dir / "summary.json", summary)


def _plain(config: Configuration | Mapping[str, Any]) -> dict[str, Any]:
    # numpy scalars (sampled configurations, pandas cells) are not JSON-serialisable and
    # ConfigSpace refuses some of them as values.
    return {k: v.item() if hasattr(v, "item") else v for k, v in dict(config).items()}


def prepare_run_dir(
    output_dir: Path, settings: dict[str, Any], *, overwrite: bool
) -> SearchResult | None:
    """Create, resume or refuse a run directory; return the result if this run already finished."""
    run_file = output_dir / "run.json"
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output directory {output_dir} is a file; choose another --output-dir")
    if run_file.exists():
        previous = read_json(run_file)
        if previous.get(ENVIRONMENT_KEY) != settings.get(ENVIRONMENT_KEY):
            logger.warning(
                "%s was started with %s and continues with %s; results may differ in the last "
                "bits from an uninterrupted run",
                output_dir,
                previous.get(ENVIRONMENT_KEY),
                settings.get(ENVIRONMENT_KEY),
            )
        # Compared as JSON: a tuple in the live settings is a list once written (search_rate).
        old, new = _identity(previous), _identity(json.loads(json.dumps(settings)))
        same = old == new
        if not same and not overwrite:
            changed = sorted(_changed_keys(old, new))
            if all(_lacks(old, key) for key in changed):
                raise ValueError(
                    f"output directory {output_dir} holds a run made by an earlier safs-smac "
                    f"version (its run.json has no {', '.join(changed)}): its trials were "
                    "measured differently and cannot be continued; `safs-smac report` still "
                    "shows a finished one; choose another --output-dir or pass --overwrite"
                )
            raise ValueError(
                f"output directory {output_dir} holds a different run (changed: "
                f"{', '.join(changed)}); choose another --output-dir or pass --overwrite"
            )
        if same and (output_dir / "summary.json").exists():
            return load_result(output_dir)
        if not same:
            _clear_run_dir(output_dir)
    elif output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise ValueError(
                f"output directory {output_dir} is not empty and holds no safs-smac run; "
                "choose another --output-dir or pass --overwrite"
            )
        _clear_run_dir(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_file, settings)
    except OSError as err:  # read-only, inside a file, disk full, ...
        raise ValueError(
            f"output directory {output_dir} is not writable ({err.strerror or err}); choose "
            "another --output-dir"
        ) from None
    return None


def drop_unfinished_trials(runhistory_file: Path) -> int:
    """Forget trials a killed run left as RUNNING so that the resumed run evaluates them again.

    SMAC saves a trial as RUNNING when it is submitted; after a kill it would stay RUNNING forever
    and still count towards ``n_trials``. Returns how many trials were dropped.
    """
    if not runhistory_file.exists():
        return 0
    content = read_json(runhistory_file)
    finished = [t for t in content["data"] if t["status"] != StatusType.RUNNING]
    dropped = len(content["data"]) - len(finished)
    if dropped:
        content["data"] = finished
        content["stats"] = {"submitted": len(finished), "finished": len(finished), "running": 0}
        atomic_write_json(runhistory_file, content)
        logger.info("resuming: %d unfinished trial(s) will run again", dropped)
    return dropped


def load_result(output_dir: Path) -> SearchResult:
    """Rebuild a :class:`SearchResult` from the files of a finished run (no retraining)."""
    from safs_smac.space import load_space

    output_dir = Path(output_dir)
    summary = read_json(output_dir / "summary.json")
    incumbent_file = read_json(output_dir / "incumbent.json")
    settings = read_json(output_dir / "run.json")
    # Recomputed: results.csv of older versions held best_val_accuracy instead.
    trials = _with_stage_curve(
        read_trials(output_dir / "results.csv"),
        later_stage_wins=settings.get("protocol") != "staged",
    )
    stages: dict[str, SearchResult] = {}
    if settings.get("protocol") in ("paper", "staged") and "stage" not in settings:
        stages = {name: load_result(output_dir / name) for name in ("stage1", "stage2")}
        space = stages[incumbent_file.get("stage", "stage2")].incumbent.config_space
    else:
        space = load_space(output_dir / "smac" / str(settings["seed"]) / "configspace.json")
    return SearchResult(
        output_dir=output_dir,
        incumbent=Configuration(space, values=incumbent_file["config"]),
        incumbent_cost=summary["incumbent_cost"],
        final=_final_from_dict(summary["incumbent"]),
        baseline=_final_from_dict(summary["baseline"]),
        dense=summary["dense"],
        trials=trials,
        stages=stages,
        references={
            name: _final_from_dict(entry)
            for name, entry in (summary.get("references") or {}).items()
        },
        prune_epochs=int(summary.get("prune_epochs") or 0),
        pruning=summary.get("pruning"),
        chance=summary.get("chance"),
    )


def _final_from_dict(entry: dict[str, Any]) -> FinalEvaluation:
    known = {
        "val_accuracy",
        "test_accuracy",
        "epochs",
        "seconds",
        "diverged",
        "reason",
        "operators",
        "alpha",
        "beta",
        "sparsity",
    }
    return FinalEvaluation(
        **{k: entry[k] for k in known},
        extra={k: v for k, v in entry.items() if k not in known},
    )


def _changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys.extend(_changed_keys(a, b, f"{prefix}{key}."))
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def _lacks(settings: Mapping[str, Any], dotted_key: str) -> bool:
    """Whether ``settings`` has no entry at ``dotted_key`` (``"problem.objective"``)."""
    node: Any = settings
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return True
        node = node[part]
    return False


def _clear_run_dir(output_dir: Path) -> None:
    for child in output_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


class _ProgressCallback(Callback):
    """Progress bar (trials done, best validation accuracy so far, ETA) and user callbacks."""

    def __init__(
        self,
        n_trials: int,
        show: bool,
        callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]],
        *,
        desc: str = "trials",
        initial: int = 0,
    ) -> None:
        super().__init__()
        self._callbacks = list(callbacks)
        self._best = math.inf
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=n_trials, initial=initial, desc=desc, unit="trial", dynamic_ncols=True
            )
        self._start = time.monotonic()

    def on_tell_end(self, smbo: Any, info: TrialInfo, value: TrialValue) -> bool | None:
        cost = value.cost if not isinstance(value.cost, list) else value.cost[0]
        if math.isfinite(cost):
            self._best = min(self._best, cost)
        if self._bar is not None:
            postfix = {"budget": info.budget}
            if math.isfinite(self._best):
                postfix["best_val_acc"] = f"{100 * (1 - self._best):.2f}%"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
        for callback in self._callbacks:
            callback(info, value)
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
