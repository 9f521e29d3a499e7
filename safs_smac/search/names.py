"""The search optimizers and protocols by name, and which optimizer(s) a protocol runs."""

from __future__ import annotations

from smac import (
    BlackBoxFacade,
    HyperbandFacade,
    HyperparameterOptimizationFacade,
    MultiFidelityFacade,
    RandomFacade,
)

from safs_smac.optimizers import OPTIMIZERS

__all__ = [
    "ASK_TELL_OPTIMIZERS",
    "INTENSIFIERS",
    "OPTIMIZER_NAMES",
    "PROTOCOLS",
    "SMAC_OPTIMIZERS",
    "STAGED_OPTIMIZERS",
    "ask_tell_names",
    "default_protocol",
    "multi_fidelity_defaults",
    "optimizer_names",
    "resolve_optimizers",
    "run_label",
]

# name -> (facade class, uses budgets)
SMAC_OPTIMIZERS: dict[str, tuple[type, bool]] = {
    "smac-mf": (MultiFidelityFacade, True),
    "smac-hpo": (HyperparameterOptimizationFacade, False),
    "smac-bb": (BlackBoxFacade, False),
    "smac-random": (RandomFacade, False),
    "hyperband": (HyperbandFacade, True),
}
# LAHC, i.i.d. random search, greedy walk, simulated annealing: every trial at the max budget.
# (The built-in names; optimizers registered later with register_optimizer are in
# ask_tell_names() and optimizer_names().)
ASK_TELL_OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZERS)
OPTIMIZER_NAMES: tuple[str, ...] = (*SMAC_OPTIMIZERS, *ASK_TELL_OPTIMIZERS)


def ask_tell_names() -> tuple[str, ...]:
    """Every ask/tell optimizer's name, those registered with ``register_optimizer`` included."""
    return tuple(OPTIMIZERS)


def optimizer_names() -> tuple[str, ...]:
    """Every optimizer's name: SMAC's facades, then the ask/tell optimizers."""
    return (*SMAC_OPTIMIZERS, *ask_tell_names())


PROTOCOLS = ("staged", "joint", "paper")
# The SMAC facades with a surrogate model and a sized initial design: protocol="staged" runs these.
STAGED_OPTIMIZERS = ("smac-mf", "smac-hpo", "smac-bb")
# What each protocol runs when no optimizer is named.
DEFAULT_JOINT_OPTIMIZER = "smac-mf"
DEFAULT_STAGE1_OPTIMIZER = "lahc"
DEFAULT_STAGE2_OPTIMIZER = "smac-hpo"


# How the multi-fidelity facades (smac-mf, hyperband) pick and promote trials.
INTENSIFIERS = ("hyperband", "successive-halving")


def multi_fidelity_defaults(protocol: str) -> tuple[str, int]:
    """``(intensifier, eta)`` of a protocol's multi-fidelity search when none is given.

    The staged protocol (the main job) runs successive halving with eta 2 over rungs of at least
    two epochs (2.25, 4.5 and 9 epochs of a 9-epoch budget): half of a rung is promoted and
    continues from its lower rung's state, so it runs about 0.6x the epochs it budgets, at the
    incumbent quality of Hyperband with eta 3 (``benchmarks/continuation.py``). The joint and
    paper protocols keep SMAC's multi-fidelity default, Hyperband with eta 3.
    """
    return ("successive-halving", 2) if protocol == "staged" else ("hyperband", 3)


def default_protocol(optimizer: str | None) -> str:
    """``"staged"`` for SMAC's model-based facades, else ``"joint"``.

    The staged protocol warm-starts the per-layer search with the network-level incumbent, which
    only a surrogate model can build on; the ask/tell optimizers, SMAC's random facade and
    Hyperband run one joint search.
    """
    return "staged" if optimizer is None or optimizer in STAGED_OPTIMIZERS else "joint"


def resolve_optimizers(optimizer: str | None, protocol: str = "joint") -> tuple[str, str | None]:
    """The optimizer(s) a protocol runs: ``(joint optimizer, None)`` or ``(stage 1, stage 2)``.

    With ``protocol="paper"``, an ask/tell name (``lahc``, ``random``, ``greedy``, ``sa``) replaces
    LAHC in stage 1 and a SMAC name replaces SMAC-HPO in stage 2; ``None`` keeps both defaults.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    if optimizer is not None and optimizer not in optimizer_names():
        raise ValueError(
            f"unknown optimizer {optimizer!r}; valid optimizers: {', '.join(optimizer_names())}"
        )
    if protocol in ("joint", "staged"):
        return optimizer or DEFAULT_JOINT_OPTIMIZER, None
    stage1 = optimizer if optimizer in ask_tell_names() else DEFAULT_STAGE1_OPTIMIZER
    stage2 = optimizer if optimizer in SMAC_OPTIMIZERS else DEFAULT_STAGE2_OPTIMIZER
    return stage1, stage2


def run_label(optimizer: str | None, protocol: str | None = None) -> str:
    """Short name of a run's search, e.g. ``staged-smac-mf`` or ``paper-lahc-smac-hpo``."""
    protocol = default_protocol(optimizer) if protocol is None else protocol
    first, second = resolve_optimizers(optimizer, protocol)
    if protocol == "staged":
        return f"staged-{first}"
    return first if second is None else f"paper-{first}-{second}"
