"""Two sparse-training baselines related to SAFS: AP and SET.

AP, Activating-while-Pruning (Liu, Ghosh, Tan, Motani, TMLR 2023)
    Runs on top of iterative global magnitude pruning. Each cycle trains, then removes ``p`` % of
    the surviving weights: ``p - ap`` % by global magnitude and ``ap`` % among the surviving
    *negative* weights, those that changed least during the cycle (``|w_end - w_start|``).
    Removing negative incoming weights raises pre-activations, so fewer ReLUs are dead (a lower
    dead neuron rate, :mod:`safs_smac.diagnostics`). The weights are then rewound to their initial
    values (lottery-ticket style) and the next cycle starts. See :func:`ap_prune`, :func:`ap_step`.

SET, Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018)
    Every sparse layer starts from a random Erdos-Renyi mask of density
    ``epsilon * (n_in + n_out) / (n_in * n_out)``; after every epoch the fraction ``zeta`` of the
    active positive weights closest to zero and of the active negative weights closest to zero is
    removed, and as many connections are grown at random inactive positions, so the density stays
    constant. See :class:`SET`.

Masks live in :mod:`torch.nn.utils.prune` reparametrisations and are read and written through
:mod:`safs_smac.pruning`, so they keep working in :func:`safs_smac.training.fit`, survive
``state_dict()`` and can be made permanent with :func:`safs_smac.pruning.make_permanent`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from safs_smac.pruning import (
    SPARSE_FINETUNE,
    Finetune,
    PruningSchedule,
    SparsityReport,
    _effective_weight,
    _mask_key,
    _refresh_weights,
    _select,
    apply_masks,
    magnitude_prune,
    prunable_layers,
    sparsity_report,
)

__all__ = [
    "AP",
    "REGROW_INITS",
    "SET",
    "ap_prune",
    "ap_schedule",
    "ap_step",
    "erdos_renyi_density",
]

logger = logging.getLogger(__name__)

Layers = Sequence[tuple[str, nn.Module]]

#: Values of ``SET(regrow_init=...)``.
REGROW_INITS = ("zero", "random")
# Standard deviation of "random" regrown weights: the randn() / 10 of Mocanu's sparse-data-structure
# implementation of SET-MLP.
_REGROW_STD = 0.1


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _check_fraction(name: str, value: object, *, low: float, high: float, closed: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and low <= value and (value <= high if closed else value < high)
    if not ok:
        bracket = "]" if closed else ")"
        raise ValueError(f"{name} must be a number in [{low}, {high}{bracket}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _check_count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _named_layers(model: nn.Module, layers: Layers | None) -> list[tuple[str, nn.Module]]:
    """Selected layers (checked by :mod:`safs_smac.pruning`), named by their path in ``model``
    (the keys :func:`~safs_smac.pruning.get_masks` uses)."""
    names = {id(module): name for name, module in model.named_modules()}
    named = []
    for given, module in _select(model, layers):
        if id(module) not in names:
            raise ValueError(f"layer {given!r} is not a submodule of the model; select its layers")
        named.append((names[id(module)], module))
    return named


def _weight_param(module: nn.Module) -> torch.Tensor:
    """The trainable tensor behind ``weight`` (``weight_orig`` once the layer is pruned)."""
    return module.weight_orig if hasattr(module, "weight_mask") else module.weight


def _mask(module: nn.Module) -> torch.Tensor:
    """Boolean mask of the layer's weight (all True when unpruned), on the weight's device."""
    mask = getattr(module, "weight_mask", None)
    if mask is None:
        return torch.ones_like(module.weight, dtype=torch.bool)
    return mask.detach() != 0


# --------------------------------------------------------------------------------------------
# AP: Activating-while-Pruning
# --------------------------------------------------------------------------------------------


def ap_step(
    weights_end: torch.Tensor, weights_start: torch.Tensor, mask: torch.Tensor, n_remove: int
) -> torch.Tensor:
    """AP's negative-weight rule: drop the ``n_remove`` surviving negative weights that moved least.

    Eligible are the weights with ``mask`` True and ``weights_end < 0``; among them the
    ``n_remove`` with the smallest ``|weights_end - weights_start|`` are removed (ties broken by
    position, first one first, so the result is deterministic).

    Parameters
    ----------
    weights_end, weights_start:
        Weights after and before a training cycle, same shape (one layer, or all layers
        flattened and concatenated for the global rule).
    mask:
        Current mask (bool or 0/1), same shape; True means the weight survives.
    n_remove:
        Number of weights to remove, at most the number of eligible weights.

    Returns
    -------
    torch.Tensor
        The new boolean mask (a new tensor; the inputs are not modified).
    """
    if not weights_end.shape == weights_start.shape == mask.shape:
        raise ValueError(
            f"ap_step needs tensors of one shape, got weights_end {tuple(weights_end.shape)}, "
            f"weights_start {tuple(weights_start.shape)} and mask {tuple(mask.shape)}"
        )
    _check_count("n_remove", n_remove, minimum=0)
    # reshape + clone: a contiguous copy even for channels_last weights, so view() works below
    flat = (mask != 0).reshape(-1).clone()
    eligible = (flat & (weights_end.reshape(-1) < 0)).nonzero().squeeze(1)
    if n_remove > len(eligible):
        raise ValueError(
            f"ap_step cannot remove {n_remove} weights: only {len(eligible)} surviving weights are "
            "negative; pass n_remove <= that number"
        )
    change = (weights_end.reshape(-1) - weights_start.reshape(-1))[eligible].abs()
    order = torch.argsort(change, stable=True)  # stable: ties go by position
    flat[eligible[order[:n_remove]]] = False
    return flat.view(mask.shape)


def ap_schedule(
    total: int,
    surviving: int,
    rate: float,
    *,
    rounds: int,
    prune_fraction_per_round: float | None = 0.20,
) -> list[int]:
    """Surviving weights after each AP cycle, the last one exactly ``total - round(rate * total)``.

    With ``prune_fraction_per_round=p`` every cycle removes ``p`` of the survivors (the AP paper's
    20 %) and the last cycle removes only what is left to reach the target; ``ValueError`` if
    that takes more than ``rounds`` cycles. With ``None`` the fraction is chosen so that exactly
    ``rounds`` cycles reach the target (geometric schedule, as
    :func:`safs_smac.pruning.iterative_magnitude_prune`).
    """
    rate = _check_fraction("rate", rate, low=0.0, high=1.0, closed=False)
    rounds = _check_count("rounds", rounds, minimum=1)
    final = total - round(rate * total)
    if surviving < final:
        raise ValueError(
            f"the selected layers already have {total - surviving} of {total} weights pruned, more "
            f"than rate={rate} asks for; pass a rate >= {(total - surviving) / total:.6g}"
        )
    if final == 0:
        raise ValueError(
            f"rate={rate} prunes all {total} weights of the selected layers; pass a smaller rate"
        )
    if surviving == final:
        return []
    if prune_fraction_per_round is None:
        keep = (final / surviving) ** (1.0 / rounds)
        steps = [round(surviving * keep**c) for c in range(1, rounds)]
        return [*steps, final]
    p = _check_fraction(
        "prune_fraction_per_round", prune_fraction_per_round, low=0, high=1, closed=False
    )
    if p == 0.0:
        raise ValueError("prune_fraction_per_round must be > 0; e.g. 0.2 as in the AP paper")
    steps, current = [], surviving
    while current > final:
        current = max(final, min(current - 1, round(current * (1.0 - p))))
        steps.append(current)
    if len(steps) > rounds:
        raise ValueError(
            f"rate={rate} needs {len(steps)} cycles at prune_fraction_per_round={p} but "
            f"rounds={rounds}; pass rounds={len(steps)} or prune_fraction_per_round=None to "
            f"spread the rate over {rounds} cycles"
        )
    return steps


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copy of parameters and buffers keyed as if unpruned (``x.weight_orig`` -> ``x.weight``)."""
    return {key: value.detach().clone() for key, value in _rewindable(model).items()}


