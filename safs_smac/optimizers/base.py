"""Ask/tell interface and the sequential local-search machinery.

Every optimizer here proposes SMAC ``TrialInfo`` objects and learns from ``TrialValue`` objects,
exactly like ``smac.ask``/``smac.tell``, and :func:`~safs_smac.optimizers.loop.run_optimizer`
records each trial in a SMAC ``RunHistory``, so LAHC, the baselines and SMAC runs share one result
format.

Resumption is replay: the optimizers are deterministic functions of their seed and the costs they
are told, so a fresh optimizer driven by :func:`run_optimizer` over the runhistory of a killed run
asks the same trials again, gets their stored results instead of evaluations, reaches the same
state and continues where the run stopped.
"""

from __future__ import annotations

import copy
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import Any, ClassVar

import numpy as np
from ConfigSpace import Configuration, ConfigurationSpace
from smac.runhistory.dataclasses import TrialInfo, TrialValue
from smac.runhistory.enumerations import StatusType

from safs_smac.optimizers.neighbours import Move, mixed_move, plain_values

__all__ = [
    "AskTellOptimizer",
    "LocalSearchOptimizer",
    "TargetFunction",
    "config_key",
    "search_cost",
]

logger = logging.getLogger(__name__)

TargetFunction = Callable[..., "float | tuple[float, dict[str, Any]]"]
"""``target(config, seed=..., budget=...)`` -> cost or (cost, additional_info), as for SMAC."""

_INITIAL_CHOICES = ("random", "default")


def config_key(config: Configuration) -> Hashable:
    """A key under which equal configurations are equal, however they were built.

    ``hash(Configuration)`` uses its repr, which differs between a sampled configuration
    (``np.str_('relu')``) and the same configuration read back from JSON (``'relu'``), so a
    RunHistory's own ``config_ids`` lookup misses configurations of a reloaded run.
    """
    return tuple(plain_values(config).items())


def search_cost(value: TrialValue) -> float:
    """The cost an optimizer ranks a trial by: +inf unless the trial succeeded with a finite cost.

    SMAC records crashes with ``crash_cost`` (inf by default); treating every unsuccessful or
    non-finite result as +inf makes a crashed configuration the worst possible state.
    """
    if isinstance(value.cost, (list, tuple)):
        raise ValueError(
            f"these optimizers are single-objective but the trial has cost {value.cost!r}; "
            "return one scalar cost from the target (e.g. a weighted sum)."
        )
    cost = float(value.cost)
    if value.status != StatusType.SUCCESS or not math.isfinite(cost):
        return math.inf
    return cost


