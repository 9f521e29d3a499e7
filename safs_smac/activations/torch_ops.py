"""The activations PyTorch ships: one table of their module classes and functional spellings.

Each row names the operator (its canonical registry name), the ``nn`` module computing it with
default arguments, and how the same activation is written as a function (``F.relu``,
``torch.relu``, ``F.relu_``) or a tensor method (``x.relu()``). The operator registry registers
the module classes from here; :mod:`safs_smac.sites` recognises activation call sites from here,
so there is one list of what PyTorch calls an activation. Imports torch and :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from safs_smac.activations.registry import register_operator

__all__ = ["TORCH_ACTIVATIONS", "TORCH_ACTIVATION_MODULES", "TorchActivation"]


@dataclass(frozen=True)
class TorchActivation:
    """One activation as PyTorch spells it.

    Attributes
    ----------
    operator
        Canonical operator name, or ``None`` for an activation that is no operator (``Hardtanh``:
        a site, reported by its class or function name, but not a search choice).
    module
        The ``nn`` module class computing it with default arguments.
    function
        The function's name (``"silu"`` for ``F.silu``); the path of a functional call site.
    params
        Positional parameters of the function after the input, in signature order (to read
        ``inplace`` from a traced call).
    functions, inplace_functions
        ``"F.<name>"``/``"torch.<name>"`` spellings, out of place and always in place; names a
        PyTorch version lacks are skipped.
    methods
        Tensor method names (``"relu"``); ``"<name>_"`` is the in-place method.
    aliases
        Extra registry aliases of the operator.
    """

    operator: str | None
    module: type[nn.Module]
    function: str
    params: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    inplace_functions: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


_A = TorchActivation
TORCH_ACTIVATIONS: tuple[TorchActivation, ...] = (
    _A("relu", nn.ReLU, "relu", ("inplace",), ("F.relu", "torch.relu"),
       ("F.relu_", "torch.relu_"), ("relu",)),
    _A("relu6", nn.ReLU6, "relu6", ("inplace",), ("F.relu6",)),
    _A("leaky_relu", nn.LeakyReLU, "leaky_relu", ("negative_slope", "inplace"),
       ("F.leaky_relu",), ("F.leaky_relu_",)),
    _A("hardswish", nn.Hardswish, "hardswish", ("inplace",), ("F.hardswish",)),
    _A("swish", nn.SiLU, "silu", ("inplace",), ("F.silu",), aliases=("silu",)),
    _A("gelu", nn.GELU, "gelu", ("approximate",), ("F.gelu",)),
    _A("elu", nn.ELU, "elu", ("alpha", "inplace"), ("F.elu",), ("F.elu_",)),
    _A("selu", nn.SELU, "selu", ("inplace",), ("F.selu", "torch.selu"),
       ("F.selu_", "torch.selu_")),
    _A("celu", nn.CELU, "celu", ("alpha", "inplace"), ("F.celu", "torch.celu"),
       ("F.celu_", "torch.celu_")),
    _A("tanh", nn.Tanh, "tanh", (), ("torch.tanh", "F.tanh"), ("torch.tanh_",), ("tanh",)),
    _A("sigmoid", nn.Sigmoid, "sigmoid", (), ("torch.sigmoid", "F.sigmoid"),
       ("torch.sigmoid_",), ("sigmoid",)),
    _A("hardsigmoid", nn.Hardsigmoid, "hardsigmoid", ("inplace",), ("F.hardsigmoid",)),
    _A("softplus", nn.Softplus, "softplus", ("beta", "threshold"), ("F.softplus",)),
    _A("logsigmoid", nn.LogSigmoid, "logsigmoid", (), ("F.logsigmoid",)),
    _A("softsign", nn.Softsign, "softsign", (), ("F.softsign",)),
    _A("mish", nn.Mish, "mish", ("inplace",), ("F.mish",)),
    # Last: ReLU6 subclasses Hardtanh, and isinstance lookups walk this table in order.
    _A(None, nn.Hardtanh, "hardtanh", ("min_val", "max_val", "inplace"), ("F.hardtanh",),
       ("F.hardtanh_",)),
)  # fmt: skip
"""Every activation PyTorch ships that SAFS recognises as a site."""

#: Canonical operator name -> the PyTorch module class computing it with default arguments.
TORCH_ACTIVATION_MODULES: Mapping[str, type[nn.Module]] = {
    row.operator: row.module for row in TORCH_ACTIVATIONS if row.operator is not None
}

for _row in TORCH_ACTIVATIONS:
    if _row.operator is not None:
        register_operator(_row.operator, aliases=_row.aliases)(_row.module)
