"""Optuna studies on a SAFS problem: :func:`run_optuna`, rung reports for pruners, the run directory
in SMAC's files."""

from __future__ import annotations

import itertools
import logging
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from ConfigSpace import Configuration, ConfigurationSpace
from optuna.trial import TrialState
from smac import Scenario
from smac.runhistory import RunHistory, StatusType

from safs_smac._io import atomic_path, atomic_write_json
from safs_smac.integrations.optuna import sampling
from safs_smac.optimizers.neighbours import plain_values
from safs_smac.problem import WORST_COST, SAFSProblem
from safs_smac.runs import RunLock, check_identity, read_state
from safs_smac.runs.identity import as_json
from safs_smac.smac_compat import atomic_smac_saves
from safs_smac.space import save_space

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- helpers


def _check_rungs(
    rungs: Sequence[int] | None, pruner: optuna.pruners.BasePruner, max_budget: int
) -> list[int]:
    """Validated fine-tuning budgets at which a trial reports; the last one is ``max_budget``."""
    if rungs is None:
        if isinstance(pruner, optuna.pruners.NopPruner):
            return [max_budget]  # nothing would read intermediate values: one call per trial
        return list(range(1, max_budget + 1))
    steps = list(rungs)
    if (
        not steps
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in steps)
        or any(b <= a for a, b in itertools.pairwise(steps))
        or steps[0] < 1
        or steps[-1] > max_budget
    ):
        raise ValueError(
            f"rungs must be increasing whole epochs in [1, max_budget={max_budget}], got "
            f"{list(rungs)!r}; pass e.g. rungs=[1, 3, {max_budget}]"
        )
    steps = [int(s) for s in steps]
    return steps if steps[-1] == max_budget else [*steps, max_budget]


