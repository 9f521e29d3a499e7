"""What a configuration of any SAFS space variant asks the trainer to do: :class:`TrialSpec`.

:func:`decode_config` reads the variant from the keys present, so one decoder serves the joint,
operators-only, scales+HPO, network-level and flat spaces alike. Imports
:mod:`safs_smac.activations` and the space's key names from :mod:`.build`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ConfigSpace import Configuration

from safs_smac import activations
from safs_smac.space.build import (
    _ACT,
    _ALPHA,
    _BETA,
    _FT_TO_RECIPE,
    _LEARN_SCALES,
    _PRUNE_RATE,
    NETWORK_SITE,
    _space_sites,
)

__all__ = ["TrialSpec", "decode_config"]


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialSpec:
    """What one configuration asks the trainer to do.

    Attributes
    ----------
    operators, alpha, beta
        Site name -> canonical operator name / initial alpha / initial beta, every site listed.
    learn_scales
        Whether alpha and beta are trained with the weights during fine-tuning.
    recipe_overrides
        ``training.Recipe`` fields to replace in the model's default recipe (only searched ones).
    prune_rate
        Pruning rate to apply, or ``None`` to keep the run's fixed rate.
    learn_operator_params
        Whether the operators' own parameters (e.g. SReLU's thresholds) are trained even though
        the scales are frozen (with ``learn_scales`` they are trained anyway). No configuration
        sets it; it serves specs built by hand.
    """

    operators: dict[str, str]
    alpha: dict[str, float]
    beta: dict[str, float]
    learn_scales: bool
    recipe_overrides: dict[str, Any]
    prune_rate: float | None
    learn_operator_params: bool = False


def decode_config(
    config: Configuration | Mapping[str, Any],
    sites: Sequence[str],
    *,
    default_activation: str,
    fixed_operators: Mapping[str, str] | None = None,
) -> TrialSpec:
    """Translate a configuration of any space variant into a :class:`TrialSpec`.

    The variant is read from the keys present: missing ``act:*`` keys take ``fixed_operators``
    (e.g. the stage-1 result) or the default activation, missing scales are 1.0, scales are
    learnable when ``ft:learn_scales`` says so or, without that key, when the space searches
    scales (stage ``"scales_hpo"``). ``act:all``/``alpha:all``/``beta:all`` set every site; a
    per-site key overrides them. ``ft:momentum`` is dropped unless the optimizer is SGD (the flat
    variant always carries it).

    Raises
    ------
    ValueError
        For a key that is neither a SAFS key nor about one of ``sites``.
    """
    values = dict(config)
    site_list = _space_sites(sites, "layer")
    site_set = set(site_list)
    default_op = activations.resolve_operator(default_activation)

    operators = dict.fromkeys(site_list, default_op)
    if fixed_operators:
        unknown = sorted(set(fixed_operators) - site_set)
        if unknown:
            raise ValueError(
                f"fixed_operators names unknown site(s) {unknown!r}; valid sites: "
                f"{', '.join(site_list)}"
            )
        operators.update(
            {site: activations.resolve_operator(op) for site, op in fixed_operators.items()}
        )
    per_site: dict[str, dict[str, Any]] = {_ACT: {}, _ALPHA: {}, _BETA: {}}
    shared: dict[str, Any] = {}
    unknown_keys = []
    for key, value in values.items():
        prefix, _, site = key.partition(":")
        prefix += ":"
        if prefix in per_site and site == NETWORK_SITE:
            shared[prefix] = value
        elif prefix in per_site and site in site_set:
            per_site[prefix][site] = value
        elif key not in _FT_TO_RECIPE and key not in (_LEARN_SCALES, _PRUNE_RATE):
            unknown_keys.append(key)
    if unknown_keys:
        raise ValueError(
            f"configuration has key(s) {sorted(unknown_keys)!r} that are not SAFS keys for these "
            "sites; decode with the sites the space was built from (act:/alpha:/beta:<site>, "
            "ft:*, prune:rate)"
        )

    def fill(prefix: str, base: dict[str, Any], convert: Any) -> dict[str, Any]:
        out = dict(base)
        if prefix in shared:
            out = dict.fromkeys(site_list, convert(shared[prefix]))
        out.update({site: convert(v) for site, v in per_site[prefix].items()})
        return out

    alpha = fill(_ALPHA, dict.fromkeys(site_list, 1.0), float)
    beta = fill(_BETA, dict.fromkeys(site_list, 1.0), float)
    scales_searched = any(k.startswith((_ALPHA, _BETA)) for k in values)
    learn_scales = (
        _as_bool(values[_LEARN_SCALES], _LEARN_SCALES)
        if _LEARN_SCALES in values
        else scales_searched
    )
    return TrialSpec(
        # str(): sampled values are numpy strings; the trainer and JSON logs want plain str.
        operators=fill(_ACT, operators, lambda op: activations.resolve_operator(str(op))),
        alpha=alpha,
        beta=beta,
        learn_scales=learn_scales,
        recipe_overrides=_recipe_overrides(values),
        prune_rate=float(values[_PRUNE_RATE]) if _PRUNE_RATE in values else None,
    )


def _recipe_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, field in _FT_TO_RECIPE.items():
        if key not in values:
            continue
        value = values[key]
        overrides[field] = str(value) if field in ("optimizer", "scheduler") else float(value)
    # Momentum only means something to SGD; the flat variant carries it for every optimizer.
    if overrides.get("optimizer", "sgd") != "sgd":
        overrides.pop("momentum", None)
    return overrides


def _as_bool(value: Any, key: str) -> bool:
    """Booleans may arrive as bools (ConfigSpace) or as strings (CSV, CLI overrides)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, str) and value in (False, True):  # bool, numpy bool, 0/1
        return bool(value)
    raise ValueError(f"{key} must be true or false, got {value!r}")
