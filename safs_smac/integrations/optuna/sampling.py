"""Optuna samplers on a ConfigSpace: define-by-run suggestions and an ask/tell optimizer."""

from __future__ import annotations

import graphlib
import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import optuna
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
from smac.runhistory.dataclasses import TrialInfo

from safs_smac.optimizers import AskTellOptimizer

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
