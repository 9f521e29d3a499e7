"""Activation pruning (AP): prune the weights feeding dead neurons, as a step, a schedule and a
:class:`~safs_smac.pruning.PruningSchedule`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from safs_smac.pruning import (
    PRUNING_SCHEDULES,
    SPARSE_FINETUNE,
    Finetune,
    PruningSchedule,
    SparsityReport,
    _effective_weight,
    _mask_key,
    _refresh_weights,
    apply_masks,
    magnitude_prune,
    prunable_layers,
    sparsity_report,
)
from safs_smac.sparse_training.common import (
    Layers,
    check_count,
    check_fraction,
    layer_mask,
    logger,
    named_layers,
    weight_param,
)

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
    check_count("n_remove", n_remove, minimum=0)
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
    rate = check_fraction("rate", rate, low=0.0, high=1.0, closed=False)
    rounds = check_count("rounds", rounds, minimum=1)
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
    p = check_fraction(
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
    ap_fraction = check_fraction("ap_fraction", ap_fraction, low=0.0, high=1.0, closed=False)
    selected = named_layers(model, layers)
    modules = [module for _, module in selected]
    total = sum(_effective_weight(m).numel() for m in modules)
    surviving = sum(int(layer_mask(m).sum()) for m in modules)
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
        mask = torch.cat([layer_mask(m).reshape(-1).cpu() for m in modules])
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
        check_count("rounds", self.rounds, minimum=1)
        check_count("epochs_per_round", self.epochs_per_round, minimum=0)
        check_fraction("ap_fraction", self.ap_fraction, low=0.0, high=1.0, closed=False)
        if self.prune_fraction is not None:
            check_fraction("prune_fraction", self.prune_fraction, low=0.0, high=1.0, closed=False)
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
        shape = weight_param(module).shape
        n = math.prod(shape)
        masks[_mask_key(name)] = flat[offset : offset + n].view(shape)
        offset += n
    return masks


PRUNING_SCHEDULES["ap"] = AP  # SAFSProblem(prune_schedule="ap")
