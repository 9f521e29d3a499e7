"""What counts as an activation site: PyTorch's activations, SAFS modules, excluded modules.

Activation modules are the classes of :data:`safs_smac.activations.TORCH_ACTIVATIONS` plus
:class:`~safs_smac.activations.SearchableActivation` and :class:`FunctionalActivation`; the
functional spellings (``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ...) come from the same table,
so sites and the operator registry share one list. A module carrying ``safs_exclude = True`` is
opaque and not a site. Imports torch and :mod:`safs_smac.activations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from safs_smac.activations import TORCH_ACTIVATIONS, SearchableActivation

__all__ = ["FunctionalActivation"]


class FunctionalActivation(nn.Module):
    """A functional activation call turned into a module by a graph rewrite.

    It calls the original function with the original arguments, so the model computes exactly
    what it did before; it only gives the call site a module of its own (and a stable name).
    """

    def __init__(self, fn: Callable[..., torch.Tensor], op_name: str, inplace: bool) -> None:
        super().__init__()
        self.fn = fn
        self.op_name = op_name
        self.inplace = inplace
        self.site_path: str | None = None

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(x, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"fn={getattr(self.fn, '__name__', self.fn)!r}"


# PyTorch activation module classes -> reported op: the canonical operator name, or the class
# name for an activation that is no operator (Hardtanh). Table order matters for subclasses
# (ReLU6 subclasses Hardtanh), which is why Hardtanh comes last in TORCH_ACTIVATIONS.
_MODULE_OPS: dict[type[nn.Module], str] = {
    row.module: row.operator or row.module.__name__ for row in TORCH_ACTIVATIONS
}


@dataclass(frozen=True)
class _Functional:
    name: str  # used in the site path ("relu" for F.relu, "silu" for F.silu)
    op: str  # reported operator (canonical name when registered)
    fn: Callable[..., torch.Tensor]  # out-of-place function, used for method calls
    params: tuple[str, ...]  # positional parameters after the input, in signature order
    always_inplace: bool = False


_FUNCTIONS: dict[Callable[..., Any], _Functional] = {}  # fx call_function / runtime targets
_METHODS: dict[str, _Functional] = {}  # fx call_method targets ("relu", "tanh_", ...)
_RUNTIME: dict[Any, _Functional] = {}  # TorchFunctionMode targets (functions and methods)


def _lookup(qualified: str) -> Callable[..., Any] | None:
    """``"F.relu"`` or ``"torch.relu"`` as the function, or None where this PyTorch lacks it."""
    namespace, _, attr = qualified.partition(".")
    return getattr({"F": F, "torch": torch}[namespace], attr, None)


for _row in TORCH_ACTIVATIONS:
    _out_of_place = _lookup(_row.functions[0])
    assert _out_of_place is not None, _row.functions[0]
    _spec = _Functional(_row.function, _row.operator or _row.function, _out_of_place, _row.params)
    _inplace_spec = _Functional(
        _row.function, _spec.op, _out_of_place, _row.params, always_inplace=True
    )
    for _fn in filter(None, map(_lookup, _row.functions)):
        _FUNCTIONS[_fn] = _RUNTIME[_fn] = _spec
    for _fn in filter(None, map(_lookup, _row.inplace_functions)):
        _FUNCTIONS[_fn] = _RUNTIME[_fn] = _inplace_spec
    for _method in _row.methods:
        _METHODS[_method] = _RUNTIME[getattr(torch.Tensor, _method)] = _spec
        _METHODS[f"{_method}_"] = _RUNTIME[getattr(torch.Tensor, f"{_method}_")] = _inplace_spec


def _is_excluded(module: nn.Module) -> bool:
    return getattr(module, "safs_exclude", False) is True


def _site_op(module: nn.Module) -> str | None:
    """Reported op of an activation module, or None if ``module`` is not a site."""
    if _is_excluded(module):
        return None
    if isinstance(module, SearchableActivation | FunctionalActivation):
        return module.op_name
    op = _MODULE_OPS.get(type(module))
    if op is None:
        op = next((name for cls, name in _MODULE_OPS.items() if isinstance(module, cls)), None)
    return op


def _is_torch_leaf(module: nn.Module) -> bool:
    # Same rule as fx.Tracer.is_leaf_module: PyTorch's own layers are opaque.
    return module.__module__.startswith(("torch.nn", "torch.ao.nn")) and not isinstance(
        module, nn.Sequential
    )


def _is_opaque(module: nn.Module) -> bool:
    return _is_excluded(module) or _site_op(module) is not None or _is_torch_leaf(module)


class _SiteTracer(fx.Tracer):
    """fx tracer that keeps activation modules and ``safs_exclude`` modules as leaves."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_opaque(m) or super().is_leaf_module(m, module_qualified_name)
