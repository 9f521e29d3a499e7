"""Model zoo: the networks SAFS prunes, behind a timm-style registry.

A model is one constructor function plus a :func:`register_model` decorator that records its
defaults (input shape, classes, default activation, fine-tuning recipe)::

    @register_model("tiny", default_activation="relu", in_channels=1, input_size=28,
                    num_classes=10, recipe={"optimizer": "sgd", "lr": 0.01})
    def tiny(*, num_classes, in_channels, input_size, activation):
        return MLP(in_channels * input_size**2, (64,), num_classes, activation=activation)

:func:`create_model` fills in the defaults, validates them and calls the constructor.

Every zoo model follows the rules the activation search relies on:

* one distinct activation module per call site (never a reused module, never ``F.relu``), built by
  :func:`safs_smac.activations.activation_module_for`, so that sites can be swapped in place;
* traceable by :func:`torch.fx.symbolic_trace` (no data-dependent control flow);
* a ``default_activation`` attribute naming the activation it was built with;
* Kaiming-normal (fan-out) initialisation of convolutions, BatchNorm at weight 1 / bias 0; linear
  layers keep PyTorch's default initialisation.

The squeeze-excitation gate of EfficientNet is a sigmoid that *gates* rather than activates; it is
marked ``safs_exclude = True`` so it is not an activation site.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from safs_smac.activations import activation_module_for, resolve_operator
from safs_smac.registry import Registry

__all__ = [
    "MLP",
    "VGG",
    "BasicBlock",
    "ConvBNAct",
    "DropPath",
    "EfficientNet",
    "LeNet5",
    "MBConv",
    "ModelInfo",
    "ResNet",
    "SqueezeExcite",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
]

ModelConstructor = Callable[..., nn.Module]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """Defaults of a registered model.

    Attributes
    ----------
    name:
        Registry name (lowercase, underscores).
    default_activation:
        Canonical operator name of the activation the model is built with by default.
    in_channels, input_size, num_classes:
        Default input shape ``(in_channels, input_size, input_size)`` and number of classes.
    recipe:
        Default fine-tuning recipe as keyword arguments of ``safs_smac.training.Recipe``.
    description:
        One line for listings.
    min_input_size:
        Smallest ``input_size`` the architecture supports.
    """

    name: str
    default_activation: str
    in_channels: int
    input_size: int
    num_classes: int
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    min_input_size: int = 1


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    constructor: ModelConstructor


# "EfficientNet-B0" and "efficientnet_b0" name the same model.
_REGISTRY: Registry[_Entry] = Registry("model")


def register_model(
    name: str,
    *,
    default_activation: str,
    in_channels: int,
    input_size: int,
    num_classes: int,
    recipe: Mapping[str, Any],
    description: str = "",
    min_input_size: int = 1,
) -> Callable[[ModelConstructor], ModelConstructor]:
    """Register a model constructor under ``name``.

    The constructor is called with keyword arguments ``num_classes``, ``in_channels``,
    ``input_size`` and ``activation`` (a canonical operator name), plus any model-specific
    options the user passes to :func:`create_model`.

    Parameters
    ----------
    name:
        Registry name; normalised to lowercase with underscores.
    default_activation, in_channels, input_size, num_classes:
        Defaults used when :func:`create_model` is not given them.
    recipe:
        Default fine-tuning recipe (``safs_smac.training.Recipe`` keyword arguments).
    description:
        One line for listings.
    min_input_size:
        Smallest supported ``input_size``; smaller requests are rejected before building.

    Returns
    -------
    A decorator that registers the constructor and returns it unchanged.
    """
    key = _REGISTRY.normalise(name)

    def decorator(constructor: ModelConstructor) -> ModelConstructor:
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
        )
        _REGISTRY.add(key, _Entry(info, constructor))
        return constructor

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return _REGISTRY.names()


def _lookup(name: str) -> _Entry:
    return _REGISTRY.get(name)


def model_info(name: str) -> ModelInfo:
    """Defaults of a registered model (a copy: editing its ``recipe`` leaves the registry as is)."""
    info = _lookup(name).info
    return replace(info, recipe=dict(info.recipe))


def _positive_int(what: str, value: Any, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} for model '{model}' must be a positive integer, got {value!r}")
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
    name: str,
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
    name:
        A name from :func:`list_models` (case and ``-``/``_`` insensitive).
    num_classes, in_channels, input_size:
        Override the registered defaults (see :func:`model_info`).
    activation:
        Build every activation site with this operator instead of the model's default
        (e.g. ``"gelu"``); the model's ``default_activation`` attribute records it.
    **kwargs:
        Model-specific options, e.g. ``hidden=(512, 256)`` for ``mlp``.

    Returns
    -------
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


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convolutions and identity BatchNorm, as in torchvision's CNNs."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _check_dropout(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p!r}; pass e.g. dropout=0.2")
    return float(p)


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
        _init_weights(self)

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
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.pool(self.features(x)))
        return self.classifier(self.dropout(x))


@register_model(
    "vgg16",
    default_activation="relu",
    in_channels=3,
    input_size=32,
    num_classes=10,
    recipe={
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "cosine",
    },
    description="VGG-16 with BatchNorm for CIFAR (13 conv + 1 linear, 13 activation sites)",
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
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.flatten(self.pool(x)))


@register_model(
    "resnet18",
    default_activation="relu",
    in_channels=3,
    input_size=32,
    num_classes=10,
    recipe={
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "cosine",
    },
    description="ResNet-18 with CIFAR stem (17 activation sites)",
)
def resnet18(*, num_classes: int, in_channels: int, input_size: int, activation: str) -> nn.Module:
    # Global average pooling makes the network independent of input_size.
    del input_size
    return ResNet(
        (2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels, activation=activation
    )


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
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(_check_dropout(dropout))
        self.classifier = nn.Linear(head_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


@register_model(
    "efficientnet_b0",
    default_activation="swish",
    in_channels=3,
    input_size=16,
    num_classes=1000,
    recipe={
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-5,
        "scheduler": "cosine",
    },
    description="EfficientNet-B0 for ImageNet-16 (stride-1 stem for small inputs, 49 sites)",
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
        dropout = _check_dropout(dropout)
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
    recipe={
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "constant",
    },
    description="Multi-layer perceptron with configurable widths (default 300-100)",
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
