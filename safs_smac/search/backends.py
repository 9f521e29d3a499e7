"""The two ways trials are run: SMAC's facades, and the ask/tell optimizers of
:mod:`safs_smac.optimizers` (LAHC and its baselines), which evaluate every trial at the max budget,
write the same RunHistory format and resume by replaying it. Both run trials through SMAC's
runners (in this process or on Dask workers) and return ``(incumbent, cost, trials)``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from ConfigSpace import Configuration
from smac import Scenario
from smac.intensifier import SuccessiveHalving
from smac.intensifier.abstract_intensifier import AbstractIntensifier
from smac.runhistory import RunHistory

from safs_smac import parallel
from safs_smac._io import read_json
from safs_smac.optimizers import OPTIMIZERS, AskTellOptimizer, create_optimizer, run_optimizer
from safs_smac.problem import WORST_COST, SAFSProblem
from safs_smac.report import trials_dataframe, write_csv
from safs_smac.runs.state import drop_unfinished_trials, load_runhistory
from safs_smac.search.names import SMAC_OPTIMIZERS
from safs_smac.search.progress import ProgressCallback
from safs_smac.search.settings import SearchSettings
from safs_smac.smac_compat import atomic_smac_saves, refuse_smac_prompts, smac_proposes
from safs_smac.workers import threads_per_worker

__all__ = ["ask_tell_optimizer", "run_ask_tell", "run_smac"]

logger = logging.getLogger(__name__)

Found = tuple[Configuration, float, pd.DataFrame]


def run_smac(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: SearchSettings,
    desc: str,
    initial_configs: Sequence[Configuration] = (),
) -> Found:
    """Search with a SMAC facade; resume from SMAC's own state in ``output_dir/smac/<seed>``."""
    smac_dir = output_dir / "smac" / str(search.seed)
    done = _finished_smac_search(problem, smac_dir)
    if done is not None:
        return done
    facade_cls, uses_budgets = SMAC_OPTIMIZERS[optimizer]
    scenario = _scenario(problem, output_dir, search, budgets=uses_budgets)
    tracker = ProgressCallback(search.n_trials, search.progress, search.callbacks, desc=desc)
    kwargs: dict[str, Any] = {}
    if uses_budgets:
        kwargs["intensifier"] = _multi_fidelity_intensifier(facade_cls, scenario, search)
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
    if drop_unfinished_trials(smac_dir / "runhistory.json"):
        logger.info("resuming: unfinished trials of %s will run again", smac_dir)
    arguments = parallel.required_arguments(kwargs["intensifier"])
    with (
        _trial_runner(problem, scenario, arguments, search) as runner,
        atomic_smac_saves(),  # a kill never leaves SMAC a truncated state file
    ):
        with refuse_smac_prompts(smac_dir):
            facade = facade_cls(
                scenario,
                runner,
                callbacks=[tracker],
                overwrite=False,  # prepare_run_dir already decided; SMAC must never prompt
                logging_level=40,
                **kwargs,
            )
        with smac_proposes():
            incumbent = facade.optimize()
    tracker.close()
    if isinstance(incumbent, list):
        incumbent = incumbent[0]
    trials = trials_dataframe(facade.runhistory)
    if incumbent is None:
        _every_trial_failed(output_dir, trials)
    return incumbent, facade.runhistory.get_cost(incumbent), trials


def _multi_fidelity_intensifier(
    facade_cls: type, scenario: Scenario, search: SearchSettings
) -> AbstractIntensifier:
    """The facade's Hyperband, or one bracket of it: successive halving with its settings."""
    hyperband = facade_cls.get_intensifier(scenario, eta=search.eta)
    if search.intensifier == "hyperband":
        return hyperband
    meta = hyperband.meta
    return SuccessiveHalving(
        scenario,
        eta=search.eta,
        instance_seed_order=meta["instance_seed_order"],
        max_incumbents=meta["max_incumbents"],
        incumbent_selection=meta["incumbent_selection"],
    )


