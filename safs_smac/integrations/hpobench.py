"""SAFS behind HPOBench's interface, without depending on ``hpobench``.

HPOBench (``hpobench.abstract_benchmark.AbstractBenchmark``) is neither on PyPI nor maintained, but
its calling convention is what many HPO tools and scripts speak. :class:`SAFSBenchmark` has the
same method names, arguments and return values, so code written for an HPOBench benchmark runs on a
SAFS problem unchanged::

    bench = SAFSBenchmark(model="lenet5", dataset="mnist-5k", pruning_rate=0.9, rng=1)
    config = bench.get_configuration_space(seed=1).sample_configuration()
    result = bench.objective_function(config, fidelity={"epoch": 3})
    result["function_value"], result["cost"], result["info"]["val_accuracy"]

Differences from HPOBench, all deliberate:

* The spaces depend on the network (one operator per activation site), so
  ``get_configuration_space``, ``get_fidelity_space`` and ``get_meta_information`` are instance
  methods, not static ones.
* ``rng=None`` means a fixed seed (the benchmark's default), not a fresh unseeded random state: the
  same configuration and fidelity always give the same value unless you pass ``rng``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from ConfigSpace import Configuration, ConfigurationSpace, Constant, Integer
from ConfigSpace.util import deactivate_inactive_hyperparameters

from safs_smac.optimizers.neighbours import plain_values
from safs_smac.problem import WORST_COST, SAFSProblem
from safs_smac.space import check_config

# What HPOBench's methods accept: a configuration or a plain dict, and a seed or random state.
Config = Configuration | Mapping[str, Any]
Seed = int | np.random.RandomState | None

__all__ = ["FIDELITY", "SAFSBenchmark"]

#: Name of the fidelity: fine-tuning epochs of a trial.
FIDELITY = "epoch"

_MAX_SEED = 2**31 - 1


class SAFSBenchmark:
    """A SAFS problem as an HPOBench-style benchmark.

    Parameters
    ----------
    problem
        A ready :class:`~safs_smac.problem.SAFSProblem`; or leave it out and pass the problem's
        keyword arguments (``model``, ``dataset``, ``pruning_rate``, ``max_budget``, ...).
    rng
        Default random state: an int seed, a ``numpy.random.RandomState`` (one seed is drawn from
        it now) or None (seed 0). The default seed of every fine-tuning run that gets no ``rng``.
    **problem_kwargs
        Keyword arguments of :class:`~safs_smac.problem.SAFSProblem`.

    Attributes
    ----------
    configuration_space, fidelity_space
        The spaces, as HPOBench benchmarks expose them.
    rng
        The benchmark's ``numpy.random.RandomState``.
    """

    def __init__(
        self,
        problem: SAFSProblem | None = None,
        *,
        rng: Seed = None,
        **problem_kwargs: Any,
    ) -> None:
        if problem is not None and problem_kwargs:
            raise ValueError(
                f"pass either a SAFSProblem or its keyword arguments, not both (got problem and "
                f"{', '.join(sorted(problem_kwargs))}); build the problem with those arguments"
            )
        if problem is None:
            problem = SAFSProblem(**problem_kwargs)
        elif not isinstance(problem, SAFSProblem):
            raise ValueError(
                f"problem must be a safs_smac SAFSProblem, got {type(problem).__name__}; "
                "build one with SAFSProblem(model, dataset, ...)"
            )
        self.problem = problem
        self.seed = 0 if rng is None else _seed_from(rng)
        self.rng = (
            rng if isinstance(rng, np.random.RandomState) else np.random.RandomState(self.seed)
        )
        self.configuration_space = self.get_configuration_space(self.seed)
        self.fidelity_space = self.get_fidelity_space(self.seed)

    # ------------------------------------------------------------------ spaces and meta data
    def get_configuration_space(self, seed: int | None = None) -> ConfigurationSpace:
        """A copy of the SAFS space (operators, scales, fine-tuning hyperparameters)."""
        space = copy.deepcopy(self.problem.configspace)
        if seed is not None:
            space.seed(int(seed))
        return space

    def get_fidelity_space(self, seed: int | None = None) -> ConfigurationSpace:
        """Fine-tuning epochs ``epoch`` in ``[1, max_budget]``; the default is the maximum."""
        top = self.problem.max_budget
        # ConfigSpace refuses an integer range of one value; a constant says the same.
        fidelity = Constant(FIDELITY, top) if top == 1 else Integer(FIDELITY, (1, top), default=top)
        space = ConfigurationSpace(name="safs_fidelity", seed=seed)
        space.add(fidelity)
        return space

    def get_meta_information(self) -> dict[str, Any]:
        """What the benchmark is, where it comes from and what it returns."""
        problem = self.problem
        return {
            "name": f"SAFS {problem.model_name} on {problem.dataset_name}",
            "references": [
                "Loni, Mohan, Asadi, Lindauer: Learning Activation Functions for Sparse Neural "
                "Networks. AutoML Conference 2023, PMLR 224 (arXiv:2305.10964)"
            ],
            "code": "https://github.com/automl/SAFS (reference); safs_smac (this implementation)",
            "function_value": "1 - validation accuracy after fine-tuning the pruned network",
            "function_value_test": "1 - test accuracy after fine-tuning at the full budget",
            "cost": "wall-clock seconds of the evaluation (one-off dense training excluded)",
            "fidelity": f"{FIDELITY}: fine-tuning epochs, 1 to {problem.max_budget}",
            "settings": problem.settings(),
        }

    # ------------------------------------------------------------------ evaluation
    def objective_function(
        self, configuration: Config, fidelity: Config | None = None, rng: Seed = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Fine-tune the pruned network as ``configuration`` says; cost = 1 - validation accuracy.

        Parameters
        ----------
        configuration
            A configuration of :attr:`configuration_space` or a dict; values of inactive
            hyperparameters are removed first.
        fidelity
            ``{"epoch": n}``; None (or a missing key) uses the maximum.
        rng
            Seed (int) or random state of the fine-tuning run; None uses the benchmark's seed.

        Returns
        -------
        dict
            ``function_value`` (1 - validation accuracy; 1.0 if training diverged), ``cost``
            (seconds) and ``info`` (epochs, validation accuracy/loss, divergence, sparsity, dead
            neuron rates, the fidelity and the seed used).
        """
        config = self._cast_configuration(configuration)
        epochs = self._cast_fidelity(fidelity, kwargs)
        seed = self.seed if rng is None else _seed_from(rng)
        # Dense training and pruning are one-off set-up (cached on disk), not this call's cost.
        self.problem.pruned_checkpoint()
        start = time.perf_counter()
        cost, info = self.problem.train(config, seed=seed, budget=epochs)
        seconds = time.perf_counter() - start
        info.update(fidelity={FIDELITY: epochs}, seed=seed)
        return {"function_value": float(cost), "cost": seconds, "info": info}

    def objective_function_test(
        self, configuration: Config, fidelity: Config | None = None, rng: Seed = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Fine-tune at the full budget and report the *test* error (for final reports only).

        Never use it to select configurations: that would tune on the test set. Only the maximum
        fidelity is accepted.

        Returns
        -------
        dict
            ``function_value`` (1 - test accuracy; 1.0 if training diverged), ``cost`` (seconds)
            and ``info`` (validation and test accuracy, learned operators and scales, ...).
        """
        config = self._cast_configuration(configuration)
        epochs = self._cast_fidelity(fidelity, kwargs)
        if epochs != self.problem.max_budget:
            raise ValueError(
                f"objective_function_test runs at the full budget only ({FIDELITY}="
                f"{self.problem.max_budget}), got {FIDELITY}={epochs}; drop the fidelity argument"
            )
        seed = self.seed if rng is None else _seed_from(rng)
        self.problem.pruned_checkpoint()  # set-up, as in objective_function
        start = time.perf_counter()
        final = self.problem.final_evaluation(self.problem.decode(config), seed=seed, epochs=epochs)
        seconds = time.perf_counter() - start
        value = WORST_COST if final.diverged else 1.0 - final.test_accuracy
        info = {**final.to_dict(), "fidelity": {FIDELITY: epochs}, "seed": seed}
        return {"function_value": float(value), "cost": seconds, "info": info}

    def __call__(self, configuration: Config, **kwargs: Any) -> float:
        """``objective_function(...)["function_value"]``, for SciPy-style optimizers."""
        return self.objective_function(configuration, **kwargs)["function_value"]

    # ------------------------------------------------------------------ argument checks
    def _cast_configuration(self, configuration: Config) -> Configuration:
        """Validate a configuration and drop the values of inactive hyperparameters."""
        if isinstance(configuration, Configuration):
            values = plain_values(configuration)
        elif isinstance(configuration, Mapping):
            values = dict(configuration)
        else:
            raise ValueError(
                f"configuration must be a dict or a ConfigSpace Configuration, got "
                f"{type(configuration).__name__}; sample one from get_configuration_space()"
            )
        space = self.configuration_space
        try:
            active = deactivate_inactive_hyperparameters(values, space)
        except ValueError as err:
            check_config(values, space)  # raises the explanatory error for what is wrong
            raise ValueError(f"invalid configuration: {err}; fix its values") from err
        return check_config(plain_values(active), space)

    def _cast_fidelity(self, fidelity: Config | None, kwargs: Mapping[str, Any]) -> int:
        """The fine-tuning epochs a fidelity argument asks for (default: the maximum)."""
        if FIDELITY in kwargs:
            raise ValueError(
                f"{FIDELITY!r} was passed as a keyword argument; pass "
                f"fidelity={{{FIDELITY!r}: {kwargs[FIDELITY]!r}}} instead"
            )
        if fidelity is None:
            return self.problem.max_budget
        if not isinstance(fidelity, (Configuration, Mapping)):
            raise ValueError(
                f"fidelity must be None, a dict or a Configuration, got {type(fidelity).__name__};"
                f" pass e.g. {{{FIDELITY!r}: {self.problem.max_budget}}}"
            )
        values = dict(fidelity)
        unknown = sorted(set(values) - {FIDELITY})
        if unknown:
            raise ValueError(
                f"unknown fidelity key(s) {unknown}; the only fidelity is {FIDELITY!r} "
                f"(fine-tuning epochs, 1 to {self.problem.max_budget})"
            )
        epochs = values.get(FIDELITY, self.problem.max_budget)
        if isinstance(epochs, (float, np.floating)) and float(epochs).is_integer():
            epochs = int(epochs)
        if (
            isinstance(epochs, bool)
            or not isinstance(epochs, (int, np.integer))
            or not 1 <= epochs <= self.problem.max_budget
        ):
            raise ValueError(
                f"fidelity {FIDELITY}={epochs!r} is not a whole number of epochs in "
                f"[1, {self.problem.max_budget}]; pass an int in that range"
            )
        return int(epochs)


def _seed_from(rng: int | np.random.RandomState) -> int:
    """A seed from an int (HPOBench takes ``abs``: SMAC may pass -1) or a random state."""
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(0, _MAX_SEED))
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise ValueError(
            f"rng must be an int seed, a numpy RandomState or None, got {rng!r}; pass e.g. rng=1"
        )
    return abs(int(rng))
