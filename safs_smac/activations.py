"""Unary activation operators and the searchable activation ``alpha * op(beta * x)``.

The registry maps a canonical operator name (``"relu"``, ``"acon_c"``, ...) to a factory that builds
a fresh ``nn.Module`` computing ``op(x)``. Operators with their own learnable parameters (ACON-C,
TanhSoft, SRS, SReLU) start from the initial values published with them, so a fresh operator is
fully determined by its name.

:class:`SearchableActivation` wraps one operator with the two per-layer scales of SAFS. The
operator is resolved once, at construction: ``forward`` never compares strings, and an unknown name
is an error instead of a silent fallback to ReLU.

Example
-------
>>> import torch
>>> act = SearchableActivation("swish", alpha=1.5, beta=0.5)
>>> x = torch.linspace(-3, 3, 7)
>>> torch.allclose(act(x), 1.5 * torch.nn.functional.silu(0.5 * x))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from safs_smac.registry import Registry

__all__ = [
    "SAFS_OPERATORS",
    "SYMEXP_INPUT_LIMIT",
    "TORCH_ACTIVATION_MODULES",
    "OperatorFactory",
    "SearchableActivation",
    "activation_module_for",
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

#: ``symexp`` clamps ``|x|`` to this value, so its output stays below ``e**20 ~ 4.9e8``. That is
#: finite in float32, bfloat16 and float16, and leaves head room for the products and squares
#: that follow (normalisation, losses); inputs beyond the limit get zero gradient.
SYMEXP_INPUT_LIMIT = 20.0

# Exponent arguments larger than this are clamped in tanhsoft2 and srs: tanh(0.6 * e**20) is 1.0
# in every float format, and e**40 is finite in bfloat16 (max ~3.4e38), so the clamp does not
# change the function's value at the published initialisation but prevents inf * 0 = nan gradients.
_TANHSOFT2_EXP_LIMIT = 20.0
_SRS_EXP_LIMIT = 40.0
# Smallest magnitude allowed for the SRS denominator and its learnable parameters.
_SRS_EPS = 1e-3


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


# ---------------------------------------------------------------------------------------------
# Operators that PyTorch ships as modules. These are also the "plain" default activations that
# models are built with (see activation_module_for), and the classes sites.py recognises.
# ---------------------------------------------------------------------------------------------

#: Canonical operator name -> the PyTorch module class computing it with default arguments.
TORCH_ACTIVATION_MODULES: Mapping[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "hardswish": nn.Hardswish,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "celu": nn.CELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "softplus": nn.Softplus,
    "logsigmoid": nn.LogSigmoid,
    "softsign": nn.Softsign,
    "mish": nn.Mish,
}

_TORCH_ALIASES = {"swish": ("silu",)}
for _name, _cls in TORCH_ACTIVATION_MODULES.items():
    register_operator(_name, aliases=_TORCH_ALIASES.get(_name, ()))(_cls)


# ---------------------------------------------------------------------------------------------
# Parameter-free operators without a PyTorch module.
# ---------------------------------------------------------------------------------------------


@register_operator("linear", aliases=("identity",))
class LinearOp(nn.Module):
    """Identity operator ``x`` (``"linear"``; named so as not to be confused with ``nn.Linear``).

    Returns a copy rather than ``x`` itself: every other operator returns a fresh tensor, and code
    that modifies an activation output in place (``out += residual``) must not silently modify a
    tensor that autograd saved for the layer before.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


