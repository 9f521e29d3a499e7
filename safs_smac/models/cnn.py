"""The convolutional zoo models of the SAFS paper: LeNet-5, VGG-16 and ResNet-18.

VGG and ResNet build their convolution + BatchNorm + activation by hand rather than with
:class:`~safs_smac.models.layers.ConvBNAct`: their attribute names (``features.0``, ``features.1``,
``features.2``; ``conv1``, ``bn1``, ``act1``) are the state-dict keys and activation site names of
every cached checkpoint and finished run, and ``ConvBNAct`` would nest them one level deeper.
Imports torch, :mod:`safs_smac.activations` and the package's ``layers`` and ``registry``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from safs_smac.activations import activation_module_for
from safs_smac.models.layers import add_pooled_classifier, init_weights, pooled_logits
from safs_smac.models.registry import register_model

__all__ = ["VGG", "VGG16_CONFIG", "BasicBlock", "LeNet5", "ResNet"]

# --------------------------------------------------------------------------------------------
# LeNet-5
# --------------------------------------------------------------------------------------------


def _lenet_feature_size(input_size: int) -> int:
    """Side of the feature map after LeNet's two (5x5 valid conv, 2x2 max-pool) stages."""
    size = input_size
    for _ in range(2):
        size = (size - 4) // 2
    return size


class LeNet5(nn.Module):
    """LeNet-5 as in the SAFS reference: two valid 5x5 convolutions and three linear layers.

    ``conv(in,6,5) act pool conv(6,16,5) act pool fc(16*s*s,120) act fc(120,84) act
    fc(84,classes)``; 4 activation sites. ``s`` follows from ``input_size`` (4 for 28x28).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        *,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        side = _lenet_feature_size(input_size)
        if side < 1:
            raise ValueError(
                f"input_size {input_size} is too small for LeNet-5; use input_size >= 16"
            )
        self.default_activation = activation
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.act1 = activation_module_for(activation)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.act2 = activation_module_for(activation)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.act3 = activation_module_for(activation)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = activation_module_for(activation)
        self.fc3 = nn.Linear(84, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        x = self.flatten(x)
        x = self.act3(self.fc1(x))
        x = self.act4(self.fc2(x))
        return self.fc3(x)


@register_model(
    "lenet5",
    default_activation="relu",
    in_channels=1,
    input_size=28,
    num_classes=10,
    recipe={"optimizer": "adam", "lr": 1e-3, "weight_decay": 5e-4, "scheduler": "constant"},
    description="LeNet-5 for MNIST (2 conv + 3 linear, 4 activation sites)",
    dense_epochs=30,
    min_input_size=16,
)
def lenet5(*, num_classes: int, in_channels: int, input_size: int, activation: str) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size, activation=activation)


# --------------------------------------------------------------------------------------------
# VGG
# --------------------------------------------------------------------------------------------

VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


class VGG(nn.Module):
    """VGG with BatchNorm and a CIFAR head (global average pool + one linear layer).

    ``config`` lists conv widths and ``"M"`` for 2x2 max-pools. A pool that would shrink the
    feature map below 1x1 is left out, so 16x16 inputs work as well as 32x32.
    """

    def __init__(
        self,
        config: Sequence[int | str],
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.default_activation = activation
        layers: list[nn.Module] = []
        channels, size = in_channels, input_size
        for item in config:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += [
                nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                nn.BatchNorm2d(int(item)),
                activation_module_for(activation),
            ]
            channels = int(item)
        self.features = nn.Sequential(*layers)
        add_pooled_classifier(self, channels, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_logits(self, self.features(x))


# The CIFAR-10 models' shared facts and dense recipe (SGD + momentum, weight decay, cosine).
_CIFAR = {"default_activation": "relu", "in_channels": 3, "input_size": 32, "num_classes": 10}
_CIFAR_SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "scheduler": "cosine"}


@register_model(
    "vgg16",
    **_CIFAR,
    recipe={**_CIFAR_SGD, "lr": 0.05},
    description="VGG-16 with BatchNorm for CIFAR (13 conv + 1 linear, 13 activation sites)",
    dense_epochs=60,
)
def vgg16(
    *, num_classes: int, in_channels: int, input_size: int, activation: str, dropout: float = 0.0
) -> nn.Module:
    return VGG(
        VGG16_CONFIG, num_classes, in_channels, input_size, activation=activation, dropout=dropout
    )


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Standard ResNet basic block: ``act2(bn2(conv2(act1(bn1(conv1(x))))) + shortcut(x))``.

    The shortcut is a 1x1 conv + BN when the shape changes, the identity otherwise. The two
    activations are distinct modules so that each can get its own searched operator.
    """

    expansion = 1

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, *, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = activation_module_for(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.act2 = activation_module_for(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet: 3x3 stride-1 stem without max-pool, four stages of basic blocks."""

    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if len(blocks_per_stage) != len(widths):
            raise ValueError(
                f"blocks_per_stage {tuple(blocks_per_stage)} and widths {tuple(widths)} must have "
                "the same length; give one width per stage"
            )
        self.default_activation = activation
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act = activation_module_for(activation)
        channels = widths[0]
        for stage, (n_blocks, width) in enumerate(zip(blocks_per_stage, widths), start=1):
            blocks = []
            for i in range(n_blocks):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(BasicBlock(channels, width, stride, activation=activation))
                channels = width
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.flatten(self.pool(x)))


@register_model(
    "resnet18",
    **_CIFAR,
    recipe={**_CIFAR_SGD, "lr": 0.1},
    description="ResNet-18 with CIFAR stem (17 activation sites)",
    dense_epochs=60,
)
def resnet18(*, num_classes: int, in_channels: int, input_size: int, activation: str) -> nn.Module:
    # Global average pooling makes the network independent of input_size.
    del input_size
    return ResNet(
        (2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, activation=activation
    )
