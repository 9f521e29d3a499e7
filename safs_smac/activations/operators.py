"""The operators PyTorch does not ship: parameter-free ones and those with learnable scalars.

Operators with their own learnable parameters (ACON-C, TanhSoft, SRS, SReLU) start from the
initial values published with them, so a fresh operator is fully determined by its name. Each is
registered by its ``@register_operator`` line. Imports torch and :mod:`.registry`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from safs_smac.activations.registry import register_operator

__all__ = [
    "SYMEXP_INPUT_LIMIT",
    "AconC",
    "Cos",
    "ELiSH",
    "HardELiSH",
    "LinearOp",
    "SReLU",
    "Sin",
    "SoftRootSign",
    "SymExp",
    "SymLog",
    "TanhSoft1",
    "TanhSoft2",
]


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
