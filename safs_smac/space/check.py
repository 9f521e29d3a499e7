"""Checking configurations and spaces against what SAFS can run.

:func:`check_config` turns a user's full configuration into a ``Configuration`` of a space or
explains why it is not one; :func:`check_config_values` is the lighter check of the target
function (keys may be missing, they decode to their defaults, but every key must belong to the
space and every value must be legal); :func:`check_space` refuses a space whose keys or ranges
the trainer cannot honour (unknown operators or ``ft:`` keys, a learning rate <= 0, ...). Imports
ConfigSpace, :mod:`safs_smac.activations` and the space's names from :mod:`.build`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any

from ConfigSpace import Configuration, ConfigurationSpace
from ConfigSpace.exceptions import (
    ActiveHyperparameterNotSetError,
    ForbiddenValueError,
    InactiveHyperparameterSetError,
)

from safs_smac import activations
from safs_smac.space.build import (
    _ACT,
    _ALPHA,
    _BETA,
    _EXTRA_RECIPE_SCHEDULERS,
    _FT,
    _FT_TO_RECIPE,
    _LEARN_SCALES,
    _PRUNE_RATE,
    FT_OPTIMIZERS,
    FT_SCHEDULERS,
)

__all__ = ["check_config", "check_config_values", "check_space"]


def check_config(config: Mapping[str, Any], space: ConfigurationSpace) -> Configuration:
    """Return ``config`` as a :class:`Configuration` of ``space`` or explain why it is not one.

    Raises
    ------
    ValueError
        Naming every unknown key, every missing key and every illegal value, with the fix.
    """
    values = dict(config)
    problems: list[str] = []

    unknown = [key for key in values if key not in space]
    for key in unknown:
        close = difflib.get_close_matches(key, list(space), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"unknown key {key!r}{hint}")

    missing = [k for k in space.unconditional_hyperparameters if k not in values]
    if missing:
        problems.append(f"missing key(s) {missing!r}")

    for key, value in values.items():
        if key in space and not space[key].legal_value(value):
            problems.append(_illegal_value_message(space, key, value))

    if problems:
        raise ValueError(
            f"configuration does not belong to space {space.name!r}: {'; '.join(problems)}; "
            "use keys and values of this space (start from space.get_default_configuration())"
        )
    try:
        return Configuration(space, values=values)
    except InactiveHyperparameterSetError as err:
        raise ValueError(
            f"configuration does not belong to space {space.name!r}: {err.hyperparameter.name!r} "
            f"is inactive here ({_condition_text(space, err.hyperparameter.name)}); drop that key"
        ) from None
    except ActiveHyperparameterNotSetError as err:
        raise ValueError(
            f"configuration does not belong to space {space.name!r}: {err.hyperparameter.name!r} "
            f"has no value but is required ({_condition_text(space, err.hyperparameter.name)}); "
            "add it"
        ) from None
    except ForbiddenValueError as err:
        raise ValueError(
            f"configuration does not belong to space {space.name!r}: {err}; change the values"
        ) from None


def _illegal_value_message(space: ConfigurationSpace, key: str, value: Any) -> str:
    hp = space[key]
    if hasattr(hp, "choices"):
        hint = ""
        if key.startswith(_ACT) and isinstance(value, str):
            try:
                canonical = activations.resolve_operator(value)
            except ValueError:
                canonical = None
            if canonical is not None and canonical != value and canonical in hp.choices:
                hint = f" (use the canonical name {canonical!r})"
        allowed = ", ".join(str(c) for c in hp.choices)
        return f"{key}={value!r} is not one of {allowed}{hint}"
    return f"{key}={value!r} is outside [{hp.lower}, {hp.upper}]"


def _condition_text(space: ConfigurationSpace, key: str) -> str:
    # str(condition) reads "child | parent == 'value'"; keep the part after the bar.
    conditions = [str(c).split(" | ", 1)[-1] for c in space.parent_conditions_of[key]]
    return "active only when " + " and ".join(conditions) if conditions else "unconditional"


def check_config_values(
    config: Configuration | Mapping[str, Any], space: ConfigurationSpace
) -> None:
    """Refuse a configuration with a key outside ``space`` or a value ``space`` does not allow.

    Unlike :func:`check_config`, keys may be missing (the trainer decodes them to the defaults)
    and values of inactive hyperparameters are allowed (the trainer ignores them). Operator
    aliases (``"silu"`` for ``"swish"``) and ``"true"``/``"false"`` strings count as the values
    they stand for, as they do when decoded.

    Raises
    ------
    ValueError
        Naming every unknown key (with the closest key of the space) and every illegal value with
        the choices or the range the space allows.
    """
    if isinstance(config, Configuration) and config.config_space is space:
        return  # built by ConfigSpace against this very space: legal by construction
    problems: list[str] = []
    for key, value in dict(config).items():
        if key not in space:
            close = difflib.get_close_matches(key, list(space), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown key {key!r}{hint}")
        elif not _legal(space, key, _as_space_value(key, value)):
            problems.append(_illegal_value_message(space, key, value))
    if problems:
        raise ValueError(
            f"configuration does not fit this problem's space {space.name!r}: "
            f"{'; '.join(problems)}; use keys and values of problem.configspace "
            "(start from problem.configspace.get_default_configuration())"
        )


def _as_space_value(key: str, value: Any) -> Any:
    """The value a decoded configuration would use for ``value``: canonical operator, bool."""
    if key.startswith(_ACT) and isinstance(value, str):
        try:
            return activations.resolve_operator(value)
        except ValueError:
            return value
    if (
        key == _LEARN_SCALES
        and isinstance(value, str)
        and value.strip().lower() in ("true", "false")
    ):
        return value.strip().lower() == "true"
    return value


def _legal(space: ConfigurationSpace, key: str, value: Any) -> bool:
    try:
        return bool(space[key].legal_value(value))
    except (TypeError, ValueError):  # e.g. a string for a float hyperparameter
        return False


# --------------------------------------------------------------------------------------------
# Spaces
# --------------------------------------------------------------------------------------------
# Allowed (lower, upper) of numeric SAFS keys; None leaves that side open. Strict lower bounds:
# a learning rate and a log-scaled weight decay must be > 0.
_BOUNDS: dict[str, tuple[float | None, float | None, bool]] = {
    # key: (lowest allowed, highest allowed, lowest excluded)
    "ft:lr": (0.0, None, True),
    "ft:momentum": (0.0, 1.0, False),
    "ft:weight_decay": (0.0, None, False),
    "ft:label_smoothing": (0.0, 1.0, False),
    _PRUNE_RATE: (0.0, 1.0, False),
}
_CHOICES: dict[str, tuple[Any, ...]] = {
    "ft:optimizer": FT_OPTIMIZERS,
    "ft:scheduler": (*FT_SCHEDULERS, *_EXTRA_RECIPE_SCHEDULERS),
    _LEARN_SCALES: (True, False),
}
_FT_KEYS = (*_FT_TO_RECIPE, _LEARN_SCALES)


def check_space(space: ConfigurationSpace, source: str) -> None:
    """Refuse a SAFS space the trainer cannot run, naming ``source`` (e.g. the file) and the key.

    Checked: every ``act:*`` choice is a registered operator; every ``ft:*`` key is one the
    trainer knows; ``alpha:*``/``beta:*`` ranges are finite numbers; ``ft:lr`` > 0,
    ``ft:weight_decay`` >= 0, ``ft:momentum``, ``ft:label_smoothing`` and ``prune:rate`` within
    [0, 1]; ``ft:optimizer``, ``ft:scheduler`` and ``ft:learn_scales`` choices the trainer
    implements. Keys without a SAFS prefix are left alone (a user may extend a space).

    Raises
    ------
    ValueError
        The first problem found, as ``<source>: <key> ...; <fix>``.
    """
    for key in space:
        hp = space[key]
        if key.startswith(_ACT):
            for choice in _choices(hp) or ():
                try:
                    activations.resolve_operator(str(choice))
                except ValueError:
                    raise ValueError(
                        f"{source}: {key} offers the unknown operator {choice!r}; valid "
                        f"operators: {', '.join(activations.list_operators())} (register your "
                        "own with safs_smac.register_operator before loading the space)"
                    ) from None
            if _choices(hp) is None:
                raise ValueError(
                    f"{source}: {key} must be a categorical of operator names, got "
                    f"{type(hp).__name__}; regenerate the space with `safs-smac space`"
                )
        elif key.startswith((_ALPHA, _BETA)):
            low, high = _numeric_range(hp, source, key)
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ValueError(f"{source}: {key} must have finite bounds, got [{low}, {high}]")
        elif key.startswith(_FT) and key not in _FT_KEYS:
            close = difflib.get_close_matches(key, _FT_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{source}: unknown fine-tuning key {key!r}; valid ft: keys: "
                f"{', '.join(_FT_KEYS)}{hint}"
            )
        if key in _BOUNDS:
            _check_bounds(hp, source, key)
        if key in _CHOICES:
            bad = [c for c in _choices(hp) or () if c not in _CHOICES[key]]
            if _choices(hp) is None or bad:
                raise ValueError(
                    f"{source}: {key} offers {bad or type(hp).__name__!r}, which the trainer does "
                    f"not implement; allowed: {', '.join(map(str, _CHOICES[key]))}"
                )


def _choices(hp: Any) -> tuple[Any, ...] | None:
    """The values a categorical-like hyperparameter can take, or None for a numeric range."""
    if hasattr(hp, "choices"):
        return tuple(hp.choices)
    if hasattr(hp, "sequence"):
        return tuple(hp.sequence)
    if hasattr(hp, "value") and not hasattr(hp, "lower"):
        return (hp.value,)
    return None


def _numeric_range(hp: Any, source: str, key: str) -> tuple[float, float]:
    if hasattr(hp, "lower") and hasattr(hp, "upper"):
        values: tuple[Any, ...] = (hp.lower, hp.upper)
    else:
        values = _choices(hp) or ()
    try:
        numbers = [float(v) for v in values if not isinstance(v, bool)]
    except (TypeError, ValueError):
        numbers = []
    if not numbers or len(numbers) != len(values):
        raise ValueError(f"{source}: {key} must be a number or a range of numbers, got {hp}")
    return min(numbers), max(numbers)


def _check_bounds(hp: Any, source: str, key: str) -> None:
    low, high = _numeric_range(hp, source, key)
    lowest, highest, strict = _BOUNDS[key]
    ok = math.isfinite(low) and math.isfinite(high)
    if ok and lowest is not None:
        ok = low > lowest if strict else low >= lowest
    if ok and highest is not None:
        ok = high <= highest
    if not ok:
        allowed = f"{'(' if strict else '['}{lowest}, {highest if highest is not None else 'inf'}"
        allowed += "]" if highest is not None else ")"
        raise ValueError(
            f"{source}: {key} has the range [{low}, {high}], outside the allowed {allowed}; "
            "fix the bounds or regenerate the space with `safs-smac space`"
        )