@register_operator("sin")
class Sin(nn.Module):
    """``sin(x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


@register_operator("cos")
class Cos(nn.Module):
    """``cos(x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cos(x)


@register_operator("symlog")
class SymLog(nn.Module):
    """``sign(x) * log(1 + |x|)``.

    Written as two one-sided branches so that the gradient at ``x = 0`` is the true derivative 1
    (``sign(x) * log1p(|x|)`` would give 0 there, and exact zeros are common in pruned networks).
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, torch.log1p(x.clamp(min=0)), -torch.log1p((-x).clamp(min=0)))


@register_operator("symexp")
class SymExp(nn.Module):
    """``sign(x) * (exp(|x|) - 1)`` with ``|x|`` clamped to :data:`SYMEXP_INPUT_LIMIT`.

    The unclamped function overflows float32 at ``|x| > 88.7`` and then produces nan gradients.
    """

    def forward(self, x: Tensor) -> Tensor:
        x = x.clamp(-SYMEXP_INPUT_LIMIT, SYMEXP_INPUT_LIMIT)
        return torch.where(x >= 0, torch.expm1(x), -torch.expm1(-x))


@register_operator("elish")
class ELiSH(nn.Module):
    """ELiSH (Basirat & Roth, 2018): ``x * sigmoid(x)`` for ``x >= 0``, else
    ``(exp(x) - 1) * sigmoid(x)``; ``elu`` computes exactly the two-sided first factor."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.elu(x) * torch.sigmoid(x)


@register_operator("hard_elish")
class HardELiSH(nn.Module):
    """HardELiSH: like :class:`ELiSH` with the hard sigmoid ``max(0, min(1, (x + 1) / 2))``."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.elu(x) * ((x + 1.0) * 0.5).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Operators with their own learnable scalar parameters (shape ()), at their published init.
# ---------------------------------------------------------------------------------------------


def _scalar(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(float(value)))


class _ParametricOp(nn.Module):
    """Base of operators with scalar parameters; shows their current values in ``repr``."""

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={p.item():.4g}" for n, p in self.named_parameters(recurse=False))


@register_operator("tanhsoft1", parametric=True)
class TanhSoft1(_ParametricOp):
    """TanhSoft-1 (Biswas et al., 2020): ``tanh(a * x) * softplus(x)``, learnable ``a``.

    ``a = 0.87`` is the value the TanhSoft paper reports for this member of the family.
    """

    def __init__(self, a: float = 0.87) -> None:
        super().__init__()
        self.a = _scalar(a)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.a * x) * nn.functional.softplus(x)


@register_operator("tanhsoft2", parametric=True)
class TanhSoft2(_ParametricOp):
    """TanhSoft-2 (Biswas et al., 2020): ``x * tanh(b * exp(c * x))``, learnable ``b``, ``c``.

    Published values ``b = 0.6``, ``c = 1``. ``c * x`` is clamped at 20 before ``exp``: beyond it
    the ``tanh`` is saturated anyway, and an infinite ``exp`` would make the gradient nan.
    """

    def __init__(self, b: float = 0.6, c: float = 1.0) -> None:
        super().__init__()
        self.b = _scalar(b)
        self.c = _scalar(c)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.tanh(self.b * torch.exp((self.c * x).clamp(max=_TANHSOFT2_EXP_LIMIT)))


@register_operator("acon_c", aliases=("acon",), parametric=True)
class AconC(_ParametricOp):
    """ACON-C (Ma et al., 2021): ``(p1 - p2) * x * sigmoid(beta * (p1 - p2) * x) + p2 * x``.

    The paper's code draws ``p1``, ``p2`` at random; here they start at ``p1 = 1, p2 = 0,
    beta = 1``, the point where the paper shows ACON-C equals Swish, so that a fresh operator is
    deterministic and a smooth, well-behaved starting point for learning ``p1, p2, beta``.
    """

    def __init__(self, p1: float = 1.0, p2: float = 0.0, beta: float = 1.0) -> None:
        super().__init__()
        self.p1 = _scalar(p1)
        self.p2 = _scalar(p2)
        self.beta = _scalar(beta)

    def forward(self, x: Tensor) -> Tensor:
        dpx = (self.p1 - self.p2) * x
        return dpx * torch.sigmoid(self.beta * dpx) + self.p2 * x


@register_operator("srs", aliases=("soft_root_sign",), parametric=True)
class SoftRootSign(_ParametricOp):
    """Soft-Root-Sign (Zhou et al., 2020): ``x / (x / a + exp(-x / b))``, learnable ``a``, ``b``.

    Published init ``a = 2, b = 3``. The paper constrains ``a, b`` to be positive; they are
    clamped at 1e-3 here. The denominator can reach zero once ``b / a > e``, so its magnitude is
    kept >= 1e-3 (sign preserved), and the ``exp`` argument is clamped at 40, where the function
    is already ~0.
    """

    def __init__(self, a: float = 2.0, b: float = 3.0) -> None:
        super().__init__()
        self.a = _scalar(a)
        self.b = _scalar(b)

    def forward(self, x: Tensor) -> Tensor:
        a = self.a.clamp(min=_SRS_EPS)
        b = self.b.clamp(min=_SRS_EPS)
        den = x / a + torch.exp((-x / b).clamp(max=_SRS_EXP_LIMIT))
        den = torch.where(den >= 0, den.clamp(min=_SRS_EPS), den.clamp(max=-_SRS_EPS))
        return x / den


@register_operator("srelu", parametric=True)
class SReLU(_ParametricOp):
    """S-shaped ReLU (Jin et al., 2016) with learnable thresholds ``t_l, t_r`` and slopes.

    ``t_l + a_l (x - t_l)`` for ``x <= t_l``, ``x`` in between, ``t_r + a_r (x - t_r)`` for
    ``x >= t_r``. The paper starts SReLU as a leaky ReLU (its "freezing" phase) before learning
    the thresholds; we use that starting point deterministically: ``t_l = 0, a_l = 0.2, t_r = 1,
    a_r = 1`` (with ``a_r = 1`` the right threshold has no effect until ``a_r`` moves).
    """

    def __init__(
        self, t_l: float = 0.0, a_l: float = 0.2, t_r: float = 1.0, a_r: float = 1.0
    ) -> None:
        super().__init__()
        self.t_l = _scalar(t_l)
        self.a_l = _scalar(a_l)
        self.t_r = _scalar(t_r)
        self.a_r = _scalar(a_r)

    def forward(self, x: Tensor) -> Tensor:
        # Identity plus two hinge corrections: one linear expression instead of masks/where.
        left = (1.0 - self.a_l) * torch.relu(self.t_l - x)
        right = (self.a_r - 1.0) * torch.relu(x - self.t_r)
        return x + left + right


# ---------------------------------------------------------------------------------------------
# The searchable activation.
# ---------------------------------------------------------------------------------------------


def _check_scale(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


class SearchableActivation(nn.Module):
    """``alpha * op(beta * x)`` with a fixed operator and scalar or per-channel scales.

    Parameters
    ----------
    op
        Operator name or alias (see :func:`list_operators`).
    alpha, beta
        Initial output and input scales.
    learnable
        ``requires_grad`` of ``alpha``, ``beta`` and the operator's own parameters (stage 1 of
        SAFS freezes them all, stage 2 learns them).
    num_channels
        If given, ``alpha`` and ``beta`` have one entry per channel, broadcast over dimension 1
        of the input (``N x C`` or ``N x C x H x W``).

    Notes
    -----
    While both scales are frozen and exactly 1, ``forward`` returns ``op(x)`` without the two
    multiplications, so a stage-1 network costs the same as one with plain activations. The flag
    behind this is refreshed by :meth:`set_scales`, :meth:`set_learnable` and ``load_state_dict``;
    edit ``alpha``/``beta`` through :meth:`set_scales`, not in place.
    """

    op_name: str
    op: nn.Module
    alpha: nn.Parameter
    beta: nn.Parameter
    num_channels: int | None
    site_path: str | None

    def __init__(
        self,
        op: str = "relu",
        alpha: float = 1.0,
        beta: float = 1.0,
        *,
        learnable: bool = False,
        num_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.op_name = resolve_operator(op)
        alpha = _check_scale("alpha", alpha)
        beta = _check_scale("beta", beta)
        if num_channels is not None and (
            isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1
        ):
            raise ValueError(f"num_channels must be a positive int or None, got {num_channels!r}")
        self.num_channels = num_channels
        shape = () if num_channels is None else (num_channels,)
        self.op = make_operator(self.op_name)
        self.alpha = nn.Parameter(torch.full(shape, alpha))
        self.beta = nn.Parameter(torch.full(shape, beta))
        # Original call-site path, set by sites.set_activations so that site names stay stable
        # after a graph rewrite moved this module to a new attribute.
        self.site_path = None
        self._unit_scales = alpha == 1.0 and beta == 1.0
        self.set_learnable(learnable)

    @property
    def learnable(self) -> bool:
        """Whether ``alpha`` and ``beta`` are trained."""
        return self.alpha.requires_grad and self.beta.requires_grad

    def set_learnable(self, learnable: bool) -> None:
        """Set ``requires_grad`` of ``alpha``, ``beta`` and the operator's parameters."""
        for param in self.parameters():
            param.requires_grad_(bool(learnable))
        self._refresh_unit_scales()

    @torch.no_grad()
    def set_scales(
        self, alpha: float | Tensor | None = None, beta: float | Tensor | None = None
    ) -> None:
        """Overwrite ``alpha`` and/or ``beta`` (a number, or a tensor broadcastable to them)."""
        for param, value in ((self.alpha, alpha), (self.beta, beta)):
            if value is None:
                continue
            if not isinstance(value, Tensor):
                value = _check_scale("scale", value)
            elif not bool(torch.isfinite(value).all()):
                raise ValueError("scales must be finite; got a tensor with inf or nan entries")
            param.copy_(torch.as_tensor(value, dtype=param.dtype, device=param.device))
        self._refresh_unit_scales()

    @torch.no_grad()
    def _refresh_unit_scales(self) -> None:
        # One host sync here keeps forward free of any data-dependent check.
        self._unit_scales = bool((self.alpha == 1).all()) and bool((self.beta == 1).all())

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._refresh_unit_scales()

    def forward(self, x: Tensor) -> Tensor:
        alpha, beta = self.alpha, self.beta
        if self._unit_scales:
            if not (alpha.requires_grad or beta.requires_grad):
                return self.op(x)
            # Trainable scales will move away from 1; stop trusting the flag until it is
            # recomputed (set_learnable / set_scales / load_state_dict).
            self._unit_scales = False
        if self.num_channels is not None:
            if x.dim() > 2:
                view = (-1,) + (1,) * (x.dim() - 2)
                alpha, beta = alpha.view(view), beta.view(view)
            # Per-channel scales are dimensioned tensors and would promote a bf16 activation to
            # float32; 0-dim scalar scales do not, so only this branch needs the cast.
            alpha, beta = alpha.to(x.dtype), beta.to(x.dtype)
        return alpha * self.op(beta * x)

    def extra_repr(self) -> str:
        if self.num_channels is None:
            scales = f"alpha={self.alpha.item():.4g}, beta={self.beta.item():.4g}"
        else:
            scales = f"num_channels={self.num_channels}"
        return f"op={self.op_name!r}, {scales}, learnable={self.learnable}"


def activation_module_for(name: str) -> nn.Module:
    """Return the plain module for a model's default activation ``name``.

    Operators PyTorch ships as modules give that module with default arguments (``"relu"`` ->
    ``nn.ReLU()``, ``"swish"`` -> ``nn.SiLU()``); the others give ``SearchableActivation(name)``,
    so that every default activation is still an activation site.
    """
    canonical = resolve_operator(name)
    cls = TORCH_ACTIVATION_MODULES.get(canonical)
    return cls() if cls is not None else SearchableActivation(canonical)
