"""EfficientNet-B0 (Tan & Le 2019) sized for small images, built from ``ConvBNAct`` blocks.

The squeeze-excitation gate is a sigmoid that *gates* rather than activates; it is marked
``safs_exclude = True`` so it is not an activation site. Imports torch,
:mod:`safs_smac.activations` and the package's ``layers`` and ``registry``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from safs_smac.activations import activation_module_for
from safs_smac.models.layers import (
    ConvBNAct,
    add_pooled_classifier,
    init_weights,
    pooled_logits,
)
from safs_smac.models.registry import register_model, sgd_recipe

__all__ = ["EFFICIENTNET_B0_STAGES", "DropPath", "EfficientNet", "MBConv", "SqueezeExcite"]

# --------------------------------------------------------------------------------------------
# EfficientNet
# --------------------------------------------------------------------------------------------

# expand ratio, kernel, stride, output channels, repeats (Tan & Le 2019, table 1)
EFFICIENTNET_B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``.

    The train/eval branch is plain Python on ``self.training``, so an fx trace records the mode
    it was traced in; trace in eval mode to get the deterministic graph.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features.

    The inner activation is an ordinary activation site; the sigmoid gate is marked
    ``safs_exclude = True`` because replacing it would break the gating.
    """

    def __init__(self, channels: int, squeeze_channels: int, *, activation: str = "swish") -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = activation_module_for(activation)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Sigmoid()
        self.gate.safs_exclude = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-excite, 1x1 project.

    A residual connection (with optional stochastic depth) is used when stride is 1 and the
    channel count is unchanged. The expansion is omitted when ``expand_ratio == 1``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
        activation: str = "swish",
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand: nn.Module = nn.Identity()
        if expand_ratio != 1:
            self.expand = ConvBNAct(in_channels, hidden, 1, activation=activation)
        self.dw = ConvBNAct(
            hidden, hidden, kernel_size, stride, groups=hidden, activation=activation
        )
        # Squeeze width follows the block *input* channels, as in the reference EfficientNet.
        self.se = SqueezeExcite(hidden, max(1, int(in_channels * se_ratio)), activation=activation)
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path: nn.Module = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        if self.use_residual:
            out = x + self.drop_path(out)
        return out


class EfficientNet(nn.Module):
    """EfficientNet built from a stage table (B0 by default).

    ``stem_stride`` defaults to 1 for inputs up to 64x64 (CIFAR / ImageNet-16 style) and to 2
    otherwise, so that small images are not reduced to 1x1 halfway through the network.
    """

    def __init__(
        self,
        stages: Sequence[tuple[int, int, int, int, int]] = EFFICIENTNET_B0_STAGES,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        *,
        activation: str = "swish",
        stem_channels: int = 32,
        head_channels: int = 1280,
        stem_stride: int | None = None,
        dropout: float = 0.2,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}; 0.2 is the usual value"
            )
        if stem_stride is None:
            stem_stride = 1 if input_size <= 64 else 2
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        self.default_activation = activation
        self.stem = ConvBNAct(in_channels, stem_channels, 3, stem_stride, activation=activation)
        n_blocks = sum(stage[-1] for stage in stages)
        blocks: list[nn.Module] = []
        channels = stem_channels
        for expand_ratio, kernel, stride, out_channels, repeats in stages:
            for i in range(repeats):
                blocks.append(
                    MBConv(
                        channels,
                        out_channels,
                        expand_ratio=expand_ratio,
                        kernel_size=kernel,
                        stride=stride if i == 0 else 1,
                        # stochastic depth grows linearly with depth, as in the paper
                        drop_path=drop_path_rate * len(blocks) / n_blocks,
                        activation=activation,
                    )
                )
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(channels, head_channels, 1, activation=activation)
        add_pooled_classifier(self, head_channels, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_logits(self, self.head(self.blocks(self.stem(x))))


@register_model(
    "efficientnet_b0",
    default_activation="swish",
    in_channels=3,
    input_size=16,
    num_classes=1000,
    recipe=sgd_recipe(0.05, weight_decay=5e-5),
    description="EfficientNet-B0 for ImageNet-16 (stride-1 stem for small inputs, 49 sites)",
    dense_epochs=60,
)
def efficientnet_b0(
    *,
    num_classes: int,
    in_channels: int,
    input_size: int,
    activation: str,
    stem_stride: int | None = None,
    dropout: float = 0.2,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    return EfficientNet(
        EFFICIENTNET_B0_STAGES,
        num_classes,
        in_channels,
        input_size,
        activation=activation,
        stem_stride=stem_stride,
        dropout=dropout,
        drop_path_rate=drop_path_rate,
    )