def _rewindable(model: nn.Module) -> dict[str, torch.Tensor]:
    """Live state tensors keyed as if unpruned; pruning masks are left out (rewinding keeps
    them), so a snapshot taken before pruning still matches afterwards."""
    state = model.state_dict(keep_vars=True)
    out = {}
    for key, value in state.items():
        if key.endswith("_mask") and key.removesuffix("_mask") + "_orig" in state:
            continue
        pruned = key.endswith("_orig") and key.removesuffix("_orig") + "_mask" in state
        out[key.removesuffix("_orig") if pruned else key] = value
    return out


def _rewind(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    live = _rewindable(model)
    if live.keys() != snapshot.keys():
        changed = sorted(live.keys() ^ snapshot.keys())
        raise ValueError(
            f"train_round changed the model's parameters or buffers ({', '.join(changed[:5])}); "
            "rewinding needs the same architecture in every cycle, or pass rewind=False"
        )
    with torch.no_grad():
        for key, value in live.items():
            value.copy_(snapshot[key])


def ap_prune(
    model: nn.Module,
    *,
    rate: float,
    rounds: int,
    train_round: Callable[[nn.Module, int], None],
    rewind: bool = True,
    prune_fraction_per_round: float | None = 0.20,
    ap_fraction: float = 0.02,
    layers: Layers | None = None,
) -> SparsityReport:
    """Iterative global magnitude pruning with AP's negative-weight rule, to sparsity ``rate``.

    Every cycle ``c`` (1-based):

    1. record ``w_start``, the effective weights after this cycle's (re)initialisation;
    2. ``train_round(model, c)`` (e.g. a :func:`safs_smac.training.fit` call);
    3. prune ``p - ap`` % of the surviving weights by global magnitude
       (:func:`safs_smac.pruning.magnitude_prune`, ``scope="global"``);
    4. prune ``ap`` % of the surviving weights among the surviving negative ones, those with the
       smallest ``|w_end - w_start|`` (:func:`ap_step`, global over the layers);
    5. with ``rewind`` reset all parameters and buffers to their values at the call (masks kept,
       lottery-ticket rewinding); otherwise keep the trained weights.

    ``p`` and the number of cycles come from :func:`ap_schedule`: cycles remove
    ``prune_fraction_per_round`` of the survivors until the target is reached (the last cycle
    removes exactly the rest, so ``round(rate * total)`` selected weights are masked at the end),
    and ``ap`` takes the share ``ap_fraction / p`` of every cycle's removals. If fewer surviving
    weights are negative than ``ap`` asks for, magnitude pruning removes the remainder.

    The model is returned rewound (or as trained): train it once more to get the final sparse
    network, e.g. ``train_round(model, cycles + 1)``.

    Parameters
    ----------
    model:
        Network to prune in place; existing masks are kept and counted.
    rate:
        Target fraction in ``[0, 1)`` of zero weights over the selected layers.
    rounds:
        Maximum number of cycles (exact number with ``prune_fraction_per_round=None``).
    train_round:
        ``train_round(model, cycle)`` trains the model for one cycle in place.
    rewind:
        Rewind to the initial weights after each pruning step (the AP paper), or continue
        from the trained weights.
    prune_fraction_per_round:
        ``p``, the fraction of surviving weights removed per cycle (0.2 in the paper), or None.
    ap_fraction:
        ``ap``, the fraction of surviving weights removed by the negative-weight rule per cycle
        (0.02 in the paper); at most ``p``.
    layers:
        ``(name, module)`` pairs to prune; default every Conv2d/Linear layer.

    Returns
    -------
    SparsityReport
        :func:`safs_smac.pruning.sparsity_report` of the model at the end.
    """
    if not callable(train_round):
        raise ValueError("train_round must be a callable train_round(model, cycle)")
    ap_fraction = _check_fraction("ap_fraction", ap_fraction, low=0.0, high=1.0, closed=False)
    selected = _named_layers(model, layers)
    modules = [module for _, module in selected]
    total = sum(_effective_weight(m).numel() for m in modules)
    surviving = sum(int(_mask(m).sum()) for m in modules)
    steps = ap_schedule(
        total, surviving, rate, rounds=rounds, prune_fraction_per_round=prune_fraction_per_round
    )
    if not steps:
        return sparsity_report(model)
    if prune_fraction_per_round is None:  # the fraction ap_schedule's geometric schedule uses
        p = 1.0 - (steps[-1] / surviving) ** (1.0 / len(steps))
    else:
        p = prune_fraction_per_round
    if ap_fraction > p:
        raise ValueError(
            f"ap_fraction={ap_fraction} exceeds the fraction pruned per cycle ({p:.4g}); pass "
            "ap_fraction <= prune_fraction_per_round (the paper uses 0.02 of 0.2)"
        )
    initial = _snapshot(model) if rewind else {}
    for cycle, target in enumerate(steps, start=1):
        start = [_effective_weight(m).clone() for m in modules]
        train_round(model, cycle)
        n_cycle = surviving - target
        n_ap = round(n_cycle * ap_fraction / p)
        masked = total - surviving + n_cycle - n_ap
        magnitude_prune(model, masked / total, scope="global", layers=selected)

        end = [_effective_weight(m) for m in modules]
        mask = torch.cat([_mask(m).reshape(-1).cpu() for m in modules])
        w_end = torch.cat([w.reshape(-1).cpu() for w in end])
        w_start = torch.cat([w.reshape(-1).cpu() for w in start])
        negatives = int((mask & (w_end < 0)).sum())
        n_neg = min(n_ap, negatives)
        new_mask = ap_step(w_end, w_start, mask, n_neg)
        apply_masks(model, _split(new_mask, selected), strict=False)
        if n_neg < n_ap:  # too few negatives: magnitude pruning takes the rest
            magnitude_prune(model, (total - target) / total, scope="global", layers=selected)
        surviving = target
        logger.info(
            "AP cycle %d/%d: %d weights pruned by magnitude, %d negative weights by AP; "
            "%.4f of the selected weights are zero",
            cycle,
            len(steps),
            n_cycle - n_neg,
            n_neg,
            1.0 - target / total,
        )
        if rewind:
            _rewind(model, initial)
        _refresh_weights(modules)
    return sparsity_report(model)


@dataclass(frozen=True)
class AP(PruningSchedule):
    """Activating-while-Pruning as a pruning schedule: :func:`ap_prune` with fine-tuning cycles.

    ``SAFSProblem(pruning="global", prune_schedule=AP())`` prunes the dense network in exactly
    ``rounds`` cycles (a geometric schedule to the rate), each starting with ``epochs_per_round``
    epochs of fine-tuning with ``recipe`` (default :data:`safs_smac.pruning.SPARSE_FINETUNE`),
    then magnitude pruning plus AP's rule for negative weights that moved least (``ap_fraction``
    of the survivors per cycle). ``rewind`` resets the weights to the dense network after every
    cycle (the AP paper's lottery-ticket variant). AP prunes globally only.

    ``prune_fraction`` (the AP paper's 0.2) replaces the geometric schedule by a fixed fraction of
    the survivors per cycle, the last cycle removing only what is left (:func:`ap_schedule`;
    ``rounds`` is then the most cycles allowed). ``skip_last`` leaves the classifier head dense
    (``prunable_layers(skip_last=True)``); the rate then counts the other layers only. With
    ``ap_fraction=0`` the schedule is iterative magnitude pruning (IMP, with ``rewind`` the
    lottery-ticket procedure), the control that differs from AP only in AP's rule.
    """

    rounds: int = 6
    epochs_per_round: int = 3
    ap_fraction: float = 0.02
    rewind: bool = False
    recipe: tuple[tuple[str, object], ...] = SPARSE_FINETUNE
    prune_fraction: float | None = None
    skip_last: bool = False
    name = "ap"
    label = "AP pruning"
    scopes = ("global",)

    def __post_init__(self) -> None:
        _check_count("rounds", self.rounds, minimum=1)
        _check_count("epochs_per_round", self.epochs_per_round, minimum=0)
        _check_fraction("ap_fraction", self.ap_fraction, low=0.0, high=1.0, closed=False)
        if self.prune_fraction is not None:
            _check_fraction("prune_fraction", self.prune_fraction, low=0.0, high=1.0, closed=False)
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", tuple(sorted(self.recipe.items())))

    @property
    def epochs(self) -> int:
        return self.rounds * self.epochs_per_round

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        if scope not in self.scopes:
            raise ValueError(f"AP prunes globally; use pruning='global', not {scope!r}")
        if finetune is None and self.epochs_per_round:
            raise ValueError("AP fine-tunes in every cycle; pass finetune=")

        def train_round(pruned: nn.Module, _cycle: int) -> None:
            if self.epochs_per_round and finetune is not None:
                finetune(pruned, self.epochs_per_round, dict(self.recipe))

        return ap_prune(
            model,
            rate=rate,
            rounds=self.rounds,
            train_round=train_round,
            rewind=self.rewind,
            prune_fraction_per_round=self.prune_fraction,
            ap_fraction=self.ap_fraction,
            layers=prunable_layers(model, skip_last=self.skip_last),
        )

    def settings(self) -> dict[str, object]:
        settings: dict[str, object] = {
            "name": self.name,
            "rounds": self.rounds,
            "epochs_per_round": self.epochs_per_round,
            "ap_fraction": self.ap_fraction,
            "rewind": self.rewind,
            "recipe": dict(self.recipe),
        }
        # Only when set, so that the cache keys of existing AP runs stay valid.
        if self.prune_fraction is not None:
            settings["prune_fraction"] = self.prune_fraction
        if self.skip_last:
            settings["skip_last"] = True
        return settings


def _split(flat: torch.Tensor, selected: Sequence[tuple[str, nn.Module]]) -> dict[str, Any]:
    """Cut a flat mask over ``selected`` back into ``{"<layer>.weight": mask}``."""
    masks, offset = {}, 0
    for name, module in selected:
        shape = _weight_param(module).shape
        n = math.prod(shape)
        masks[_mask_key(name)] = flat[offset : offset + n].view(shape)
        offset += n
    return masks


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
        _check_count("layer dimension", d, minimum=1)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}; e.g. epsilon=20")
    return min(1.0, epsilon * sum(dims) / math.prod(dims))


