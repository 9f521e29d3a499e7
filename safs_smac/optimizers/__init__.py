"""Ask/tell optimizers for the stage-1 operator search: LAHC and honest baselines.

They work over any ConfigSpace, record trials in SMAC's RunHistory format and resume by replay
(see :func:`run_optimizer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ConfigSpace import ConfigurationSpace

from safs_smac.optimizers.base import AskTellOptimizer, LocalSearchOptimizer, search_cost
from safs_smac.optimizers.baselines import GreedyWalk, RandomSearch, SimulatedAnnealing
from safs_smac.optimizers.lahc import LAHC
from safs_smac.optimizers.loop import lookup_trial, run_optimizer
from safs_smac.optimizers.neighbours import (
    Move,
    mixed_move,
    one_exchange_move,
    operator_sites,
    safs_move,
)
from safs_smac.registry import Registry
from safs_smac.runs.state import load_runhistory

__all__ = [
    "LAHC",
    "OPTIMIZERS",
    "AskTellOptimizer",
    "GreedyWalk",
    "LocalSearchOptimizer",
    "Move",
    "RandomSearch",
    "SimulatedAnnealing",
    "create_optimizer",
    "load_runhistory",
    "lookup_trial",
    "mixed_move",
    "one_exchange_move",
    "operator_sites",
    "register_optimizer",
    "run_optimizer",
    "safs_move",
    "search_cost",
]

OPTIMIZERS: dict[str, type[AskTellOptimizer]] = {
    "lahc": LAHC,
    "random": RandomSearch,
    "greedy": GreedyWalk,
    "sa": SimulatedAnnealing,
}
_REGISTRY: Registry[type[AskTellOptimizer]] = Registry("optimizer")
for _name, _cls in OPTIMIZERS.items():
    _REGISTRY.add(_name, _cls)


def register_optimizer(
    name: str | None = None, *, aliases: tuple[str, ...] = ()
) -> Callable[[type[AskTellOptimizer]], type[AskTellOptimizer]]:
    """Class decorator: make an ask/tell optimizer available by name, e.g. to ``optimize()``.

    ``name`` defaults to the class name in lower case. The class takes the configuration space
    first and ``seed=`` (see :class:`AskTellOptimizer`)::

        @register_optimizer("coin")
        class CoinFlip(RandomSearch): ...

        optimize(problem, "coin", n_trials=10)
    """

    def decorator(cls: type[AskTellOptimizer]) -> type[AskTellOptimizer]:
        if not (isinstance(cls, type) and issubclass(cls, AskTellOptimizer)):
            raise TypeError(f"register_optimizer needs an AskTellOptimizer subclass, got {cls!r}")
        key = _REGISTRY.add(name or cls.__name__.lower(), cls, aliases=aliases)
        OPTIMIZERS[key] = cls
        return cls

    return decorator


def create_optimizer(name: str, configspace: ConfigurationSpace, **kwargs: Any) -> AskTellOptimizer:
    """Build a registered optimizer by name, e.g. ``create_optimizer("lahc", cs, seed=1)``."""
    return _REGISTRY.get(name)(configspace, **kwargs)