def _callable_name(fn: Callable[..., Any]) -> str:
    """A stable, JSON-friendly name for a move (used in ``meta``)."""
    if isinstance(fn, partial):
        args = ", ".join(
            [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        )
        return f"partial({_callable_name(fn.func)}, {args})"
    return getattr(fn, "__qualname__", None) or type(fn).__name__


class AskTellOptimizer(ABC):
    """Base class of the ask/tell optimizers.

    Parameters
    ----------
    configspace : ConfigurationSpace
        The space to search.
    seed : int, defaults to 0
        Seeds every random choice; the same seed and the same told costs give the same trials.
        Every trial is asked with this seed (one seed per configuration, as SMAC's deterministic
        scenarios).
    budget : float | None, defaults to None
        The fidelity (e.g. epochs) every trial is evaluated at; None means the target's default.
    """

    name: ClassVar[str] = "base"

    def __init__(
        self, configspace: ConfigurationSpace, *, seed: int = 0, budget: float | None = None
    ) -> None:
        if not isinstance(configspace, ConfigurationSpace):
            raise ValueError(
                f"configspace must be a ConfigSpace.ConfigurationSpace, got "
                f"{type(configspace).__name__}; build one with ConfigurationSpace(...)."
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}; pass e.g. seed=0.")
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise ValueError(
                f"budget must be a positive finite number or None, got {budget!r}; pass e.g. "
                "budget=9 (epochs) or None for the target's default fidelity."
            )
        self._configspace = configspace
        self._seed = int(seed)
        self._budget = None if budget is None else float(budget)
        # Independent streams for the search's own choices and for ConfigSpace sampling, so that
        # adding a draw to one never shifts the other.
        search_seq, sample_seq = np.random.SeedSequence(self._seed).spawn(2)
        self._rng = np.random.default_rng(search_seq)
        # ConfigSpace samples from the space's own RandomState; a private copy keeps the user's
        # space untouched and our sequence independent of anybody else sampling from it.
        self._sampling_space = copy.deepcopy(configspace)
        self._sampling_space.seed(int(sample_seq.generate_state(1)[0]))
        self._pending: list[TrialInfo] = []
        self._incumbent: Configuration | None = None
        self._incumbent_cost: float | None = None
        self._n_told = 0

    # ------------------------------------------------------------------ properties
    @property
    def configspace(self) -> ConfigurationSpace:
        return self._configspace

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def budget(self) -> float | None:
        return self._budget

    @property
    def incumbent(self) -> Configuration | None:
        """The configuration with the lowest finite cost told so far (first one on ties)."""
        return self._incumbent

    @property
    def incumbent_cost(self) -> float | None:
        return self._incumbent_cost

    @property
    def n_told(self) -> int:
        """How many trials have been told (revisits included)."""
        return self._n_told

    @property
    def pending(self) -> tuple[TrialInfo, ...]:
        """Trials asked but not told yet."""
        return tuple(self._pending)

    @property
    def meta(self) -> dict[str, Any]:
        """Name and settings (JSON-serialisable); a resumed run must have the same meta."""
        return {"name": self.name, "seed": self._seed, "budget": self._budget, **self._settings()}

    def _settings(self) -> dict[str, Any]:
        """Algorithm settings that enter ``meta``; subclasses add theirs."""
        return {}

    def _private_settings(self, *names: str) -> dict[str, Any]:
        """``{name: self._<name>}`` for settings a subclass keeps as private attributes."""
        return {name: getattr(self, f"_{name}") for name in names}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.meta.items() if k != "name")
        return f"{type(self).__name__}({settings})"

    # ------------------------------------------------------------------ ask / tell
    @abstractmethod
    def ask(self) -> TrialInfo:
        """The next trial to evaluate (instance None, seed = optimizer seed, budget = budget)."""

    def ask_batch(self, n: int) -> list[TrialInfo]:
        """``n`` trials to evaluate in parallel; tell each one when its result is in."""
        check_batch_size(n)
        return [self.ask() for _ in range(n)]

    def tell(self, info: TrialInfo, value: TrialValue) -> None:
        """Report the result of an asked trial.

        The optimizer ranks trials by :func:`search_cost`: crashed or non-finite trials count as
        +inf.
        """
        for i, pending in enumerate(self._pending):
            if pending == info:
                del self._pending[i]
                break
        else:
            raise ValueError(
                f"tell() got a trial that is not pending ({dict(info.config)}, seed={info.seed}, "
                f"budget={info.budget}); tell only trials returned by ask(), each once."
            )
        cost = search_cost(value)
        self._n_told += 1
        if math.isfinite(cost) and (self._incumbent_cost is None or cost < self._incumbent_cost):
            self._incumbent, self._incumbent_cost = info.config, cost
        self._observe(info, cost)

    def _observe(self, info: TrialInfo, cost: float) -> None:  # noqa: B027 (optional hook)
        """Learn from a told trial; ``cost`` is its search cost."""

    def should_stop(self) -> bool:
        """The optimizer's own stopping rule; False means "only the caller's budget stops me"."""
        return False

    # ------------------------------------------------------------------ helpers
    def _issue(self, config: Configuration, origin: str) -> TrialInfo:
        """Wrap a proposed configuration into a pending trial."""
        # Rebuilt from plain values so that it hashes like the same configuration read from JSON.
        config = Configuration(self._configspace, values=plain_values(config), origin=origin)
        info = TrialInfo(config=config, seed=self._seed, budget=self._budget)
        self._pending.append(info)
        return info

    def _sample_configuration(self) -> Configuration:
        return Configuration(
            self._configspace, vector=self._sampling_space.sample_configuration().get_array()
        )


