"""Optuna on SAFS: the space as define-by-run ``trial.suggest_*`` calls, studies with pruning.

* :func:`suggest_config` asks an Optuna trial for the *active* hyperparameters of any ConfigSpace
  (conditions included: the space is walked parents first and a hyperparameter is suggested only
  when its conditions hold) and returns the validated :class:`~ConfigSpace.Configuration`; a
  sample that violates a forbidden clause raises :class:`ForbiddenConfigurationError`.
* :func:`run_optuna` runs an :class:`optuna.Study` on a :class:`~safs_smac.problem.SAFSProblem`
  and returns it. Each trial is fine-tuned through repeated ``problem.train(config, seed,
  budget=e)`` calls at increasing rungs ``e``, reported with ``trial.report(cost, e)``, so a
  pruner (``optuna.pruners.MedianPruner()``, ...) can stop it early. The study lives in any Optuna
  storage (default: a journal file in the run directory), so an interrupted run resumes and
  several processes can share one study. The run directory also holds SMAC's files
  (``runhistory.json`` with one entry per evaluated rung, ``scenario.json``,
  ``configspace.json``), so :func:`safs_smac.report.trials_dataframe` and DeepCAVE's SMAC3v2
  converter read it as any other run.
* :class:`OptunaOptimizer` runs any Optuna sampler behind safs_smac's ask/tell interface (for
  :func:`safs_smac.optimizers.run_optimizer`).

Needs the ``optuna`` extra (``pip install "safs-smac[optuna]"``).
"""

from __future__ import annotations

import graphlib
import itertools
import logging
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

# First, so that a missing extra fails fast with the install command, before torch loads.
try:
    import optuna
except ImportError as err:
    raise ImportError(
        f"safs_smac.integrations.optuna needs Optuna ({err}); "
        'install it with: pip install "safs-smac[optuna]"'
    ) from err

import numpy as np
from ConfigSpace import Configuration, ConfigurationSpace
from ConfigSpace.conditions import AndConjunction, Condition, Conjunction, OrConjunction
from ConfigSpace.exceptions import ForbiddenValueError
from ConfigSpace.hyperparameters import (
    CategoricalHyperparameter,
    Constant,
    FloatHyperparameter,
    Hyperparameter,
    IntegerHyperparameter,
    OrdinalHyperparameter,
)
from optuna.trial import TrialState
from smac import Scenario
from smac.runhistory import RunHistory, StatusType
from smac.runhistory.dataclasses import TrialInfo

from safs_smac._io import atomic_path, atomic_write_json
from safs_smac.optimizers import AskTellOptimizer
from safs_smac.optimizers.neighbours import plain_values
from safs_smac.problem import WORST_COST, SAFSProblem
from safs_smac.runs import RunLock, check_identity, read_state
from safs_smac.runs.identity import as_json
from safs_smac.smac_compat import atomic_smac_saves
from safs_smac.space import save_space

__all__ = [
    "ForbiddenConfigurationError",
    "OptunaOptimizer",
    "fine_tuning_epochs",
    "run_optuna",
    "study_runhistory",
    "suggest_config",
]

logger = logging.getLogger(__name__)

#: Directory of an Optuna run inside an output directory, as SMAC's facades use ``smac``.
RUN_NAME = "optuna"
#: Default storage of :func:`run_optuna`: an Optuna journal file in the run directory.
JOURNAL_FILE = "study.journal"
#: Trial user attribute holding the sampled configuration (plain values, active ones only).
CONFIG_ATTR = "config"
#: Trial user attribute holding one record per evaluated rung (budget, cost, status, info).
RUNGS_ATTR = "rungs"
#: Study user attribute holding the run's settings (problem and optimizer), checked on resume.
SETTINGS_ATTR = "safs_settings"


class ForbiddenConfigurationError(ValueError):
    """A sampled configuration violates one of the space's forbidden clauses."""


# ---------------------------------------------------------------------- sampling
def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _suggest(trial: optuna.trial.BaseTrial, hp: Hyperparameter) -> Any:
    """One ``trial.suggest_*`` call for a hyperparameter.

    Priors (normal/beta hyperparameters, categorical weights) are not passed on: Optuna's
    distributions are uniform (or log-uniform) over the range, and its samplers model the rest.
    """
    if isinstance(hp, Constant):
        return _plain(hp.value)
    if isinstance(hp, CategoricalHyperparameter):
        return trial.suggest_categorical(hp.name, [_plain(c) for c in hp.choices])
    if isinstance(hp, OrdinalHyperparameter):
        # Optuna has no ordinal distribution; the order is lost, the values are kept.
        return trial.suggest_categorical(hp.name, [_plain(v) for v in hp.sequence])
    if isinstance(hp, IntegerHyperparameter):
        return trial.suggest_int(hp.name, int(hp.lower), int(hp.upper), log=bool(hp.log))
    if isinstance(hp, FloatHyperparameter):
        return trial.suggest_float(hp.name, float(hp.lower), float(hp.upper), log=bool(hp.log))
    raise ValueError(
        f"hyperparameter {hp.name!r} of type {type(hp).__name__} has no Optuna equivalent; "
        "use categorical, ordinal, integer, float or constant hyperparameters"
    )


