"""The model registry: one decorated constructor per model, with the model's defaults beside it.

A model is one constructor function (or ``nn.Module`` class) plus :func:`register_model`, which
records everything the rest of the package needs to know about it: input shape, classes, default
activation, the fine-tuning recipe and the epochs of dense training::

    @register_model("tiny", default_activation="relu", in_channels=1, input_size=28,
                    num_classes=10, recipe={"optimizer": "sgd", "lr": 0.01}, dense_epochs=5)
    def tiny(*, num_classes, in_channels, input_size, activation):
        return MLP(in_channels * input_size**2, (64,), num_classes, activation=activation)

:func:`create_model` fills in the defaults, validates them and calls the constructor. Like timm's
``create_model``, lookups take a name (case and ``-``/``_`` insensitive); they also take the
registered constructor itself. Imports torch, :mod:`safs_smac.activations` and
:mod:`safs_smac.registry`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from safs_smac.activations import resolve_operator
from safs_smac.registry import Registry

__all__ = [
    "DEFAULT_DENSE_EPOCHS",
    "RECIPE_DEFAULTS",
    "ModelConstructor",
    "ModelInfo",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "sgd_recipe",
]

ModelConstructor = Callable[..., nn.Module]

#: Dense-training epochs of a model registered without ``dense_epochs``: sized for CPU runs on the
#: default data (the SAFS reference trained 200 epochs on GPUs).
DEFAULT_DENSE_EPOCHS = 30

#: The fine-tuning fields a registered ``recipe`` may leave out, at the defaults of
#: ``safs_smac.training.Recipe`` (a test keeps the two equal). The search space reads them from
#: here so that building a space never imports the trainer.
RECIPE_DEFAULTS: Mapping[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "constant",
    "label_smoothing": 0.0,
}


@dataclass(frozen=True)
class ModelInfo:
    """Defaults of a registered model.

    Attributes
    ----------
    name
        Registry name (lowercase, underscores).
    default_activation
        Canonical operator name of the activation the model is built with by default.
    in_channels, input_size, num_classes
        Default input shape ``(in_channels, input_size, input_size)`` and number of classes.
    recipe
        Default fine-tuning recipe as keyword arguments of ``safs_smac.training.Recipe``; fields
        it leaves out take :data:`RECIPE_DEFAULTS`.
    description
        One line for listings.
    min_input_size
        Smallest ``input_size`` the architecture supports.
    dense_epochs
        Epochs of dense training before pruning when ``SAFSProblem(dense_epochs=None)``.
    """

    name: str
    default_activation: str
    in_channels: int
    input_size: int
    num_classes: int
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    min_input_size: int = 1
    dense_epochs: int = DEFAULT_DENSE_EPOCHS


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    constructor: ModelConstructor


# "EfficientNet-B0" and "efficientnet_b0" name the same model.
_REGISTRY: Registry[_Entry] = Registry("model")


def register_model(
    name: str | None = None,
    *,
    default_activation: str,
    in_channels: int,
    input_size: int,
    num_classes: int,
    recipe: Mapping[str, Any],
    description: str = "",
    min_input_size: int = 1,
    dense_epochs: int = DEFAULT_DENSE_EPOCHS,
) -> Callable[[ModelConstructor], ModelConstructor]:
    """Register a model constructor (a function or an ``nn.Module`` class) under ``name``.

    The constructor is called with keyword arguments ``num_classes``, ``in_channels``,
    ``input_size`` and ``activation`` (a canonical operator name), plus any model-specific
    options the user passes to :func:`create_model`.

    Parameters
    ----------
    name
        Registry name; normalised to lowercase with underscores. ``None`` takes the
        constructor's ``__name__``, as timm does.
    default_activation, in_channels, input_size, num_classes
        Defaults used when :func:`create_model` is not given them.
    recipe
        Default fine-tuning recipe (``safs_smac.training.Recipe`` keyword arguments).
    description
        One line for listings.
    min_input_size
        Smallest supported ``input_size``; smaller requests are rejected before building.
    dense_epochs
        Epochs of dense training before pruning (``SAFSProblem``'s default for this model).

    Returns
    -------
    Callable
        A decorator that registers the constructor and returns it unchanged.
    """

    def decorator(constructor: ModelConstructor) -> ModelConstructor:
        if not callable(constructor):
            raise TypeError(f"register_model decorates a callable, got {constructor!r}")
        key = _REGISTRY.normalise(constructor.__name__ if name is None else name)
        if key in _REGISTRY:
            raise ValueError(
                f"model '{key}' is already registered; register the new model under another name"
            )
        info = ModelInfo(
            name=key,
            default_activation=resolve_operator(default_activation),
            in_channels=_positive_int("in_channels", in_channels, key),
            input_size=_positive_int("input_size", input_size, key),
            num_classes=_positive_int("num_classes", num_classes, key),
            recipe=dict(recipe),
            description=description,
            min_input_size=_positive_int("min_input_size", min_input_size, key),
            dense_epochs=_non_negative_int("dense_epochs", dense_epochs, key),
        )
        _REGISTRY.add(key, _Entry(info, constructor))
        return constructor

    return decorator


def sgd_recipe(
    lr: float, *, weight_decay: float, scheduler: str = "cosine", momentum: float = 0.9
) -> dict[str, Any]:
    """A registration's ``recipe=`` for SGD with momentum (keys in the order models used)."""
    return {
        "optimizer": "sgd",
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "scheduler": scheduler,
    }


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return _REGISTRY.names()


def _lookup(model: str | ModelConstructor) -> _Entry:
    if not isinstance(model, str) and callable(model):
        # The registered constructor itself (timm-style: a name or the thing it names).
        for entry_name in _REGISTRY.names():
            entry = _REGISTRY.get(entry_name)
            if entry.constructor is model:
                return entry
        raise ValueError(
            f"{getattr(model, '__name__', model)!r} is not a registered model constructor; "
            "decorate it with @register_model(...) or pass a name from list_models()"
        )
    return _REGISTRY.get(model)


def model_info(name: str | ModelConstructor) -> ModelInfo:
    """Defaults of a registered model (a copy: editing its ``recipe`` leaves the registry as is).

    Parameters
    ----------
    name
        A name from :func:`list_models` or a registered constructor.
    """
    info = _lookup(name).info
    return replace(info, recipe=dict(info.recipe))


def _positive_int(what: str, value: Any, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} for model '{model}' must be a positive integer, got {value!r}")
    return value


def _non_negative_int(what: str, value: Any, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} for model '{model}' must be an integer >= 0, got {value!r}")
    return value


def _check_options(constructor: ModelConstructor, options: Mapping[str, Any], model: str) -> None:
    """Reject options the constructor does not take, with the list of ones it does."""
    params = inspect.signature(constructor).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    reserved = {"num_classes", "in_channels", "input_size", "activation"}
    valid = sorted(set(params) - reserved)
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model '{model}'; "
            f"valid options: {', '.join(valid) if valid else 'none'}"
        )


