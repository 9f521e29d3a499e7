"""The operator registry: canonical operator names, their aliases and module factories.

Imports torch and :mod:`safs_smac.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from safs_smac.registry import Registry

__all__ = [
    "SAFS_OPERATORS",
    "OperatorFactory",
    "is_parametric",
    "list_operators",
    "make_operator",
    "register_operator",
    "resolve_operator",
]

OperatorFactory = Callable[[], nn.Module]
"""Builds a fresh module computing ``op(x)``; the module may own parameters."""

#: The stage-1 candidate set of the SAFS reference (13 operators) plus ``relu``, which the
#: reference uses as the default but left out of its candidates.
SAFS_OPERATORS: tuple[str, ...] = (
    "relu",
    "relu6",
    "hardswish",
    "swish",
    "tanhsoft1",
    "acon_c",
    "gelu",
    "srs",
    "elu",
    "tanh",
    "softplus",
    "logsigmoid",
    "symlog",
    "symexp",
)


@dataclass(frozen=True)
class _OperatorSpec:
    name: str
    factory: OperatorFactory
    parametric: bool
    aliases: tuple[str, ...]


_OPERATORS: Registry[_OperatorSpec] = Registry("operator")


def register_operator(
    name: str, *, aliases: Sequence[str] = (), parametric: bool = False
) -> Callable[[OperatorFactory], OperatorFactory]:
    """Register an operator factory under a canonical name (decorator).

    Parameters
    ----------
    name
        Canonical operator name (lowercase; ``-`` is read as ``_``).
    aliases
        Other names :func:`resolve_operator` maps to ``name``.
    parametric
        Whether the built module owns learnable parameters.

    Returns
    -------
    The decorator; it registers the factory and returns it unchanged, so it can decorate an
    ``nn.Module`` subclass whose constructor takes no arguments.
    """
    canonical = _OPERATORS.normalise(name)
    alias_names = tuple(_OPERATORS.normalise(a) for a in aliases)

    def decorator(factory: OperatorFactory) -> OperatorFactory:
        if not callable(factory):
            raise TypeError(f"operator {canonical!r} must be registered with a callable factory")
        spec = _OperatorSpec(canonical, factory, parametric, alias_names)
        _OPERATORS.add(canonical, spec, aliases=alias_names)
        return factory

    return decorator


def list_operators() -> list[str]:
    """Return the canonical names of all registered operators, sorted."""
    return _OPERATORS.names()


def resolve_operator(name: str) -> str:
    """Map an operator name or alias to its canonical name.

    Raises
    ------
    ValueError
        If ``name`` is not a registered operator or alias; the message lists the valid names and
        the closest ones.
    """
    if not isinstance(name, str):
        raise ValueError(f"operator name must be a string, got {name!r}; use e.g. 'relu'")
    return _OPERATORS.resolve(name)


def is_parametric(name: str) -> bool:
    """Return whether the operator ``name`` owns learnable parameters."""
    return _OPERATORS.get(name).parametric


def make_operator(name: str) -> nn.Module:
    """Build a fresh module for operator ``name`` (parameters at their published init)."""
    spec = _OPERATORS.get(name)
    module = spec.factory()
    if not isinstance(module, nn.Module):
        raise TypeError(f"factory of operator {spec.name!r} returned {type(module).__name__}")
    return module
