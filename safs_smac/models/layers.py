"""Building blocks shared by the zoo models: weight initialisation, dropout check, the pooled
classifier head, ``ConvBNAct``.

Imports torch and :mod:`safs_smac.activations`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from safs_smac.activations import activation_module_for

__all__ = ["ConvBNAct", "add_pooled_classifier", "check_dropout", "init_weights", "pooled_logits"]

# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions and identity BatchNorm, as in torchvision's CNNs."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def check_dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}; pass e.g. dropout=0.2")
    return float(p)


def add_pooled_classifier(
    model: nn.Module, channels: int, num_classes: int, dropout: float
) -> None:
    """Give ``model`` a global-average-pool, flatten, dropout and linear head.

    The head's modules are attributes of ``model`` itself (``pool``, ``flatten``, ``dropout``,
    ``classifier``), so their ``state_dict`` keys (and cached checkpoints) stay as they were.
    """
    model.pool = nn.AdaptiveAvgPool2d(1)
    model.flatten = nn.Flatten()
    model.dropout = nn.Dropout(check_dropout(dropout))
    model.classifier = nn.Linear(channels, num_classes)


def pooled_logits(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The logits of :func:`add_pooled_classifier`'s head for a feature map."""
    return model.classifier(model.dropout(model.flatten(model.pool(features))))


class ConvBNAct(nn.Sequential):
    """``Conv2d`` (no bias, "same" padding) + ``BatchNorm2d`` + optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        groups: int = 1,
        activation: str | None = "relu",
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            bn=nn.BatchNorm2d(out_channels),
        )
        if activation is not None:
            layers["act"] = activation_module_for(activation)
        super().__init__(layers)