def _scenario(
    problem: SAFSProblem, output_dir: Path, search: SearchSettings, *, budgets: bool
) -> Scenario:
    """SMAC's scenario of a search (ask/tell searches use its runner and its saved files)."""
    return Scenario(
        problem.configspace,
        name="smac",
        output_directory=output_dir,
        deterministic=True,
        n_trials=search.n_trials,
        walltime_limit=search.walltime,
        min_budget=search.min_budget if budgets else None,
        max_budget=search.max_budget if budgets else None,
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


def _finished_smac_search(problem: SAFSProblem, smac_dir: Path) -> Found | None:
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


def ask_tell_optimizer(
    problem: SAFSProblem, optimizer: str, search: SearchSettings
) -> AskTellOptimizer:
    """The ask/tell optimizer of a search, sized to its trial budget (see ``optimize``)."""
    kwargs = {**_ask_tell_defaults(optimizer, search.n_trials), **search.optimizer_kwargs}
    try:
        return create_optimizer(optimizer, problem.configspace, seed=search.seed, **kwargs)
    except TypeError as err:
        raise ValueError(
            f"optimizer_kwargs {search.optimizer_kwargs} do not fit optimizer {optimizer!r} "
            f"({err}); see help(safs_smac.optimizers.{OPTIMIZERS[optimizer].__name__})"
        ) from None


def _ask_tell_defaults(optimizer: str, n_trials: int) -> dict[str, Any]:
    """Size the local searches' own stopping rules to the trial budget (see ``optimize``)."""
    if optimizer == "lahc":
        # LAHC stops once step > min_steps (and it idles); step n_trials - 1 is trial n_trials.
        return {"min_steps": max(0, n_trials - 2)}
    if optimizer == "sa":
        n_steps = max(2, n_trials - 1)
        return {"n_steps": n_steps, "calibration_steps": min(5, n_steps - 1)}
    return {}


def run_ask_tell(
    problem: SAFSProblem,
    optimizer: AskTellOptimizer,
    output_dir: Path,
    search: SearchSettings,
    desc: str,
) -> Found:
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
    tracker = ProgressCallback(
        search.n_trials, search.progress, search.callbacks, desc=desc, initial=len(runhistory)
    )
    # SMAC's runner, as for SMAC runs: the same statuses, reasons, limits and Dask workers.
    scenario = _scenario(problem, output_dir, search, budgets=False)
    # scenario.json and configspace.json next to the run history, as SMAC's facades write them:
    # load_result reads the space, DeepCAVE's SMAC3 converter both. The meta is what a facade
    # records there (SMAC warns when a scenario is saved without it).
    scenario._set_meta({"optimizer": {"name": type(optimizer).__name__, **optimizer.meta}})
    with atomic_smac_saves():
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
    trials = trials_dataframe(runhistory)
    if optimizer.incumbent is None:
        _every_trial_failed(output_dir, trials)
    return optimizer.incumbent, float(optimizer.incumbent_cost), trials


def _every_trial_failed(output_dir: Path, trials: pd.DataFrame) -> None:
    """Write the failed trials' reasons to results.csv, then say so in one line."""
    write_csv(trials, output_dir / "results.csv")
    reasons = [str(r) for r in trials.get("reason", pd.Series(dtype=str)).dropna() if str(r)]
    statuses = sorted(set(map(str, trials.get("status", pd.Series(dtype=str)))))
    first = f"; the first: {reasons[0]}" if reasons else ""
    raise ValueError(
        f"every one of the {len(trials)} trials failed ({', '.join(statuses) or 'no status'})"
        f"{first}; the reasons are in {output_dir / 'results.csv'}; fix the cause (e.g. raise "
        "--trial-memory or --trial-walltime) and pass --overwrite to start the run again"
    )


@contextlib.contextmanager
def _trial_runner(
    problem: SAFSProblem, scenario: Scenario, arguments: Sequence[str], search: SearchSettings
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