class LocalSearchOptimizer(AskTellOptimizer):
    """Single-state local search: a current configuration, a move and an acceptance rule.

    The walk is strictly sequential: ``ask()`` returns the initial configuration first, then one
    neighbour of the current state per call, and the next ``ask()`` is only allowed after the
    asked trial was told. With several workers use ``ask_batch(n)``: ``n`` neighbours of the
    current state (the first batch is the initial configuration plus ``n - 1`` of its neighbours)
    are evaluated in parallel and, once the whole batch is told, one acceptance step is applied to
    the best of them.

    Subclasses implement ``_accept(cost)`` (decide on a candidate) and may hook ``_start`` and
    ``_after_step``.

    Parameters
    ----------
    configspace, seed, budget
        See :class:`AskTellOptimizer`.
    initial : "random" | "default" | Configuration | Mapping, defaults to "random"
        The initial state: a uniformly sampled configuration (the reference's random operator per
        site), the space's default configuration, or the given configuration.
    move : Move, defaults to :func:`~safs_smac.optimizers.neighbours.mixed_move`
        ``move(config, rng) -> Configuration``, the neighbourhood.
    """

    def __init__(
        self,
        configspace: ConfigurationSpace,
        *,
        seed: int = 0,
        budget: float | None = None,
        initial: str | Configuration | Mapping[str, Any] = "random",
        move: Move = mixed_move,
    ) -> None:
        super().__init__(configspace, seed=seed, budget=budget)
        if not callable(move):
            raise ValueError(
                f"move must be a callable move(config, rng) -> Configuration, got {move!r}; "
                "pass e.g. safs_smac.optimizers.mixed_move."
            )
        self._move = move
        self._initial_setting = initial
        self._initial = self._initial_configuration(initial)
        self._current: Configuration | None = None
        self._current_cost: float | None = None
        self._step = 0
        self._last_accepted: bool | None = None
        self._batch: list[TrialInfo] = []
        self._batch_costs: list[float | None] = []

    def _initial_configuration(
        self, initial: str | Configuration | Mapping[str, Any]
    ) -> Configuration:
        if isinstance(initial, Configuration):
            return Configuration(self._configspace, values=plain_values(initial))
        if isinstance(initial, Mapping):
            return Configuration(self._configspace, values=dict(initial))
        if initial == "random":
            return self._sample_configuration()
        if initial == "default":
            return self._configspace.get_default_configuration()
        raise ValueError(
            f"unknown initial state {initial!r}; valid: {', '.join(_INITIAL_CHOICES)}, "
            "a Configuration or a dict of hyperparameter values."
        )

    # ------------------------------------------------------------------ state
    @property
    def started(self) -> bool:
        """Whether the initial configuration's cost is known."""
        return self._current is not None

    @property
    def current(self) -> Configuration:
        """The current state (the initial configuration until its cost is told)."""
        return self._initial if self._current is None else self._current

    @property
    def current_cost(self) -> float | None:
        return self._current_cost

    @property
    def step(self) -> int:
        """Completed acceptance steps (the initial evaluation is not a step)."""
        return self._step

    @property
    def last_accepted(self) -> bool | None:
        """Whether the last step accepted its candidate (None before the first step)."""
        return self._last_accepted

    def _settings(self) -> dict[str, Any]:
        initial = self._initial_setting
        if not isinstance(initial, str):
            initial = plain_values(self._initial)
        return {"initial": initial, "move": _callable_name(self._move)}

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> TrialInfo:
        return self.ask_batch(1)[0]

    def ask_batch(self, n: int) -> list[TrialInfo]:
        check_batch_size(n)
        if self._batch:
            raise RuntimeError(
                f"{type(self).__name__} is a sequential local search and {len(self._pending)} "
                "asked trial(s) are not told yet; tell() every asked trial before asking again, "
                "or use ask_batch(n) to evaluate several neighbours in parallel."
            )
        origin = f"{self.name}: neighbour"
        configs: list[Configuration] = []
        if not self.started:
            configs.append(self._initial)
        keys = {config_key(c) for c in configs}
        while len(configs) < n:
            candidate = self._neighbour(exclude=keys)
            keys.add(config_key(candidate))
            configs.append(candidate)
        self._batch = [
            self._issue(c, f"{self.name}: initial" if c is self._initial else origin)
            for c in configs
        ]
        self._batch_costs = [None] * len(self._batch)
        return list(self._batch)

    def _neighbour(self, exclude: set[Hashable]) -> Configuration:
        """A neighbour of the current state, preferring one not already in this batch."""
        candidate = self._move(self.current, self._rng)
        for _ in range(10):
            if config_key(candidate) not in exclude:
                break
            candidate = self._move(self.current, self._rng)
        return candidate

    def _observe(self, info: TrialInfo, cost: float) -> None:
        for i, (trial, told) in enumerate(zip(self._batch, self._batch_costs)):
            if told is None and trial == info:
                self._batch_costs[i] = cost
                break
        if any(c is None for c in self._batch_costs):
            return
        batch, costs = self._batch, self._batch_costs
        self._batch, self._batch_costs = [], []
        if not self.started:
            self._current, self._current_cost = batch[0].config, costs[0]
            self._start(costs[0])
            batch, costs = batch[1:], costs[1:]
        if batch:
            best = int(np.argmin(costs))  # first of equals: the earliest asked
            self._take_step(batch[best].config, costs[best])

    def _take_step(self, candidate: Configuration, cost: float) -> None:
        accepted = self._accept(cost)
        if accepted:
            self._current, self._current_cost = candidate, cost
        self._last_accepted = accepted
        self._after_step(accepted, cost)
        self._step += 1

    def _start(self, cost: float) -> None:
        """Called once with the initial configuration's cost."""

    @abstractmethod
    def _accept(self, cost: float) -> bool:
        """Decide on a candidate of search cost ``cost``; ``current`` is still the old state."""

    def _after_step(self, accepted: bool, cost: float) -> None:
        """Called after the acceptance decision, before the step counter is incremented."""


def check_batch_size(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"batch size must be a positive int, got {n!r}; pass e.g. n=4.")
