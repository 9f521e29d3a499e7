"""The SAFS search space as a ConfigSpace ``ConfigurationSpace``.

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

:func:`decode_config` turns a configuration of any variant into a :class:`TrialSpec`, the plain
description the trainer needs.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ConfigSpace import (
    Categorical,
    Configuration,
    ConfigurationSpace,
    EqualsCondition,
    Float,
)
from ConfigSpace.exceptions import (
    ActiveHyperparameterNotSetError,
    ForbiddenValueError,
    InactiveHyperparameterSetError,
)

from safs_smac import activations
from safs_smac._io import atomic_write_text

__all__ = [
    "FT_OPTIMIZERS",
    "FT_SCHEDULERS",
    "GRANULARITIES",
    "NETWORK_SITE",
    "STAGES",
    "ZOO_MODELS",
    "TrialSpec",
    "build_space",
    "check_config",
    "decode_config",
    "load_space",
    "save_space",
    "space_to_text",
    "write_zoo_spaces",
    "zoo_space",
]

STAGES = ("joint", "operators", "scales_hpo")
GRANULARITIES = ("layer", "network")
FT_OPTIMIZERS = ("sgd", "adam", "adamw")
# "step" (x gamma every 20 epochs) is not searched: it does nothing within a multi-fidelity budget
# of a few epochs. A recipe that uses it keeps it as an extra choice, like "plateau".
FT_SCHEDULERS = ("constant", "cosine", "onecycle")
ZOO_MODELS = ("lenet5", "vgg16", "resnet18", "efficientnet_b0")

#: Site key used by ``granularity="network"``: one value shared by every site.
NETWORK_SITE = "all"

# Schedulers that training.Recipe accepts but that are not searched: a recipe using one keeps it as
# an extra choice, so that the default configuration reproduces the recipe exactly.
_EXTRA_RECIPE_SCHEDULERS = ("plateau", "step")

# Mirrors the defaults of training.Recipe; used when the recipe mapping omits a key. Duplicated
# on purpose: this module must not import the trainer (and torch training code) to build a space.
_RECIPE_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "constant",
    "label_smoothing": 0.0,
}

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
_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


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
    base = {**_RECIPE_DEFAULTS, **{k: v for k, v in recipe.items() if k in _RECIPE_DEFAULTS}}
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
    """

    operators: dict[str, str]
    alpha: dict[str, float]
    beta: dict[str, float]
    learn_scales: bool
    recipe_overrides: dict[str, Any]
    prune_rate: float | None


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


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def _file_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower()
        _check_choice("format", fmt, ("json", "yaml"))
        return fmt
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix; name it *.json, *.yaml or "
            "*.yml, or pass format='json' or 'yaml'"
        )
    return fmt


def space_to_text(space: ConfigurationSpace, format: str = "json") -> str:
    """ConfigSpace's serialised form of ``space`` as JSON or YAML text (what save_space writes)."""
    fmt = format.lower()
    _check_choice("format", fmt, ("json", "yaml"))
    data = space.to_serialized_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    # Keep ConfigSpace's key order (name, hyperparameters, conditions, ...): easier to read.
    return yaml.safe_dump(data, sort_keys=False)


def save_space(space: ConfigurationSpace, path: str | Path, format: str | None = None) -> None:
    """Write ``space`` as JSON or YAML (format from the suffix unless given), atomically.

    The file is written next to its destination and moved into place with ``os.replace``, so
    readers never see a half-written space.
    """
    path = Path(path)
    atomic_write_text(path, space_to_text(space, _file_format(path, format)))


def load_space(path: str | Path, format: str | None = None) -> ConfigurationSpace:
    """Read a SAFS space written by :func:`save_space` (or ConfigSpace's ``to_json``/``to_yaml``).

    The format comes from the suffix (``.json``, ``.yaml``, ``.yml``) unless given.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be parsed or holds a space without SAFS hyperparameters.
    """
    path = Path(path)
    fmt = _file_format(path, format)
    regenerate = "regenerate it with `safs-smac space --model M --stage S --format " + fmt + "`"
    if not path.is_file():
        raise FileNotFoundError(f"configuration space file {str(path)!r} not found; {regenerate}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(
            f"{str(path)!r} is not valid {fmt.upper()} ({_first_line(err)}); {regenerate}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hyperparameters"), list):
        raise ValueError(
            f"{str(path)!r} is not a serialised ConfigSpace (no 'hyperparameters' list); "
            f"{regenerate}"
        )
    try:
        space = ConfigurationSpace.from_serialized_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{str(path)!r} holds a malformed configuration space ({_first_line(err)}); "
            f"{regenerate}"
        ) from None
    if not any(key.startswith((_ACT, _ALPHA, _FT)) for key in space):
        raise ValueError(
            f"{str(path)!r} holds a configuration space without SAFS hyperparameters (act:*, "
            f"alpha:*, ft:*); load it with ConfigurationSpace.from_{fmt}, or {regenerate}"
        )
    return space


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# --------------------------------------------------------------------------------------------
# Model zoo
# --------------------------------------------------------------------------------------------
def zoo_space(
    model: str,
    *,
    stage: str = "joint",
    granularity: str = "layer",
    flat: bool = False,
    operators: Sequence[str] | None = None,
    search_rate: tuple[float, float] | None = None,
    seed: int = 0,
) -> ConfigurationSpace:
    """The space of a zoo model (``safs_smac.models``), named ``"safs_<model>_<stage>_<gran>"``.

    Builds the model once to list its activation sites; defaults come from ``model_info(model)``.
    """
    # Imported here: models and sites pull in torch.fx tracing, not needed to read a space file.
    from safs_smac import models, sites

    _check_choice("stage", stage, STAGES)
    _check_choice("granularity", granularity, GRANULARITIES)
    info = models.model_info(model)
    site_names = [site.name for site in sites.activation_sites(models.create_model(model))]
    return build_space(
        site_names,
        default_activation=info.default_activation,
        recipe=info.recipe,
        stage=stage,
        granularity=granularity,
        operators=operators,
        flat=flat,
        search_rate=search_rate,
        name=_default_name(f"safs_{info.name}", stage, granularity, flat),
        seed=seed,
    )


def write_zoo_spaces(
    directory: str | Path,
    models: Sequence[str] = ZOO_MODELS,
    stages: Sequence[str] = STAGES,
    formats: Sequence[str] = ("json", "yaml"),
) -> list[Path]:
    """Write ``<model>_<stage>.<fmt>`` for every combination (layer granularity, conditional).

    Returns the written paths in the order written.
    """
    directory = Path(directory)
    written = []
    for model in models:
        for stage in stages:
            space = zoo_space(model, stage=stage)
            for fmt in formats:
                path = directory / f"{model}_{stage}.{fmt}"
                save_space(space, path, format=fmt)
                written.append(path)
    return written
