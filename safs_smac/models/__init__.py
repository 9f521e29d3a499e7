"""Model zoo: the networks SAFS prunes, behind a timm-style registry.

A model is one constructor plus :func:`register_model`, which records its defaults (input shape,
classes, default activation, fine-tuning recipe, dense epochs); see :mod:`.registry`.

Every zoo model follows the rules the activation search relies on:

* one distinct activation module per call site (never a reused module, never ``F.relu``), built by
  :func:`safs_smac.activations.activation_module_for`, so that sites can be swapped in place;
* traceable by :func:`torch.fx.symbolic_trace` (no data-dependent control flow);
* a ``default_activation`` attribute naming the activation it was built with;
* Kaiming-normal (fan-out) initialisation of convolutions, BatchNorm at weight 1 / bias 0; linear
  layers keep PyTorch's default initialisation.
"""

from safs_smac.models.cnn import VGG, VGG16_CONFIG, BasicBlock, LeNet5, ResNet
from safs_smac.models.efficientnet import (
    EFFICIENTNET_B0_STAGES,
    DropPath,
    EfficientNet,
    MBConv,
    SqueezeExcite,
)
from safs_smac.models.layers import ConvBNAct
from safs_smac.models.mlp import MLP
from safs_smac.models.registry import (
    DEFAULT_DENSE_EPOCHS,
    RECIPE_DEFAULTS,
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
    sgd_recipe,
)

#: The models this package registers itself (the ones ``configspaces/`` holds spaces for).
ZOO_MODELS: tuple[str, ...] = tuple(list_models())

__all__ = [
    "DEFAULT_DENSE_EPOCHS",
    "EFFICIENTNET_B0_STAGES",
    "MLP",
    "RECIPE_DEFAULTS",
    "VGG",
    "VGG16_CONFIG",
    "ZOO_MODELS",
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
    "sgd_recipe",
]
