"""A SAFS problem as a CARP-S objective function, and the names the SAFS tasks share.

:class:`SAFSObjectiveFunction` is a CARP-S ``ObjectiveFunction`` around a
:class:`~safs_smac.problem.SAFSProblem`: cost = 1 - validation accuracy, a trial's budget is its
fine-tuning epochs (``None``: the problem's ``max_budget``), ``TrialValue.additional_info`` is
the target's info (epochs, divergence, sparsity, dead neuron rates, ...). Its space spells boolean
choices ``"true"``/``"false"`` (:func:`string_booleans`) because CARP-S's loggers JSON-encode
configurations.

Imported by :mod:`safs_smac.integrations.carps` (which re-exports every public name) and by
:mod:`safs_smac.integrations.carps_tasks`; imports neither. Imports carps (not
``carps.utils.task``, which configures logging), omegaconf, ConfigSpace, :mod:`safs_smac.problem`
and :mod:`safs_smac.optimizers.neighbours`. Needs the ``carps`` extra.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

# First, so that a missing extra fails fast with the install command, before torch loads.
try:
    from carps.objective_functions.objective_function import ObjectiveFunction
    from carps.utils.trials import StatusType, TrialInfo, TrialValue
    from omegaconf import DictConfig, ListConfig, OmegaConf  # Hydra's containers, a carps dep
except ImportError as err:
    raise ImportError(
        f"safs_smac.integrations.carps needs CARP-S ({err}); "
        'install it with: pip install "safs-smac[carps]"'
    ) from err

from ConfigSpace import ConfigurationSpace
from ConfigSpace.util import deactivate_inactive_hyperparameters

from safs_smac.optimizers.neighbours import plain_values
from safs_smac.problem import SAFSProblem

if TYPE_CHECKING:
    from carps.loggers.abstract_logger import AbstractLogger

__all__ = [
    "BENCHMARK_ID",
    "FIDELITY_TYPE",
    "OBJECTIVE",
    "SAFSObjectiveFunction",
    "string_booleans",
    "to_plain",
]

#: CARP-S ``benchmark_id`` of the SAFS tasks (and their config group, ``+task/SAFS=<task>``).
BENCHMARK_ID = "SAFS"
#: CARP-S ``fidelity_type`` of the multi-fidelity tasks: a budget is a number of fine-tuning epochs.
FIDELITY_TYPE = "epochs"
#: Name of the single objective in the shipped tasks (cost = 1 - validation accuracy).
OBJECTIVE = "val_error_rate"


def to_plain(value: Any) -> Any:
    """Hydra hands nested nodes over as OmegaConf containers; the problem wants plain Python.

    Plain values matter beyond typing: they enter the problem's cache keys, and an OmegaConf
    container would hash differently from the same dict given in Python.
    """
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SAFSObjectiveFunction(ObjectiveFunction):
    """A SAFS problem as a CARP-S objective function.

    Parameters
    ----------
    problem
        A ready :class:`~safs_smac.problem.SAFSProblem`; or leave it out and pass the problem's
        keyword arguments (``model``, ``dataset``, ``pruning_rate``, ``max_budget``, ...), as the
        Hydra task configs do.
    trial_seed
        Seed of every fine-tuning run, so the benchmark is one deterministic function whichever
        optimizer or optimizer seed asks (CARP-S runs compare optimizers on the same function).
        ``None`` uses the seed each trial carries (0 when it carries none).
    space_seed
        Seed of :attr:`configspace`'s sampler; default the problem's seed. CARP-S's random search
        samples from the objective's space, so the task configs pass CARP-S's run seed here:
        otherwise every run seed would draw the same configurations.
    loggers
        CARP-S loggers (CARP-S's ``make_task`` passes them).
    **problem_kwargs
        Keyword arguments of :class:`~safs_smac.problem.SAFSProblem`.
    """

    def __init__(
        self,
        problem: SAFSProblem | None = None,
        *,
        trial_seed: int | None = 0,
        space_seed: int | None = None,
        loggers: list[AbstractLogger] | None = None,
        **problem_kwargs: Any,
    ) -> None:
        super().__init__(loggers)
        if problem is not None and problem_kwargs:
            raise ValueError(
                f"pass either a SAFSProblem or its keyword arguments, not both (got problem and "
                f"{', '.join(sorted(problem_kwargs))}); build the problem with those arguments"
            )
        if trial_seed is not None and (isinstance(trial_seed, bool) or int(trial_seed) < 0):
            raise ValueError(f"trial_seed must be a non-negative int or None, got {trial_seed!r}")
        if problem is None:
            problem = SAFSProblem(**{k: to_plain(v) for k, v in problem_kwargs.items()})
        elif not isinstance(problem, SAFSProblem):
            raise ValueError(
                f"problem must be a safs_smac SAFSProblem, got {type(problem).__name__}; "
                "build one with SAFSProblem(model, dataset, ...)"
            )
        self.problem = problem
        self.trial_seed = None if trial_seed is None else int(trial_seed)
        self.space_seed = problem.seed if space_seed is None else int(space_seed)
        space = string_booleans(problem.configspace, seed=self.space_seed)
        if space is problem.configspace:  # no boolean choices: a copy, with a sampler of its own
            space = ConfigurationSpace.from_serialized_dict(space.to_serialized_dict())
            space.seed(self.space_seed)
        self._configspace = space

    @property
    def configspace(self) -> ConfigurationSpace:
        """The problem's SAFS space, boolean choices spelled ``"true"``/``"false"``.

        CARP-S's loggers JSON-encode configurations and fail on the ``numpy.bool`` values that
        sampling a ``[True, False]`` categorical (``ft:learn_scales``) yields; the problem decodes
        both spellings.
        """
        return self._configspace

    def seed_for(self, trial_info: TrialInfo) -> int:
        """The fine-tuning seed of a trial (see ``trial_seed``)."""
        if self.trial_seed is not None:
            return self.trial_seed
        return 0 if trial_info.seed is None else int(trial_info.seed)

    def _make_config_valid(self, trial_info: TrialInfo) -> TrialInfo:
        """Drop inactive hyperparameters (as CARP-S does) and make every value plain Python.

        Sampled configurations hold numpy scalars (``ft:learn_scales`` is a ``numpy.bool``) that
        CARP-S's loggers cannot JSON-encode.
        """
        config = deactivate_inactive_hyperparameters(
            plain_values(trial_info.config), self.configspace
        )
        return dataclasses.replace(trial_info, config=config)

    def _evaluate(self, trial_info: TrialInfo) -> TrialValue:
        # Dense training and pruning are set-up shared by all trials (cached on disk): done before
        # the clock starts, so the first trial's time is comparable with the others.
        self.problem.pruned_checkpoint()
        seed = self.seed_for(trial_info)
        start = time.time()
        cost, info = self.problem.train(trial_info.config, seed=seed, budget=trial_info.budget)
        end = time.time()
        info["seed"] = seed
        return TrialValue(
            cost=cost,
            time=end - start,
            status=StatusType.SUCCESS,
            starttime=start,
            endtime=end,
            additional_info=info,
        )


def string_booleans(space: ConfigurationSpace, *, seed: int = 0) -> ConfigurationSpace:
    """``space`` with every boolean choice of a categorical replaced by ``"true"``/``"false"``.

    Conditions and forbidden clauses on such a hyperparameter are rewritten alike. Returns
    ``space`` itself when it has no boolean choices.
    """
    data = space.to_serialized_dict()
    booleans: set[str] = set()
    for hp in data["hyperparameters"]:
        if hp["type"] == "categorical" and any(isinstance(c, bool) for c in hp["choices"]):
            booleans.add(hp["name"])
            hp["choices"] = [_spell(c) for c in hp["choices"]]
            hp["default_value"] = _spell(hp["default_value"])
    if not booleans:
        return space
    data["conditions"] = [_spell_clause(c, booleans) for c in data["conditions"]]
    data["forbiddens"] = [_spell_clause(f, booleans) for f in data["forbiddens"]]
    converted = ConfigurationSpace.from_serialized_dict(data)
    converted.seed(seed)
    return converted


def _spell(value: Any) -> Any:
    return str(value).lower() if isinstance(value, bool) else value


def _spell_clause(clause: dict[str, Any], booleans: set[str]) -> dict[str, Any]:
    """Rewrite the values of a serialised condition/forbidden that refer to a boolean."""
    clause = dict(clause)
    if clause.get("parent") in booleans or clause.get("name") in booleans:
        if "value" in clause:
            clause["value"] = _spell(clause["value"])
        if "values" in clause:
            clause["values"] = [_spell(v) for v in clause["values"]]
    for key in ("conditions", "clauses"):  # conjunctions nest their parts
        if key in clause:
            clause[key] = [_spell_clause(c, booleans) for c in clause[key]]
    return clause
