"""Late Acceptance Hill Climbing (Burke & Bykov, EJOR 258(1), 2017) with an ask/tell interface.

The algorithm, with ``C`` the current cost, ``f`` the cost history of length ``L`` and ``I`` the
step counter (energy = cost; SAFS used 1/accuracy, any cost to minimise works)::

    f[k] := C(initial) for all k;  I := 0;  idle := 0
    until I > min_steps and idle > idle_fraction * I:
        candidate := move(current);  C' := cost(candidate)
        idle := idle + 1 if C' >= C else 0
        v := I mod L
        if C' <= C or C' < f[v]: current := candidate; C := C'
        if C < f[v]: f[v] := C          # history_update="if_better" (default)
        I := I + 1

This is the loop of the ``lahc`` package that the SAFS reference ran (``history_length=3``,
``steps_minimum=20``, ``steps_idle_fraction=0.02``): the history entry is overwritten only when the
current cost is lower, and ``idle`` counts consecutive candidates that did not beat the *current*
cost. ``history_update="always"`` gives the original rule ``f[v] := C`` after every step (the
history then also records worsenings, which makes later acceptance more permissive).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ConfigSpace import Configuration, ConfigurationSpace

from safs_smac.optimizers.base import LocalSearchOptimizer
from safs_smac.optimizers.neighbours import Move, mixed_move

__all__ = ["LAHC"]

_HISTORY_UPDATES = ("if_better", "always")


class LAHC(LocalSearchOptimizer):
    """Late Acceptance Hill Climbing over any ConfigSpace.

    Parameters
    ----------
    configspace : ConfigurationSpace
        The space to search.
    seed : int, defaults to 0
        Seeds the initial state and the moves.
    budget : float | None, defaults to None
        Fidelity every trial is evaluated at (None: the target's default).
    history_length : int, defaults to 3
        ``L``; 1 makes LAHC a greedy hill climber accepting equal costs.
    min_steps : int, defaults to 20
        The search never stops before more than ``min_steps`` steps (the initial evaluation is not
        a step, so at least ``min_steps + 2`` trials).
    idle_fraction : float, defaults to 0.02
        After ``min_steps``, stop once the idle steps exceed this fraction of all steps.
    history_update : "if_better" | "always", defaults to "if_better"
        Rule for overwriting ``f[v]`` after a step, see the module docstring.
    initial : "random" | "default" | Configuration | Mapping, defaults to "random"
        Initial state; "random" samples the space uniformly (the reference: a random operator per
        site).
    move : Move, defaults to mixed_move
        Neighbourhood: the SAFS move on ``act:*`` sites, one-exchange on other hyperparameters.

    Notes
    -----
    ``ask()``/``tell()`` are strictly sequential (a second ``ask()`` before ``tell()`` raises
    ``RuntimeError``). With several workers use ``ask_batch(n)``: the best of ``n`` parallel
    neighbours is the candidate of one LAHC step.
    """

    name: ClassVar[str] = "lahc"

    def __init__(
        self,
        configspace: ConfigurationSpace,
        *,
        seed: int = 0,
        budget: float | None = None,
        history_length: int = 3,
        min_steps: int = 20,
        idle_fraction: float = 0.02,
        history_update: str = "if_better",
        initial: str | Configuration | Mapping[str, Any] = "random",
        move: Move = mixed_move,
    ) -> None:
        if isinstance(history_length, bool) or not isinstance(history_length, int):
            raise ValueError(f"history_length must be an int >= 1, got {history_length!r}.")
        if history_length < 1:
            raise ValueError(f"history_length must be >= 1, got {history_length}; pass e.g. 3.")
        if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
            raise ValueError(f"min_steps must be a non-negative int, got {min_steps!r}.")
        if not 0.0 <= idle_fraction < 1.0:
            raise ValueError(
                f"idle_fraction must be in [0, 1), got {idle_fraction!r}; pass e.g. 0.02."
            )
        if history_update not in _HISTORY_UPDATES:
            raise ValueError(
                f"unknown history_update {history_update!r}; valid: {', '.join(_HISTORY_UPDATES)}."
            )
        super().__init__(configspace, seed=seed, budget=budget, initial=initial, move=move)
        self._history_length = history_length
        self._min_steps = min_steps
        self._idle_fraction = float(idle_fraction)
        self._history_update = history_update
        self._history: list[float] = []
        self._idle = 0

    @property
    def history(self) -> tuple[float, ...]:
        """The late-acceptance cost list ``f`` (empty before the initial cost is told)."""
        return tuple(self._history)

    @property
    def idle_steps(self) -> int:
        """Consecutive steps whose candidate did not beat the current cost."""
        return self._idle

    def _settings(self) -> dict[str, Any]:
        return {
            **self._private_settings(
                "history_length", "min_steps", "idle_fraction", "history_update"
            ),
            **super()._settings(),
        }

    def _start(self, cost: float) -> None:
        self._history = [cost] * self._history_length
        self._idle = 0

    def _accept(self, cost: float) -> bool:
        current = self._current_cost
        assert current is not None  # _start ran
        self._idle = self._idle + 1 if cost >= current else 0
        return cost <= current or cost < self._history[self._step % self._history_length]

    def _after_step(self, accepted: bool, cost: float) -> None:
        v = self._step % self._history_length
        current = self._current_cost
        assert current is not None
        if self._history_update == "always" or current < self._history[v]:
            self._history[v] = current

    def should_stop(self) -> bool:
        return (
            self.started
            and self._step > self._min_steps
            and self._idle > self._idle_fraction * self._step
        )
