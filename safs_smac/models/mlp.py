"""The multi-layer perceptron of the zoo (the SET study's network family).

Imports torch, :mod:`safs_smac.activations` and the package's ``layers`` and ``registry``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from safs_smac.activations import activation_module_for
from safs_smac.models.layers import check_dropout
from safs_smac.models.registry import register_model, sgd_recipe

__all__ = ["MLP"]

# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


class MLP(nn.Sequential):
    """Flatten + fully connected layers: ``fc1 act1 [drop1] ... head``.

    ``hidden`` gives the hidden widths; the SET study used ``(4000, 1000, 4000)`` on CIFAR-10.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (300, 100),
        num_classes: int = 10,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        widths = tuple(hidden)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(
                f"hidden must be a sequence of positive integers, got {hidden!r}; "
                "e.g. hidden=(300, 100)"
            )
        dropout = check_dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        features = in_features
        for i, width in enumerate(widths, start=1):
            layers[f"fc{i}"] = nn.Linear(features, width)
            layers[f"act{i}"] = activation_module_for(activation)
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            features = width
        layers["head"] = nn.Linear(features, num_classes)
        super().__init__(layers)
        self.default_activation = activation


@register_model(
    "mlp",
    default_activation="relu",
    in_channels=1,
    input_size=28,
    num_classes=10,
    recipe=sgd_recipe(0.01, weight_decay=5e-4, scheduler="constant"),
    description="Multi-layer perceptron with configurable widths (default 300-100)",
    dense_epochs=30,
)
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    activation: str,
    hidden: Sequence[int] = (300, 100),
    dropout: float = 0.0,
) -> nn.Module:
    return MLP(
        in_channels * input_size * input_size,
        hidden,
        num_classes,
        activation=activation,
        dropout=dropout,
    )
