"""Unary activation operators and the searchable activation ``alpha * op(beta * x)``.

The registry (:mod:`.registry`) maps a canonical operator name (``"relu"``, ``"acon_c"``, ...)
to a factory that builds a fresh ``nn.Module`` computing ``op(x)``: PyTorch's own activations
(:mod:`.torch_ops`) and the others (:mod:`.operators`). :class:`SearchableActivation`
(:mod:`.searchable`) wraps one operator with the two per-layer scales of SAFS.

Example
-------
>>> import torch
>>> act = SearchableActivation("swish", alpha=1.5, beta=0.5)
>>> x = torch.linspace(-3, 3, 7)
>>> torch.allclose(act(x), 1.5 * torch.nn.functional.silu(0.5 * x))
True
"""

from safs_smac.activations.operators import SYMEXP_INPUT_LIMIT
from safs_smac.activations.registry import (
    SAFS_OPERATORS,
    OperatorFactory,
    is_parametric,
    list_operators,
    make_operator,
    register_operator,
    resolve_operator,
)
from safs_smac.activations.searchable import SearchableActivation, activation_module_for
from safs_smac.activations.torch_ops import (
    TORCH_ACTIVATION_MODULES,
    TORCH_ACTIVATIONS,
    TorchActivation,
)

__all__ = [
    "SAFS_OPERATORS",
    "SYMEXP_INPUT_LIMIT",
    "TORCH_ACTIVATIONS",
    "TORCH_ACTIVATION_MODULES",
    "OperatorFactory",
    "SearchableActivation",
    "TorchActivation",
    "activation_module_for",
    "is_parametric",
    "list_operators",
    "make_operator",
    "register_operator",
    "resolve_operator",
]
