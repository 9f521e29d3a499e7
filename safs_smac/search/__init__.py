"""``optimize``: run a search on a :class:`~safs_smac.problem.SAFSProblem` and report it.

A run directory is the unit of work (see :mod:`safs_smac.runs`). It holds SMAC's own directory
(``smac/<seed>/``: scenario, runhistory, intensifier state, so SMAC's resume and DeepCAVE work on
it), ``run.json`` (the settings that identify the run), and, once finished, ``results.csv``,
``incumbent.json``, ``summary.json`` and ``trajectory.png``. Re-running the same command resumes;
a different command aimed at the same directory is refused unless ``overwrite=True``; a second
process aimed at a directory in use is refused.

The package is layered one way: :mod:`.names` and :mod:`.settings` (what a search is),
:mod:`.backends` (SMAC facades, ask/tell optimizers; both on SMAC's runners and Dask),
:mod:`.run` (one run directory), the protocols :mod:`.staged` and :mod:`.paper`, and
:func:`optimize` on top. Three protocols:

* ``"staged"`` (default): network level, then per layer warm-started from it (:mod:`.staged`).
* ``"joint"``: one run over the problem's space (by default operators, scales and fine-tuning
  hyperparameters together, searched by multi-fidelity SMAC).
* ``"paper"``: the SAFS paper's two stages (:mod:`.paper`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from smac.runhistory import TrialInfo, TrialValue

from safs_smac.problem import SAFSProblem
from safs_smac.runs import RunLock
from safs_smac.runs.directory import LOCK_NAME, check_output_dir
from safs_smac.runs.results import SearchResult, concat_stage_trials, load_result
from safs_smac.search.names import (
    ASK_TELL_OPTIMIZERS,
    DEFAULT_JOINT_OPTIMIZER,
    DEFAULT_STAGE1_OPTIMIZER,
    DEFAULT_STAGE2_OPTIMIZER,
    INTENSIFIERS,
    OPTIMIZER_NAMES,
    PROTOCOLS,
    SMAC_OPTIMIZERS,
    STAGED_OPTIMIZERS,
    default_protocol,
    multi_fidelity_defaults,
    resolve_optimizers,
    run_label,
)
from safs_smac.search.paper import optimize_paper
from safs_smac.search.run import finish_run, optimize_one
from safs_smac.search.settings import FINAL_SEED_OFFSET, search_settings
from safs_smac.search.staged import (
    expand_network_config,
    operator_screen,
    optimize_staged,
    refinement_configs,
    staged_min_budget,
)

__all__ = [
    "ASK_TELL_OPTIMIZERS",
    "DEFAULT_JOINT_OPTIMIZER",
    "DEFAULT_STAGE1_OPTIMIZER",
    "DEFAULT_STAGE2_OPTIMIZER",
    "FINAL_SEED_OFFSET",
    "INTENSIFIERS",
    "OPTIMIZER_NAMES",
    "PROTOCOLS",
    "SMAC_OPTIMIZERS",
    "STAGED_OPTIMIZERS",
    "SearchResult",
    "concat_stage_trials",
    "default_protocol",
    "expand_network_config",
    "finish_run",
    "load_result",
    "multi_fidelity_defaults",
    "operator_screen",
    "optimize",
    "refinement_configs",
    "resolve_optimizers",
    "run_label",
    "staged_min_budget",
]


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
    eta: int | None = None,
    intensifier: str | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]] = (),
    optimizer_kwargs: Mapping[str, Any] | None = None,
    stage1_trials: int | None = None,
    stage1_epochs: int | None = None,
    stage2_trials: int | None = None,
    stage2_epochs: int | None = None,
    wait: float = 0.0,
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
        optimizers (:mod:`safs_smac.optimizers`): ``"lahc"`` (late acceptance hill climbing),
        ``"random"`` (i.i.d. random search), ``"greedy"`` (the reference's "RS", a greedy walk) or
        ``"sa"`` (simulated annealing). Only the multi-fidelity facades use budgets below
        ``max_budget``. ``None``: ``"smac-mf"``; for ``protocol="paper"`` see
        :func:`resolve_optimizers`.
    protocol
        ``"staged"`` (network level, then per layer warm-started from it; the default for SMAC
        facades; ``None`` picks it, or ``"joint"`` for an ask/tell optimizer),
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
        Seed of the optimizer; the final retraining uses ``seed + FINAL_SEED_OFFSET``.
    output_dir
        Run directory (see module docstring).
    n_workers
        Trials at a time. ``> 1`` starts a local Dask cluster of ``n_workers`` processes, each
        with ``cores // n_workers`` torch threads and, with ``device="auto"`` and several GPUs,
        its own GPU (round-robin). SMAC's facades keep every worker busy; the ask/tell
        optimizers evaluate ``n_workers`` trials per step with ``ask_batch`` (LAHC: the best of
        ``n_workers`` neighbours of the current state is the step's candidate), which is part of
        the run's identity. With several workers SMAC is no longer reproducible.
    dask_client
        A ``dask.distributed.Client`` of your own cluster (e.g. ``dask_jobqueue.SLURMCluster``)
        to run the trials on instead of a local cluster; it stays open. SMAC's facades use all
        its workers; ``n_workers`` still sets the ask/tell optimizers' batch size.
    scheduler_file
        The scheduler file of a running Dask cluster (``dask scheduler --scheduler-file F``), as
        an alternative to ``dask_client``.
    trial_walltime_limit, trial_memory_limit
        Limits of one trial, in seconds and megabytes: the trial runs in a child process (pynisher)
        and is recorded as ``TIMEOUT`` / ``MEMORYOUT`` when it exceeds them; the search goes on.
        The memory limit caps virtual memory, so leave room above the process's footprint (and
        avoid it with CUDA, which maps huge ranges). ``None``: no limit.
    overwrite
        Replace a *different* run found in ``output_dir`` instead of refusing: only the files a
        run writes are removed, and a directory holding anything else is refused.
    wait
        Seconds to wait when another process holds ``output_dir`` (0: refuse at once with an
        error naming it).
    eta, intensifier
        How ``smac-mf`` and ``hyperband`` promote trials: the reduction factor and
        ``"hyperband"`` or ``"successive-halving"`` (one Hyperband bracket, every trial starting
        at the lowest rung). ``None``: the protocol's default, successive halving with eta 2 for
        ``"staged"``, Hyperband with eta 3 otherwise (:func:`multi_fidelity_defaults`).
    progress
        Show a progress bar (trials done, best so far, ETA).
    callbacks
        Called as ``callback(trial_info, trial_value)`` after every evaluated trial.
    optimizer_kwargs
        Settings of an ask/tell optimizer, e.g. ``{"history_length": 5}`` for LAHC. By default
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
    default_intensifier, default_eta = multi_fidelity_defaults(protocol)
    search = search_settings(
        n_trials=n_trials,
        walltime=walltime,
        min_budget=min_budget,
        max_budget=problem.max_budget if max_budget is None else max_budget,
        seed=seed,
        n_workers=n_workers,
        dask_client=dask_client,
        scheduler_file=scheduler_file,
        trial_walltime_limit=trial_walltime_limit,
        trial_memory_limit=trial_memory_limit,
        eta=default_eta if eta is None else eta,
        intensifier=default_intensifier if intensifier is None else intensifier,
        progress=progress,
        callbacks=callbacks,
        optimizer_kwargs=optimizer_kwargs,
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
        search.check_optimizer(stage1_opt)
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    # The search sets the problem's max budget; the caller's problem keeps its own. A shallow
    # copy shares the data set and the loaded checkpoints, as with_space does.
    problem = copy.copy(problem)
    problem.max_budget = search.final_epochs
    problem.dataset  # noqa: B018 -- a missing or unreadable data set fails before anything is written
    _check_cache_dir(Path(problem.cache_dir))
    with _claimed(output_dir, wait=wait):
        if protocol == "staged":
            return optimize_staged(
                problem,
                stage1_opt,
                output_dir,
                search,
                overwrite=overwrite,
                stage1_trials=stage1_trials,
                stage2_trials=stage2_trials,
            )
        if protocol == "joint":
            return optimize_one(problem, stage1_opt, output_dir, search, overwrite=overwrite)
        assert stage2_opt is not None
        return optimize_paper(
            problem,
            stage1_opt,
            stage2_opt,
            output_dir,
            search,
            overwrite=overwrite,
            **stage_settings,
        )


def _check_cache_dir(cache_dir: Path) -> None:
    """Refuse a checkpoint cache that cannot be written, before the run directory is touched."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir):
            pass
    except OSError as err:
        raise ValueError(
            f"checkpoint cache {cache_dir} is not writable ({err.strerror or err}); pass "
            "--cache-dir (cache_dir=) or set SAFS_SMAC_CACHE to a writable directory"
        ) from None


@contextlib.contextmanager
def _claimed(output_dir: Path, *, wait: float) -> Iterator[None]:
    """Hold the run directory's lock; a directory this call created and left empty goes again."""
    created = not output_dir.exists()
    try:
        with RunLock(output_dir, wait=wait):
            yield
    except BaseException:
        if (
            created
            and output_dir.is_dir()
            and {p.name for p in output_dir.iterdir()} <= {LOCK_NAME}
        ):
            (output_dir / LOCK_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                output_dir.rmdir()
        raise