def _layer_density(module: nn.Module, epsilon: float) -> float:
    shape = _weight_param(module).shape
    if len(shape) < 2:
        raise ValueError(
            f"SET needs weights with input and output dimensions, got shape {tuple(shape)}; "
            "select Linear/Conv layers only"
        )
    n_out, n_in, *kernel = shape
    return erdos_renyi_density(n_in, n_out, epsilon, kernel)


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
        self.zeta = _check_fraction("zeta", zeta, low=0.0, high=1.0, closed=True)
        if regrow_init not in REGROW_INITS:
            raise ValueError(
                f"unknown regrow_init {regrow_init!r}; valid values: {', '.join(REGROW_INITS)}"
            )
        if final_epoch is not None:
            _check_count("final_epoch", final_epoch, minimum=0)
        self.model = model
        self.epsilon = epsilon
        self.regrow_init = regrow_init
        self.final_epoch = final_epoch
        self.generator = torch.Generator().manual_seed(seed)
        self.layers: list[tuple[str, nn.Module]] = []
        self.dense_layers: list[str] = []
        self.history: list[tuple[int, dict[str, tuple[int, int]]]] = []

        masks = {}
        for name, module in _named_layers(model, layers):
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
            mask = _mask(module)
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
        mask = _mask(module).reshape(-1).cpu()
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
