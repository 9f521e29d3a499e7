"""Sparse evolutionary training (SET): Erdos-Renyi sparse initialisation and prune-and-regrow
after every epoch, as a mechanism (:class:`SET`) and as a pruning strategy of
:class:`~safs_smac.problem.SAFSProblem` (:class:`SETPruning`, registered as ``"set"``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from safs_smac.pruning import (
    PRUNING_SCHEDULES,
    EpochStep,
    Finetune,
    PruningSchedule,
    SparsityReport,
    _effective_weight,
    _mask_key,
    apply_masks,
    sparsity_report,
)
from safs_smac.sparse_training import common
from safs_smac.sparse_training.common import Layers

#: Values of ``SET(regrow_init=...)``.
REGROW_INITS = ("zero", "random")
# Standard deviation of "random" regrown weights: the randn() / 10 of Mocanu's sparse-data-structure
# implementation of SET-MLP.
_REGROW_STD = 0.1

# --------------------------------------------------------------------------------------------
# SET: Sparse Evolutionary Training
# --------------------------------------------------------------------------------------------


def erdos_renyi_density(
    n_in: int, n_out: int, epsilon: float, kernel_size: Sequence[int] = ()
) -> float:
    """Density of SET's Erdos-Renyi mask: ``min(1, epsilon * (n_in + n_out) / (n_in * n_out))``.

    With ``kernel_size=(kh, kw)`` (a convolution) this is the Erdos-Renyi-Kernel variant of
    Evci et al. (RigL, 2020): ``epsilon * (n_in + n_out + kh + kw) / (n_in * n_out * kh * kw)``.
    For a grouped convolution ``n_in`` is the number of input channels per group (the weight's
    second dimension).
    """
    dims = (n_in, n_out, *kernel_size)
    for d in dims:
        common.check_count("layer dimension", d, minimum=1)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}; e.g. epsilon=20")
    return min(1.0, epsilon * sum(dims) / math.prod(dims))


def _layer_dims(module: nn.Module) -> tuple[int, ...]:
    """``(n_in, n_out, *kernel)`` of a layer's weight, the dimensions Erdos-Renyi counts."""
    shape = common.weight_param(module).shape
    if len(shape) < 2:
        raise ValueError(
            f"SET needs weights with input and output dimensions, got shape {tuple(shape)}; "
            "select Linear/Conv layers only"
        )
    n_out, n_in, *kernel = shape
    return (n_in, n_out, *kernel)


def _layer_density(module: nn.Module, epsilon: float) -> float:
    n_in, n_out, *kernel = _layer_dims(module)
    return erdos_renyi_density(n_in, n_out, epsilon, kernel)


def erdos_renyi_epsilon(model: nn.Module, rate: float, layers: Layers | None = None) -> float:
    """The ``epsilon`` at which SET's Erdos-Renyi(-Kernel) masks zero ``rate`` of the weights.

    Over the selected layers (default every Conv2d/Linear), the densities
    ``min(1, epsilon * sum(dims) / prod(dims))`` of :func:`erdos_renyi_density` keep
    ``(1 - rate)`` of all their weights; layers that would exceed density 1 stay dense and the
    others share the rest, as in RigL's ERK allocation. ``rate=0`` gives the smallest epsilon at
    which every layer is dense. The masks' counts are rounded per layer, so the sparsity reached
    differs from ``rate`` by less than one weight per layer.
    """
    rate = common.check_fraction("rate", rate, low=0.0, high=1.0, closed=False)
    sizes = []
    for _, module in common.named_layers(model, layers):
        dims = _layer_dims(module)
        sizes.append((math.prod(dims), sum(dims) / math.prod(dims)))
    target = (1.0 - rate) * sum(numel for numel, _ in sizes)

    def kept(epsilon: float) -> float:
        return sum(min(numel, epsilon * scale * numel) for numel, scale in sizes)

    low, high = 0.0, max(1.0 / scale for _, scale in sizes)  # high: every layer dense
    if kept(high) <= target:
        return high
    for _ in range(200):  # kept() is increasing and piecewise linear: bisection converges
        middle = (low + high) / 2
        low, high = (middle, high) if kept(middle) < target else (low, middle)
    return high


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