def create_model(
    name: str | ModelConstructor,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
    activation: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name
        A name from :func:`list_models` (case and ``-``/``_`` insensitive) or a registered
        constructor.
    num_classes, in_channels, input_size
        Override the registered defaults (see :func:`model_info`).
    activation
        Build every activation site with this operator instead of the model's default
        (e.g. ``"gelu"``); the model's ``default_activation`` attribute records it.
    **kwargs
        Model-specific options, e.g. ``hidden=(512, 256)`` for ``mlp``.

    Returns
    -------
    nn.Module
        The freshly initialised model, with attribute ``default_activation``.

    Raises
    ------
    ValueError
        Unknown model, option or activation, or a shape the architecture cannot take.
    """
    entry = _lookup(name)
    info = entry.info
    num_classes = _positive_int(
        "num_classes", info.num_classes if num_classes is None else num_classes, info.name
    )
    in_channels = _positive_int(
        "in_channels", info.in_channels if in_channels is None else in_channels, info.name
    )
    input_size = _positive_int(
        "input_size", info.input_size if input_size is None else input_size, info.name
    )
    if input_size < info.min_input_size:
        raise ValueError(
            f"input_size {input_size} is too small for model '{info.name}'; "
            f"use input_size >= {info.min_input_size} (resize or pad the images)"
        )
    activation = resolve_operator(info.default_activation if activation is None else activation)
    _check_options(entry.constructor, kwargs, info.name)
    model = entry.constructor(
        num_classes=num_classes,
        in_channels=in_channels,
        input_size=input_size,
        activation=activation,
        **kwargs,
    )
    model.default_activation = activation
    return model