def _satisfied(condition: Condition | Conjunction, values: Mapping[str, Any]) -> bool:
    """Whether ``condition`` holds for the values set so far (an unset parent is inactive)."""
    if isinstance(condition, AndConjunction):
        return all(_satisfied(c, values) for c in condition.components)
    if isinstance(condition, OrConjunction):
        return any(_satisfied(c, values) for c in condition.components)
    # A condition on an inactive parent does not hold, as in ConfigSpace's own activity check.
    return condition.parent.name in values and bool(condition.satisfied_by_value(values))


def _parents_first(space: ConfigurationSpace) -> list[str]:
    """Hyperparameter names with every parent before its children (space order among equals)."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in space:
        sorter.add(name, *(parent.name for parent in space.parents_of[name]))
    return list(sorter.static_order())


def suggest_config(trial: optuna.trial.BaseTrial, space: ConfigurationSpace) -> Configuration:
    """Sample a configuration of ``space`` define-by-run, through Optuna's ``trial.suggest_*``.

    The space is walked parents first; a hyperparameter whose conditions do not hold for the
    values sampled so far is inactive and never suggested, so it is absent from the trial's
    parameters and from the configuration. Categorical -> ``suggest_categorical``, integer ->
    ``suggest_int``, float -> ``suggest_float`` (``log=True`` for log-scale hyperparameters),
    constants are fixed. Works with a live ``optuna.Trial`` and with a ``FixedTrial`` (to replay
    given values).

    Raises
    ------
    ForbiddenConfigurationError
        If the sample violates a forbidden clause. Optuna fixes a trial's values once
        suggested, so the trial cannot be resampled in place: fail it and ask a new one
        (:func:`run_optuna` and :class:`OptunaOptimizer` do that).
    """
    values: dict[str, Any] = {}
    for name in _parents_first(space):
        conditions = space.parent_conditions_of[name]
        if all(_satisfied(condition, values) for condition in conditions):
            values[name] = _suggest(trial, space[name])
    try:
        # Building the Configuration checks the conditions and the forbidden clauses again.
        return Configuration(space, values=values)
    except ForbiddenValueError as err:
        raise ForbiddenConfigurationError(
            f"sampled configuration {values} is forbidden in space {space.name!r}: {err}"
        ) from err


# ---------------------------------------------------------------------- ask/tell optimizer
class OptunaOptimizer(AskTellOptimizer):
    """An Optuna sampler behind safs_smac's ask/tell interface.

    Parameters
    ----------
    configspace
        Any space; conditions are sampled define-by-run (see :func:`suggest_config`).
    seed
        Seeds the default sampler (``TPESampler(seed=seed)``) and is the seed of every trial.
    budget
        Fidelity of every trial (None: the target's default). Single-fidelity: for pruning use
        :func:`run_optuna`.
    sampler
        Any Optuna sampler; default TPE. A given sampler keeps its own seed.
    max_forbidden
        Forbidden samples in a row after which :meth:`ask` gives up.

    Notes
    -----
    With a seeded sampler the proposals depend only on the seed and the told costs, so
    :func:`~safs_smac.optimizers.run_optimizer` resumes an interrupted run by replay. A crashed or
    non-finite trial is told to Optuna as failed; so is a sample that violates a forbidden clause
    (never evaluated, a new one is asked in its place).
    """

    name: ClassVar[str] = "optuna"

    def __init__(
        self,
        configspace: ConfigurationSpace,
        *,
        seed: int = 0,
        budget: float | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        max_forbidden: int = 100,
    ) -> None:
        super().__init__(configspace, seed=seed, budget=budget)
        self._sampler = _check_sampler(sampler, self.seed)
        self._max_forbidden = _positive_int(max_forbidden, "max_forbidden")
        self._study = optuna.create_study(direction="minimize", sampler=self._sampler)
        self._trials: list[tuple[TrialInfo, optuna.trial.Trial]] = []

    @property
    def study(self) -> optuna.study.Study:
        """The Optuna study holding every told trial (and failed forbidden samples)."""
        return self._study

    def _settings(self) -> dict[str, Any]:
        return {"sampler": type(self._sampler).__name__}

    def ask(self) -> TrialInfo:
        for _ in range(self._max_forbidden):
            trial = self._study.ask()
            try:
                config = suggest_config(trial, self.configspace)
            except ForbiddenConfigurationError as err:
                _fail_forbidden(self._study, trial, err)
                continue
            info = self._issue(config, f"{self.name}: {type(self._sampler).__name__}")
            self._trials.append((info, trial))
            return info
        raise RuntimeError(_too_many_forbidden(self._max_forbidden, self.configspace))

    def _observe(self, info: TrialInfo, cost: float) -> None:
        index = next(i for i, (asked, _) in enumerate(self._trials) if asked == info)
        # tell() already refused trials that were not asked, so the index exists.
        _, trial = self._trials.pop(index)
        if math.isfinite(cost):
            self._study.tell(trial, cost)
        else:
            self._study.tell(trial, state=TrialState.FAIL)


# ---------------------------------------------------------------------- helpers
def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_sampler(
    sampler: optuna.samplers.BaseSampler | None, seed: int
) -> optuna.samplers.BaseSampler:
    if sampler is None:
        return optuna.samplers.TPESampler(seed=seed)
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ValueError(
            f"sampler must be an optuna sampler, got {type(sampler).__name__}; pass e.g. "
            "optuna.samplers.TPESampler(seed=0)"
        )
    return sampler


def _fail_forbidden(
    study: optuna.study.Study, trial: optuna.trial.Trial, err: ForbiddenConfigurationError
) -> None:
    """Record a forbidden sample as a failed trial with its reason (it was never evaluated)."""
    trial.set_user_attr("forbidden", True)
    trial.set_user_attr("reason", str(err))
    study.tell(trial, state=TrialState.FAIL)
    logger.info("trial %d failed without evaluation: %s", trial.number, err)


def _too_many_forbidden(n: int, space: ConfigurationSpace) -> str:
    return (
        f"{n} samples in a row violated the forbidden clauses of space {space.name!r}; "
        "the clauses exclude (almost) the whole space — check them"
    )


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
        trial.set_user_attr(RUNGS_ATTR, records)
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
    trial.set_user_attr(RUNGS_ATTR, records)
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
        if not _finished(trial) or CONFIG_ATTR not in trial.user_attrs:
            continue
        values = trial.user_attrs[CONFIG_ATTR]
        config = Configuration(configspace, values=values, origin=origin)
        for record in trial.user_attrs.get(RUNGS_ATTR, []):
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
        name=RUN_NAME,  # SMAC's directory layout: <output_dir>/optuna/<seed>/
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
    stored = study.user_attrs.get(SETTINGS_ATTR)
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
    max_forbidden = _positive_int(max_forbidden, "max_forbidden")
    if pruner is None:
        pruner = optuna.pruners.NopPruner()
    elif not isinstance(pruner, optuna.pruners.BasePruner):
        raise ValueError(
            f"pruner must be an optuna pruner, got {type(pruner).__name__}; pass e.g. "
            "optuna.pruners.MedianPruner()"
        )
    if sampler is not None:
        _check_sampler(sampler, seed)
    space = problem.configspace
    steps = _check_rungs(rungs, pruner, problem.max_budget)
    seed = int(seed)
    study_name = f"safs-{RUN_NAME}-{seed}" if study_name is None else str(study_name)
    run_dir = Path(output_dir) / RUN_NAME / str(seed)
    # One process per run directory, as for every other run (safs_smac.runs).
    with RunLock(run_dir):
        runhistory_path = run_dir / "runhistory.json"
        journal = run_dir / JOURNAL_FILE
        optimizer_meta = {
            "name": RUN_NAME,
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
        study.set_user_attr(SETTINGS_ATTR, settings)
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
                config = suggest_config(trial, space)
            except ForbiddenConfigurationError as err:
                _fail_forbidden(study, trial, err)
                forbidden_in_a_row += 1
                if forbidden_in_a_row >= max_forbidden:
                    raise RuntimeError(_too_many_forbidden(max_forbidden, space)) from err
                continue
            forbidden_in_a_row = 0
            trial.set_user_attr(CONFIG_ATTR, plain_values(config))
            state, value = _evaluate_rungs(problem, trial, config, seed, steps)
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)  # PRUNED takes the last reported value
            logger.info("optuna trial %d: %s, value %s", trial.number, state.name, value)
            _save_runhistory(study_runhistory(study, space), runhistory_path)
        return study
