"""The searchable activation ``alpha * op(beta * x)`` and the modules models are built with.

Imports torch and the package's :mod:`.registry` and :mod:`.torch_ops`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from safs_smac.activations.registry import make_operator, resolve_operator
from safs_smac.activations.torch_ops import TORCH_ACTIVATION_MODULES

__all__ = ["SearchableActivation", "activation_module_for"]

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
