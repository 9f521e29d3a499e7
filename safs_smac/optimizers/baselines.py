"""Baselines for the stage-1 operator search: random search, greedy walk, simulated annealing.

The SAFS reference's "RS" was a greedy walk (move from the current state, keep the best), not
random search, and its SA used temperatures so high that every move was accepted. Here the three
are what their names say: :class:`RandomSearch` samples i.i.d., :class:`GreedyWalk` is the
reference's "RS" under its real name, and :class:`SimulatedAnnealing` scales its temperature to the
observed cost differences.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any, ClassVar

from ConfigSpace import Configuration, ConfigurationSpace
from smac.runhistory.dataclasses import TrialInfo

from safs_smac.optimizers.base import AskTellOptimizer, LocalSearchOptimizer
from safs_smac.optimizers.neighbours import Move, mixed_move

__all__ = ["GreedyWalk", "RandomSearch", "SimulatedAnnealing"]


class RandomSearch(AskTellOptimizer):
    """I.i.d. random search: every trial is an independent uniform sample of the space.

    The sequence of configurations depends only on the seed, never on the told costs, and any
    number of trials may be pending at once (``ask_batch`` for parallel workers).
    """

    name: ClassVar[str] = "random"

    def ask(self) -> TrialInfo:
        return self._issue(self._sample_configuration(), f"{self.name}: sample")


class GreedyWalk(LocalSearchOptimizer):
    """Greedy walk (the SAFS reference's "RS"): move from the current state, keep it if not worse.

    A candidate is accepted when its cost is <= the current cost (plateau moves allowed); this is
    LAHC with ``history_length=1``. It has no stopping rule of its own: the trial or time budget of
    the caller ends it.
    """

    name: ClassVar[str] = "greedy"

    def _accept(self, cost: float) -> bool:
        assert self._current_cost is not None
        return cost <= self._current_cost


class SimulatedAnnealing(LocalSearchOptimizer):
    """Simulated annealing with a temperature scaled to the cost differences of the problem.

    A candidate of cost ``C'`` replaces the current state of cost ``C`` if ``C' <= C``, otherwise
    with probability ``exp(-(C' - C) / T)`` (Metropolis). The schedule:

    * Calibration: the first ``calibration_steps`` steps are greedy walk steps (accept iff
      ``C' <= C``) that record the worsenings ``C' - C > 0``. Then
      ``T0 = median(worsenings) / ln 2``, so a median worsening is accepted with probability 1/2.
      Without a finite worsening, ``T0 = (max - min of the finite costs seen) / ln 2``; when all
      costs are equal it is 0 (greedy) — nothing distinguishes the states anyway. Pass ``t0`` to
      skip calibration.
    * Cooling: geometric, ``T_k = T0 * t_end_fraction ** (k / K)`` for annealing step
      ``k = 0 .. K`` with ``K = n_steps - calibration_steps - 1``: the last step of the schedule
      runs at ``T0 * t_end_fraction``.
    * Stop: after ``n_steps`` steps (``should_stop``), i.e. ``n_steps + 1`` trials with the initial
      one.

    Scaling ``T`` to the costs makes the schedule independent of the cost unit (error rate vs
    percent); the reference's fixed ``Tmax`` was orders of magnitude above its 1/accuracy energies,
    so it accepted every move.

    Parameters
    ----------
    configspace, seed, budget, initial, move
        See :class:`~safs_smac.optimizers.lahc.LAHC`.
    n_steps : int, defaults to 100
        Length of the schedule in steps (candidates), calibration included.
    calibration_steps : int, defaults to 5
        Greedy steps used to measure the cost differences (ignored when ``t0`` is given).
    t_end_fraction : float, defaults to 1e-3
        Final temperature as a fraction of ``T0``.
    t0 : float | None, defaults to None
        Fixed initial temperature in cost units; None calibrates it.
    """

    name: ClassVar[str] = "sa"

    def __init__(
        self,
        configspace: ConfigurationSpace,
        *,
        seed: int = 0,
        budget: float | None = None,
        n_steps: int = 100,
        calibration_steps: int = 5,
        t_end_fraction: float = 1e-3,
        t0: float | None = None,
        initial: str | Configuration | Mapping[str, Any] = "random",
        move: Move = mixed_move,
    ) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}; pass e.g. 100.")
        if t0 is not None:
            calibration_steps = 0  # a fixed temperature needs no calibration
        elif (
            isinstance(calibration_steps, bool)
            or not isinstance(calibration_steps, int)
            or not 1 <= calibration_steps < n_steps
        ):
            raise ValueError(
                f"calibration_steps must be an int in [1, n_steps={n_steps}), got "
                f"{calibration_steps!r}; pass e.g. calibration_steps=5, or a fixed t0."
            )
        if not 0.0 < t_end_fraction <= 1.0:
            raise ValueError(
                f"t_end_fraction must be in (0, 1], got {t_end_fraction!r}; pass e.g. 1e-3."
            )
        if t0 is not None and not (math.isfinite(t0) and t0 >= 0):
            raise ValueError(f"t0 must be a non-negative finite temperature, got {t0!r}.")
        super().__init__(configspace, seed=seed, budget=budget, initial=initial, move=move)
        self._n_steps = n_steps
        self._calibration_steps = calibration_steps
        self._t_end_fraction = float(t_end_fraction)
        self._t0_setting = None if t0 is None else float(t0)
        self._t0: float | None = self._t0_setting
        self._worsenings: list[float] = []
        self._finite_costs: list[float] = []

    @property
    def t0(self) -> float | None:
        """Initial temperature (None until calibrated)."""
        return self._t0

    @property
    def temperature(self) -> float | None:
        """Temperature of the next step (None during calibration)."""
        if self._t0 is None:
            return None
        k = max(0, self._step - self._calibration_steps)
        span = max(1, self._n_steps - self._calibration_steps - 1)
        return self._t0 * self._t_end_fraction ** (min(k, span) / span)

    def _settings(self) -> dict[str, Any]:
        return {
            **self._private_settings("n_steps", "calibration_steps", "t_end_fraction"),
            "t0": self._t0_setting,  # the given one; self._t0 is the calibrated one
            **super()._settings(),
        }

    def should_stop(self) -> bool:
        return self._step >= self._n_steps

    def _start(self, cost: float) -> None:
        self._record(cost)

    def _accept(self, cost: float) -> bool:
        current = self._current_cost
        assert current is not None
        self._record(cost)
        if cost <= current:
            return True
        temperature = self.temperature
        if temperature is None:  # calibration: greedy, remember how much worse the move was
            if math.isfinite(cost) and math.isfinite(current):
                self._worsenings.append(cost - current)
            return False
        if temperature <= 0 or not math.isfinite(cost):
            return False
        return bool(self._rng.random() < math.exp(-(cost - current) / temperature))

    def _after_step(self, accepted: bool, cost: float) -> None:
        if self._t0 is None and self._step + 1 >= self._calibration_steps:
            self._t0 = self._calibrated_t0()

    def _record(self, cost: float) -> None:
        if math.isfinite(cost):
            self._finite_costs.append(cost)

    def _calibrated_t0(self) -> float:
        if self._worsenings:
            return statistics.median(self._worsenings) / math.log(2)
        if len(self._finite_costs) >= 2:
            return (max(self._finite_costs) - min(self._finite_costs)) / math.log(2)
        return 0.0