def _finished(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that counts toward ``n_trials``: evaluated and over (forbidden samples do not)."""
    return trial.state.is_finished() and not trial.user_attrs.get("forbidden", False)


def _derived_seed(seed: int, n_existing: int) -> int:
    """The default sampler's seed: ``seed`` for a new study, a fresh stream for a resumed one.

    A resumed study with a re-seeded ``TPESampler(seed=seed)`` would repeat the first run's
    random start-up proposals, i.e. evaluate the same configurations again.
    """
    if n_existing == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(n_existing)]).generate_state(1)[0])


def _evaluate_rungs(
    problem: SAFSProblem,
    trial: optuna.trial.Trial,
    config: Configuration,
    seed: int,
    rungs: Sequence[int],
) -> tuple[TrialState, float | None]:
    """Fine-tune ``config`` rung by rung, reporting each; the trial's final state and value.

    Each rung is one ``problem.train(config, seed, budget=rung)`` call. With budget continuation
    in the problem, the call at rung ``e`` continues the state saved at the previous rung and costs
    only the new epochs; without it, it retrains from scratch. The epochs the problem says this
    call ran (``info["epochs"]``) are summed in the trial's ``epochs_run`` user attribute;
    ``budget_reached`` is the highest budget evaluated, what the trial costs when every call
    continues the previous one.
    """
    records: list[dict[str, Any]] = []
    epochs_run = 0
    state, value = TrialState.COMPLETE, None
    for i, rung in enumerate(rungs):
        start, cpu_start = time.time(), time.process_time()
        try:
            cost, info = problem.train(config, seed=seed, budget=rung)
        except Exception as err:  # recorded as a crash, as SMAC's runner does; the run goes on
            records.append(
                _record(rung, math.inf, StatusType.CRASHED, start, cpu_start, seed, {})
                | {"info": {"error": repr(err), "traceback": traceback.format_exc()}}
            )
            trial.set_user_attr("reason", f"problem.train raised {err!r} at budget {rung}")
            state = TrialState.FAIL
            break
        epochs_run += int(info.get("epochs", rung))
        status = StatusType.SUCCESS if math.isfinite(cost) else StatusType.CRASHED
        records.append(_record(rung, cost, status, start, cpu_start, seed, info))
        trial.set_user_attr(sampling.RUNGS_ATTR, records)
        if status != StatusType.SUCCESS:
            trial.set_user_attr("reason", f"non-finite cost {cost} at budget {rung}")
            state = TrialState.FAIL
            break
        trial.report(float(cost), step=int(rung))
        value = float(cost)
        if info.get("diverged"):
            # Worst cost already; more epochs cannot bring the diverged weights back.
            trial.set_user_attr("reason", f"diverged at budget {rung}: {info.get('reason')}")
            break
        if i < len(rungs) - 1 and trial.should_prune():
            records[-1]["pruned"] = True
            state = TrialState.PRUNED
            break
    trial.set_user_attr(sampling.RUNGS_ATTR, records)
    trial.set_user_attr("epochs_run", epochs_run)
    trial.set_user_attr("budget_reached", records[-1]["budget"] if records else 0)
    return state, value


def _record(
    budget: int,
    cost: float,
    status: StatusType,
    start: float,
    cpu_start: float,
    seed: int,
    info: Mapping[str, Any],
) -> dict[str, Any]:
    end = time.time()
    return {
        "budget": int(budget),
        "seed": int(seed),
        "cost": float(cost) if math.isfinite(cost) else None,  # JSON for every Optuna storage
        "status": int(status),
        "time": end - start,
        "cpu_time": time.process_time() - cpu_start,
        "starttime": start,
        "endtime": end,
        "info": dict(info),
        "pruned": False,
    }


def study_runhistory(study: optuna.study.Study, configspace: ConfigurationSpace) -> RunHistory:
    """The evaluations of a :func:`run_optuna` study as a SMAC RunHistory.

    One entry per evaluated rung (configuration, seed, budget = the rung's epochs), as SMAC's
    multi-fidelity runs record one entry per budget; its additional info is the problem's info
    plus ``optuna_trial`` (the trial number) and ``pruned`` (True on a pruned trial's last rung).
    Trials still running and samples that violated a forbidden clause are left out.
    """
    runhistory = RunHistory()
    origin = f"optuna: {type(study.sampler).__name__}"
    for trial in sorted(study.trials, key=lambda t: t.number):
        if not _finished(trial) or sampling.CONFIG_ATTR not in trial.user_attrs:
            continue
        values = trial.user_attrs[sampling.CONFIG_ATTR]
        config = Configuration(configspace, values=values, origin=origin)
        for record in trial.user_attrs.get(sampling.RUNGS_ATTR, []):
            status = StatusType(record["status"])
            cost = record["cost"]
            runhistory.add(
                config=config,
                cost=math.inf if cost is None else float(cost),
                time=float(record["time"]),
                cpu_time=float(record["cpu_time"]),
                status=status,
                seed=int(record["seed"]),
                budget=float(record["budget"]),
                starttime=float(record["starttime"]),
                endtime=float(record["endtime"]),
                additional_info={
                    **record["info"],
                    "optuna_trial": trial.number,
                    "pruned": bool(record["pruned"]),
                },
                # Two trials that sampled the same configuration train the same (deterministic)
                # model at each budget: the later entry replaces the earlier one.
                force_update=True,
            )
    return runhistory


def fine_tuning_epochs(study: optuna.study.Study) -> dict[str, int]:
    """Fine-tuning epochs of a :func:`run_optuna` study, summed over its finished trials.

    ``run``: the epochs ``problem.train`` reported running (``info["epochs"]`` of every rung call:
    what the run cost). ``with_continuation``: the highest budget each trial reached, what the
    run costs when every rung continues the previous rung's state. The two agree for one rung per
    trial and with budget continuation in the problem; without continuation and with several
    rungs, ``run`` counts every retraining from scratch.
    """
    trials = [t for t in study.trials if _finished(t)]
    return {
        "run": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "with_continuation": sum(int(t.user_attrs.get("budget_reached", 0)) for t in trials),
    }


def _save_scenario(
    problem: SAFSProblem,
    output_dir: Path,
    seed: int,
    n_trials: int,
    rungs: Sequence[int],
    meta: Mapping[str, Any],
) -> None:
    """``scenario.json`` (and ``configspace.json``) as SMAC writes them, for DeepCAVE's reader."""
    scenario = Scenario(
        problem.configspace,
        name=sampling.RUN_NAME,  # SMAC's directory layout: <output_dir>/optuna/<seed>/
        output_directory=output_dir,
        deterministic=True,
        n_trials=n_trials,
        seed=seed,
        crash_cost=WORST_COST,
        min_budget=rungs[0] if len(rungs) > 1 else None,
        max_budget=rungs[-1] if len(rungs) > 1 else None,
    )
    # The meta is what a facade records there (SMAC warns when a scenario is saved without it).
    scenario._set_meta({"optimizer": dict(meta)})
    with atomic_smac_saves():
        scenario.save()


def _save_runhistory(runhistory: RunHistory, path: Path) -> None:
    # A kill during the write must leave the previous complete file, never a truncated one.
    with atomic_path(path, suffix=".json") as tmp:
        runhistory.save(tmp)


# ---------------------------------------------------------------------- study runner
def _same_settings(study: optuna.Study, settings: dict[str, Any]) -> bool:
    stored = study.user_attrs.get(sampling.SETTINGS_ATTR)
    return stored is None or check_identity(stored, settings).same


def run_optuna(
    problem: SAFSProblem,
    *,
    n_trials: int,
    seed: int = 0,
    output_dir: str | Path = "safs_runs/run",
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    rungs: Sequence[int] | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    walltime: float = math.inf,
    overwrite: bool = False,
    max_forbidden: int = 100,
) -> optuna.study.Study:
    """Search ``problem`` with an Optuna study (TPE, no pruning by default) and return the study.

    Each trial samples a configuration define-by-run (:func:`suggest_config`; conditional spaces
    work) and fine-tunes it through ``problem.train(config, seed, budget=e)`` for each rung ``e``,
    reporting ``trial.report(cost, e)`` and stopping when ``trial.should_prune()``. A completed
    trial's value is its cost at ``problem.max_budget``; a pruned trial's is its last reported
    cost. A crash in ``problem.train`` fails the trial (reason in its ``reason`` user attribute)
    and the run goes on; a sample that violates a forbidden clause fails without evaluation and is
    replaced by a new one (``max_forbidden`` in a row stop the run).

    The study is stored in ``storage`` (default: the journal file
    ``<output_dir>/optuna/<seed>/study.journal``). Running the call again resumes it: finished
    trials are kept, trials a kill left running are ignored (and not counted), and new trials are
    added up to ``n_trials``. The run directory holds, next to it, ``runhistory.json`` (SMAC's
    format, one entry per evaluated rung, rewritten after every trial), ``scenario.json`` and
    ``configspace.json`` (read by DeepCAVE's SMAC3v2 converter) and ``run.json`` (the problem and
    optimizer settings; a different run aimed at the same directory or study is refused unless
    ``overwrite``).

    Parameters
    ----------
    problem
        The SAFS problem; its space may have conditions.
    n_trials
        Finished trials the study holds at the end (trials of earlier calls and other processes
        sharing the study included; forbidden samples not counted).
    seed
        Seed of every fine-tuning run and of the default sampler.
    output_dir
        Run directory shared with other optimizers of the same comparison.
    sampler
        Any Optuna sampler. Default ``optuna.samplers.TPESampler(seed=seed)``; when the study
        already holds trials the default sampler's seed is derived from ``seed`` and their number,
        so a resumed run does not repeat the first run's random start-up proposals.
    pruner
        Any Optuna pruner, e.g. ``optuna.pruners.MedianPruner()``. Default: no pruning.
    rungs
        Fine-tuning budgets (epochs) at which a trial reports; ``problem.max_budget`` is appended
        if missing. Default: every epoch with a pruner, only ``max_budget`` without one. Each rung
        is a ``problem.train`` call: cheap with budget continuation in the problem, a retraining
        from scratch without it.
    storage
        An Optuna storage or its URL (``"sqlite:///study.db"``, a ``JournalStorage``, ...), to
        resume or share the study.
    study_name
        Name of the study in ``storage``; default ``f"safs-optuna-{seed}"``.
    walltime
        Seconds after which no new trial starts.
    overwrite
        Start afresh (the study deleted from the storage) where the directory or the study
        holds a different run.
    max_forbidden
        Forbidden samples in a row after which the run stops with an error.

    Returns
    -------
    optuna.study.Study
        The study; :func:`study_runhistory` turns it into a SMAC RunHistory and
        :func:`fine_tuning_epochs` counts its fine-tuning epochs.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative int, got {n_trials!r}")
    if not walltime > 0:
        raise ValueError(f"walltime must be positive seconds, got {walltime!r}; pass e.g. 3600")
    max_forbidden = sampling._positive_int(max_forbidden, "max_forbidden")
    if pruner is None:
        pruner = optuna.pruners.NopPruner()
    elif not isinstance(pruner, optuna.pruners.BasePruner):
        raise ValueError(
            f"pruner must be an optuna pruner, got {type(pruner).__name__}; pass e.g. "
            "optuna.pruners.MedianPruner()"
        )
    if sampler is not None:
        sampling._check_sampler(sampler, seed)
    space = problem.configspace
    steps = _check_rungs(rungs, pruner, problem.max_budget)
    seed = int(seed)
    study_name = f"safs-{sampling.RUN_NAME}-{seed}" if study_name is None else str(study_name)
    run_dir = Path(output_dir) / sampling.RUN_NAME / str(seed)
    # One process per run directory, as for every other run (safs_smac.runs).
    with RunLock(run_dir):
        runhistory_path = run_dir / "runhistory.json"
        journal = run_dir / sampling.JOURNAL_FILE
        optimizer_meta = {
            "name": sampling.RUN_NAME,
            "seed": seed,
            "budget": None,
            "sampler": "TPESampler" if sampler is None else type(sampler).__name__,
            "pruner": type(pruner).__name__,
            "rungs": steps,
        }
        # The same identity rules as every other run (safs_smac.runs): compared after a JSON round
        # trip, with the data's fingerprint.
        settings = as_json(
            {
                "problem": problem.settings(),
                "optimizer": optimizer_meta,
                "data": problem.dataset.fingerprint(),
            }
        )
        different = False
        if (run_dir / "run.json").exists():
            stored = read_state(run_dir / "run.json", "the run's identity")
            verdict = check_identity(stored, settings)
            different = not verdict.same
            if different and not overwrite:
                what = "an earlier version's" if verdict.earlier_version else "a different"
                raise ValueError(
                    f"{run_dir} holds {what} Optuna run (changed: {', '.join(verdict.changed)}); "
                    "choose another output_dir or pass overwrite=True"
                )
        if different:
            runhistory_path.unlink(missing_ok=True)
            if storage is None:
                journal.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if storage is None:
            backend = optuna.storages.journal.JournalFileBackend(str(journal))
            storage = optuna.storages.JournalStorage(backend)
        storage = optuna.storages.get_storage(storage)
        if study_name in optuna.get_all_study_names(storage):
            stored = optuna.load_study(study_name=study_name, storage=storage)
            if not _same_settings(stored, settings) and not overwrite:
                raise ValueError(
                    f"study {study_name!r} in the storage holds a different Optuna run; pass "
                    "another study_name or overwrite=True"
                )
            if not _same_settings(stored, settings) or different:
                # overwrite: the directory's run (or the study's) is replaced, so is its study.
                optuna.delete_study(study_name=study_name, storage=storage)
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            sampler=sampler,
            pruner=pruner,
            direction="minimize",
            load_if_exists=True,
        )
        if sampler is None:
            study.sampler = optuna.samplers.TPESampler(seed=_derived_seed(seed, len(study.trials)))
        study.set_user_attr(sampling.SETTINGS_ATTR, settings)
        atomic_write_json(run_dir / "run.json", settings)
        _save_scenario(problem, Path(output_dir), seed, n_trials, steps, optimizer_meta)
        save_space(space, run_dir / "configspace.json")  # what load_runhistory needs
        _save_runhistory(study_runhistory(study, space), runhistory_path)
        # Dense training and pruning are shared set-up: done before the walltime clock starts.
        problem.pruned_checkpoint()

        start = time.monotonic()
        forbidden_in_a_row = 0
        while sum(_finished(t) for t in study.get_trials(deepcopy=False)) < n_trials:
            if time.monotonic() - start >= walltime:
                logger.info("optuna: walltime of %s s used", walltime)
                break
            trial = study.ask()
            try:
                config = sampling.suggest_config(trial, space)
            except sampling.ForbiddenConfigurationError as err:
                sampling._fail_forbidden(study, trial, err)
                forbidden_in_a_row += 1
                if forbidden_in_a_row >= max_forbidden:
                    raise RuntimeError(sampling._too_many_forbidden(max_forbidden, space)) from err
                continue
            forbidden_in_a_row = 0
            trial.set_user_attr(sampling.CONFIG_ATTR, plain_values(config))
            state, value = _evaluate_rungs(problem, trial, config, seed, steps)
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)  # PRUNED takes the last reported value
            logger.info("optuna trial %d: %s, value %s", trial.number, state.name, value)
            _save_runhistory(study_runhistory(study, space), runhistory_path)
        return study
