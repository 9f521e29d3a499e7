"""What AP and SET share: argument checks and access to a pruned layer's weight and mask."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from safs_smac.pruning import (
    _select,
)

logger = logging.getLogger(__name__)

Layers = Sequence[tuple[str, nn.Module]]


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def check_fraction(name: str, value: object, *, low: float, high: float, closed: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and low <= value and (value <= high if closed else value < high)
    if not ok:
        bracket = "]" if closed else ")"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def named_layers(model: nn.Module, layers: Layers | None) -> list[tuple[str, nn.Module]]:
    """Selected layers (checked by :mod:`safs_smac.pruning`), named by their path in ``model``
    (the keys :func:`~safs_smac.pruning.get_masks` uses)."""
    names = {id(module): name for name, module in model.named_modules()}
    named = []
    for given, module in _select(model, layers):
        if id(module) not in names:
            raise ValueError(f"layer {given!r} is not a submodule of the model; select its layers")
        named.append((names[id(module)], module))
    return named


def weight_param(module: nn.Module) -> torch.Tensor:
    """The trainable tensor behind ``weight`` (``weight_orig`` once the layer is pruned)."""
    return module.weight_orig if hasattr(module, "weight_mask") else module.weight


def layer_mask(module: nn.Module) -> torch.Tensor:
    """Boolean mask of the layer's weight (all True when unpruned), on the weight's device."""
    mask = getattr(module, "weight_mask", None)
    if mask is None:
        return torch.ones_like(module.weight, dtype=torch.bool)
    return mask.detach() != 0