class SET:
    """Sparse Evolutionary Training: Erdos-Renyi masks rewired after every epoch.

    Construction masks every selected layer whose Erdos-Renyi density
    (:func:`erdos_renyi_density`, ERK for convolutions) is below 1, keeping exactly
    ``round(density * numel)`` connections at uniformly random positions (an exact count, not a
    Bernoulli draw, so the density is reproducible). Layers with density 1 stay dense and are not
    evolved: this is how SET-MLP's small output layer (e.g. 4000 x 10) stays dense. The surviving
    weights keep the model's own initialisation.

    :meth:`evolve` removes, in every sparse layer, ``round(zeta * n_pos)`` of the ``n_pos``
    active non-negative weights closest to zero and ``round(zeta * n_neg)`` of the ``n_neg``
    active negative weights closest to zero, and grows as many connections at random positions
    that were inactive before the call (positions removed in the same call are used only when no
    others are left). The number of connections per layer never changes.

    Parameters
    ----------
    model:
        Network to sparsify in place; its selected layers must not be pruned already.
    epsilon:
        Erdos-Renyi sparsity parameter (the paper's 20; higher is denser).
    zeta:
        Fraction of the positive and of the negative weights rewired per evolution (0.3).
    layers:
        ``(name, module)`` pairs; default every Conv2d/Linear layer (density decides which stay
        dense).
    seed:
        Seed of the masks, the regrowth positions and the random regrown values.
    regrow_init:
        Value of grown connections: ``"zero"`` (default; as in Mocanu's Keras SET-MLP, the
        implementation of the CIFAR-10 activation study, and RigL: the new connection starts
        neutral and is learned) or ``"random"`` (normal with standard deviation 0.1, the
        ``randn() / 10`` of Mocanu's sparse-data-structure implementation).
    final_epoch:
        With :meth:`__call__` as ``fit(on_epoch_end=...)``: no rewiring after this epoch (pass
        the number of training epochs), so the returned network is the trained one rather than
        one with fresh, untrained connections.

    Attributes
    ----------
    layers:
        ``(name, module)`` pairs of the sparse (evolved) layers.
    dense_layers:
        Names of the selected layers left dense because their density is 1.
    history:
        ``(epoch, evolve() result)`` for every rewiring done by :meth:`__call__`.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 20,
        zeta: float = 0.3,
        layers: Layers | None = None,
        seed: int = 0,
        regrow_init: str = "zero",
        final_epoch: int | None = None,
    ) -> None:
        self.zeta = common.check_fraction("zeta", zeta, low=0.0, high=1.0, closed=True)
        if regrow_init not in REGROW_INITS:
            raise ValueError(
                f"unknown regrow_init {regrow_init!r}; valid values: {', '.join(REGROW_INITS)}"
            )
        if final_epoch is not None:
            common.check_count("final_epoch", final_epoch, minimum=0)
        self.model = model
        self.epsilon = epsilon
        self.regrow_init = regrow_init
        self.final_epoch = final_epoch
        self.generator = torch.Generator().manual_seed(seed)
        self.layers: list[tuple[str, nn.Module]] = []
        self.dense_layers: list[str] = []
        self.history: list[tuple[int, dict[str, tuple[int, int]]]] = []

        masks = {}
        for name, module in common.named_layers(model, layers):
            if hasattr(module, "weight_mask"):
                raise ValueError(
                    f"layer {name!r} is already pruned; SET draws its own masks, so pass an "
                    "unpruned model (safs_smac.pruning.make_permanent removes masks)"
                )
            density = _layer_density(module, epsilon)
            if density >= 1.0:
                self.dense_layers.append(name)
                continue
            numel = module.weight.numel()
            keep = max(1, _round_half_up(density * numel))
            mask = torch.zeros(numel, dtype=torch.bool)
            mask[torch.randperm(numel, generator=self.generator)[:keep]] = True
            masks[_mask_key(name)] = mask.view(module.weight.shape)
            self.layers.append((name, module))
        apply_masks(model, masks, strict=False)

    def density(self) -> dict[str, float]:
        """Fraction of active connections per sparse layer, and ``"total"`` over all of them."""
        out, active, total = {}, 0, 0
        for name, module in self.layers:
            mask = common.layer_mask(module)
            out[name] = int(mask.sum()) / mask.numel()
            active += int(mask.sum())
            total += mask.numel()
        out["total"] = active / total if total else 1.0
        return out

    def evolve(self) -> dict[str, tuple[int, int]]:
        """Rewire every sparse layer once; returns ``{layer: (removed, regrown)}``."""
        result, masks = {}, {}
        with torch.no_grad():
            for name, module in self.layers:
                new_mask, removed, grown = self._rewire(module)
                if grown.numel():
                    self._init_grown(module, grown)
                masks[_mask_key(name)] = new_mask
                result[name] = (removed.numel(), grown.numel())
        apply_masks(self.model, masks, strict=False)
        return result

    def _rewire(self, module: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New mask (CPU, bool), removed and grown flat positions (CPU) of one layer."""
        mask = common.layer_mask(module).reshape(-1).cpu()
        weight = _effective_weight(module).reshape(-1).cpu()
        active = mask.nonzero().squeeze(1)
        values = weight[active]
        removed = []
        for side in (values < 0, values >= 0):  # exact zeros count as the smallest positives
            idx, vals = active[side], values[side].abs()
            k = _round_half_up(self.zeta * len(idx))
            removed.append(idx[torch.argsort(vals, stable=True)[:k]])
        removed_idx = torch.cat(removed)
        candidates = (~mask).nonzero().squeeze(1)
        if len(candidates) < len(removed_idx):  # nearly dense: re-use just-removed positions
            candidates = torch.cat([candidates, removed_idx])
        pick = torch.randperm(len(candidates), generator=self.generator)[: len(removed_idx)]
        grown = candidates[pick]
        new_mask = mask.clone()
        new_mask[removed_idx] = False
        new_mask[grown] = True
        return new_mask.view(module.weight_mask.shape), removed_idx, grown

    def _init_grown(self, module: nn.Module, grown: torch.Tensor) -> None:
        param = module.weight_orig
        if self.regrow_init == "zero":
            values = torch.zeros(len(grown), dtype=param.dtype)
        else:
            values = torch.randn(len(grown), generator=self.generator, dtype=param.dtype)
            values *= _REGROW_STD
        # weight_orig at a grown position holds a stale value (from before it was removed, or
        # decayed by weight decay while masked): overwrite it.
        index = torch.unravel_index(grown.to(param.device), param.shape)  # any memory format
        param[index] = values.to(param.device)

    def __call__(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Rewire after ``epoch`` (skipped after ``final_epoch``); ``fit(on_epoch_end=...)``."""
        if self.final_epoch is not None and epoch >= self.final_epoch:
            return
        self.history.append((epoch, self.evolve()))


@dataclass(frozen=True)
class SETPruning(PruningSchedule):
    """SET as a pruning strategy of :class:`~safs_smac.problem.SAFSProblem`.

    ``SAFSProblem(pruning="set")`` or ``SAFSProblem(pruning=SETPruning(epsilon=20))``: every
    fine-tune of the network (a trial, the final evaluation) starts from Erdos-Renyi masks drawn
    with the fine-tune's seed on the problem's (dense) checkpoint and rewires them with
    :meth:`SET.evolve` after every epoch but the last (:class:`SET` with
    ``final_epoch=epochs``), so the network it returns is trained on its final topology. The
    checkpoint itself is not pruned: with ``dense_epochs=0`` this is SET from scratch, otherwise
    SET fine-tuning of the trained dense network.

    ``epsilon=None`` (the default) takes the problem's ``pruning_rate`` as the target sparsity
    (:func:`erdos_renyi_epsilon`); a number fixes the Erdos-Renyi parameter, and the rate is then
    not used. ``zeta=0`` trains on static Erdos-Renyi masks (no step after the epochs at all).
    Fine-tunes of this strategy always start from scratch (budget continuation does not apply:
    the topology and its random stream are not part of a continuation state).
    """

    epsilon: float | None = None
    zeta: float = 0.3
    regrow_init: str = "zero"
    name = "set"
    label = "SET (sparse evolutionary training)"
    scopes = ("layerwise",)

    def __post_init__(self) -> None:
        if self.epsilon is not None:
            erdos_renyi_density(1, 1, self.epsilon)  # raises for a bad epsilon
        common.check_fraction("zeta", self.zeta, low=0.0, high=1.0, closed=True)
        if self.regrow_init not in REGROW_INITS:
            raise ValueError(
                f"unknown regrow_init {self.regrow_init!r}; valid values: {', '.join(REGROW_INITS)}"
            )

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        # The masks are part of every fine-tune (drawn from its seed), not of the checkpoint.
        return sparsity_report(model)

    def begin_finetune(
        self, model: nn.Module, *, rate: float, seed: int, epochs: int
    ) -> EpochStep | None:
        epsilon = erdos_renyi_epsilon(model, rate) if self.epsilon is None else self.epsilon
        sparse = SET(
            model,
            epsilon=epsilon,
            zeta=self.zeta,
            seed=seed,
            regrow_init=self.regrow_init,
            final_epoch=epochs,
        )
        return sparse if self.zeta > 0 else None

    def settings(self) -> dict[str, object]:
        return {"name": self.name, **asdict(self)}  # every field changes the results


PRUNING_SCHEDULES["set"] = SETPruning  # SAFSProblem(pruning="set")
