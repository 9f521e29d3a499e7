"""Building the SAFS search space as a ConfigSpace ``ConfigurationSpace``.

One space describes a whole SAFS trial: for every activation *site* of the network an operator
(``act:<site>``) and the two scales of ``alpha * op(beta * x)`` (``alpha:<site>``,
``beta:<site>``), followed by the fine-tuning hyperparameters of the pruned network (``ft:*``) and,
on request, the pruning rate (``prune:rate``).

Site names come from :func:`safs_smac.sites.activation_sites` and carry a zero-padded index
(``"03_features.8"``); ConfigSpace keeps hyperparameters sorted by name, so ``list(space)`` and the
configuration vectors list the sites in forward order.

Variants (``stage``):

* ``"joint"`` (default): operators, scales and fine-tuning hyperparameters in one space.
* ``"operators"``: the paper's stage 1, operators only (alpha = beta = 1 frozen, default recipe).
* ``"scales_hpo"``: the paper's stage 2, operators fixed (from stage 1), scales learnable and their
  initial values plus the fine-tuning hyperparameters searched.

``granularity="network"`` shares one operator and one pair of scales between all sites (keys
``act:all``, ``alpha:all``, ``beta:all``); ``flat=True`` drops the only condition (``ft:momentum``
active for SGD only) for tools that reject conditional spaces (NePS, plain Optuna).

The hyperparameter names, ranges and key prefixes defined here are read by the rest of the
package (decoding, checking, files). Imports ConfigSpace, :mod:`safs_smac.activations` and the
model registry's :data:`~safs_smac.models.registry.RECIPE_DEFAULTS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ConfigSpace import Categorical, ConfigurationSpace, EqualsCondition, Float

from safs_smac import activations
from safs_smac.models.registry import RECIPE_DEFAULTS

__all__ = [
    "FT_OPTIMIZERS",
    "FT_SCHEDULERS",
    "GRANULARITIES",
    "NETWORK_SITE",
    "STAGES",
    "build_space",
]

STAGES = ("joint", "operators", "scales_hpo")
GRANULARITIES = ("layer", "network")
FT_OPTIMIZERS = ("sgd", "adam", "adamw")
# "step" (x gamma every 20 epochs) is not searched: it does nothing within a multi-fidelity budget
# of a few epochs. A recipe that uses it keeps it as an extra choice, like "plateau".
FT_SCHEDULERS = ("constant", "cosine", "onecycle")

#: Site key used by ``granularity="network"``: one value shared by every site.
NETWORK_SITE = "all"

# Schedulers that training.Recipe accepts but that are not searched: a recipe using one keeps it as
# an extra choice, so that the default configuration reproduces the recipe exactly.
_EXTRA_RECIPE_SCHEDULERS = ("plateau", "step")

# Ranges of the searched hyperparameters: (lower, upper, log).
SCALE_RANGE = (0.2, 5.0)
# Below 1e-3 no pruned network recovers within a multi-fidelity budget, and Adam collapses at 0.1
# and above (measured on LeNet-5 at 99%, see benchmarks/README.md); SGD's useful rates fit too.
LR_RANGE = (1e-3, 0.1)
MOMENTUM_RANGE = (0.0, 0.99)
WEIGHT_DECAY_RANGE = (1e-6, 1e-2)
LABEL_SMOOTHING_RANGE = (0.0, 0.2)

# Key prefixes of a SAFS space; load_space recognises a SAFS space by act:, alpha: or ft: keys.
_ACT, _ALPHA, _BETA, _FT = "act:", "alpha:", "beta:", "ft:"
_PRUNE_RATE = "prune:rate"
_LEARN_SCALES = "ft:learn_scales"
# ft:<name> -> training.Recipe field
_FT_TO_RECIPE = {
    "ft:optimizer": "optimizer",
    "ft:lr": "lr",
    "ft:momentum": "momentum",
    "ft:weight_decay": "weight_decay",
    "ft:scheduler": "scheduler",
    "ft:label_smoothing": "label_smoothing",
}


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------
def build_space(
    sites: Sequence[str],
    *,
    default_activation: str,
    recipe: Mapping[str, Any],
    stage: str = "joint",
    granularity: str = "layer",
    operators: Sequence[str] | None = None,
    flat: bool = False,
    search_rate: tuple[float, float] | None = None,
    default_rate: float = 0.99,
    name: str | None = None,
    seed: int = 0,
) -> ConfigurationSpace:
    """Build the SAFS configuration space for a network with the given activation sites.

    Parameters
    ----------
    sites
        Site names in forward order, e.g. ``[s.name for s in activation_sites(model)]``. They must
        sort in that order (zero-padded indices) so that ``list(space)`` follows the network.
    default_activation
        The network's own activation; default of every ``act:*`` so that the default configuration
        is the unmodified network.
    recipe
        The model's default fine-tuning recipe (``training.Recipe`` keyword arguments); gives the
        defaults of the ``ft:*`` hyperparameters (clipped into their ranges). Missing keys fall back
        to ``training.Recipe``'s defaults.
    stage
        ``"joint"``, ``"operators"`` (act:* only) or ``"scales_hpo"`` (alpha:*, beta:*, ft:*).
    granularity
        ``"layer"`` (one operator and scale pair per site) or ``"network"`` (shared by all sites).
    operators
        Candidate operators (names or aliases); default ``activations.SAFS_OPERATORS``. The default
        activation is appended when missing, order is otherwise kept.
    flat
        Leave out conditions (``ft:momentum`` is then always active and ignored unless SGD).
    search_rate
        ``(low, high)`` to also search the pruning rate as ``prune:rate``; ``None`` keeps it fixed.
    default_rate
        Default of ``prune:rate`` (clipped into ``search_rate``).
    name
        Space name; default ``"safs_<stage>_<granularity>"`` plus ``"_flat"`` when flat.
    seed
        Seed of the space's sampler.

    Returns
    -------
    ConfigurationSpace
        Deterministic for given arguments; sampling is reproducible for a seed.
    """
    _check_choice("stage", stage, STAGES)
    _check_choice("granularity", granularity, GRANULARITIES)
    site_keys = _space_sites(sites, granularity)
    default_op = activations.resolve_operator(default_activation)
    rate = _check_search_rate(search_rate, default_rate)

    hyperparameters: list[Any] = []
    conditions: list[Any] = []
    if stage in ("joint", "operators"):
        choices = _operator_choices(operators, default_op)
        hyperparameters += [
            Categorical(f"{_ACT}{site}", choices, default=default_op) for site in site_keys
        ]
    if stage in ("joint", "scales_hpo"):
        hyperparameters += [
            Float(f"{prefix}{site}", SCALE_RANGE, log=True, default=1.0)
            for prefix in (_ALPHA, _BETA)
            for site in site_keys
        ]
        ft_hps, ft_conditions = _finetune_hyperparameters(
            recipe, learn_scales=stage == "joint", flat=flat
        )
        hyperparameters += ft_hps
        conditions += ft_conditions
    if rate is not None:
        low, high = rate[:2]
        hyperparameters.append(Float(_PRUNE_RATE, (low, high), default=rate[2]))

    if name is None:
        name = _default_name("safs", stage, granularity, flat)
    space = ConfigurationSpace(name=name, seed=seed)
    # One add() call: ConfigSpace rebuilds its internal DAG per call.
    space.add(hyperparameters, conditions)
    return space


def _default_name(prefix: str, stage: str, granularity: str, flat: bool) -> str:
    return f"{prefix}_{stage}_{granularity}" + ("_flat" if flat else "")


def _check_choice(what: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; use one of: {', '.join(valid)}")


def _space_sites(sites: Sequence[str], granularity: str) -> list[str]:
    """Validate the site names and return the site keys the space is built over."""
    if isinstance(sites, str):
        raise ValueError(
            f"sites must be a sequence of site names, got the string {sites!r}; wrap it in a list"
        )
    sites = list(sites)
    if not sites:
        raise ValueError(
            "the network has no activation sites; pass a model with at least one activation "
            "module or function (see safs_smac.sites.activation_sites)"
        )
    bad = [s for s in sites if not isinstance(s, str) or not s or s == NETWORK_SITE]
    if bad:
        raise ValueError(
            f"invalid site name(s) {bad!r}; use the non-empty ActivationSite.name strings "
            f"({NETWORK_SITE!r} is reserved for granularity='network')"
        )
    duplicates = sorted({s for s in sites if sites.count(s) > 1})
    if duplicates:
        raise ValueError(f"duplicate site name(s) {duplicates!r}; every site needs a unique name")
    if sites != sorted(sites):
        raise ValueError(
            f"site names {sites!r} do not sort in forward order, so list(space) would scramble "
            "the layers; prefix them with a zero-padded index as activation_sites() does "
            "('00_conv1', '01_conv2', ...)"
        )
    return [NETWORK_SITE] if granularity == "network" else sites


def _operator_choices(operators: Sequence[str] | None, default_op: str) -> list[str]:
    """Canonical, de-duplicated operator names in the given order, default activation included."""
    if operators is None:
        operators = activations.SAFS_OPERATORS
    elif isinstance(operators, str):
        raise ValueError(
            f"operators must be a sequence of names, got the string {operators!r}; "
            "wrap it in a list"
        )
    # resolve_operator raises the ValueError listing the valid names for an unknown operator.
    choices = list(dict.fromkeys(activations.resolve_operator(op) for op in operators))
    if default_op not in choices:
        # The default configuration must be the unmodified network (SMAC's first trial).
        choices.append(default_op)
    return choices


def _check_search_rate(
    search_rate: tuple[float, float] | None, default_rate: float
) -> tuple[float, float, float] | None:
    """Return ``(low, high, default)`` for prune:rate, or None when the rate is not searched."""
    if search_rate is None:
        return None
    try:
        low, high = (float(v) for v in search_rate)
    except (TypeError, ValueError):
        raise ValueError(
            f"search_rate must be a (low, high) pair of floats, got {search_rate!r}; "
            "e.g. search_rate=(0.9, 0.99)"
        ) from None
    if not (0.0 <= low < high < 1.0):
        raise ValueError(
            f"search_rate {search_rate!r} is not a range inside [0, 1); pass low < high with "
            "0 <= low and high < 1, e.g. (0.9, 0.99)"
        )
    if not math.isfinite(default_rate):
        raise ValueError(f"default_rate must be a finite float, got {default_rate!r}")
    return low, high, min(max(float(default_rate), low), high)


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(max(float(value), bounds[0]), bounds[1])


def _finetune_hyperparameters(
    recipe: Mapping[str, Any], *, learn_scales: bool, flat: bool
) -> tuple[list[Any], list[Any]]:
    """The ft:* hyperparameters, with defaults taken from the recipe (clipped into the ranges)."""
    base = {**RECIPE_DEFAULTS, **{k: v for k, v in recipe.items() if k in RECIPE_DEFAULTS}}
    optimizer = str(base["optimizer"]).lower()
    _check_choice("recipe optimizer", optimizer, FT_OPTIMIZERS)
    scheduler = str(base["scheduler"]).lower()
    _check_choice("recipe scheduler", scheduler, (*FT_SCHEDULERS, *_EXTRA_RECIPE_SCHEDULERS))
    schedulers = list(FT_SCHEDULERS)
    if scheduler not in schedulers:
        schedulers.append(scheduler)

    opt = Categorical("ft:optimizer", FT_OPTIMIZERS, default=optimizer)
    momentum = Float("ft:momentum", MOMENTUM_RANGE, default=_clip(base["momentum"], MOMENTUM_RANGE))
    hps: list[Any] = [
        opt,
        Float("ft:lr", LR_RANGE, log=True, default=_clip(base["lr"], LR_RANGE)),
        momentum,
        Float(
            "ft:weight_decay",
            WEIGHT_DECAY_RANGE,
            log=True,
            # A recipe without weight decay (0) maps to the lower bound: log ranges exclude 0.
            default=_clip(base["weight_decay"], WEIGHT_DECAY_RANGE),
        ),
        Categorical("ft:scheduler", schedulers, default=scheduler),
        Float(
            "ft:label_smoothing",
            LABEL_SMOOTHING_RANGE,
            default=_clip(base["label_smoothing"], LABEL_SMOOTHING_RANGE),
        ),
    ]
    if learn_scales:
        # Plain Python bools serialise to JSON and YAML booleans and decode back unchanged.
        hps.append(Categorical(_LEARN_SCALES, [True, False], default=True))
    conditions = [] if flat else [EqualsCondition(momentum, opt, "sgd")]
    return hps, conditions
