"""Magnitude pruning and its masks: reports, layer selection, one-shot and iterative magnitude
pruning, and reading, applying and removing masks (see the package docstring for the semantics).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import prune

SCOPES = ("layerwise", "global")
_PARAM = "weight"
# Layers sparsity_report always lists, pruned or not.
_REPORTED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)

Layers = Sequence[tuple[str, nn.Module]]


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass
class LayerSparsity:
    """Zeros in the effective weight of one layer."""

    name: str
    total: int
    zeros: int
    sparsity: float


@dataclass
class SparsityReport:
    """Per-layer and overall count of zero weights; ``str(report)`` is a readable table."""

    layers: list[LayerSparsity]
    total: int
    zeros: int
    sparsity: float

    def to_dict(self) -> dict:
        """Plain-python form (JSON serialisable)."""
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "total": self.total,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
        }

    def __str__(self) -> str:
        rows = [(layer.name, layer.total, layer.zeros, layer.sparsity) for layer in self.layers]
        rows.append(("total", self.total, self.zeros, self.sparsity))
        width = max(len("layer"), *(len(name) for name, *_ in rows))
        lines = [f"{'layer':<{width}}  {'weights':>10}  {'zeros':>10}  {'sparsity':>8}"]
        for i, (name, total, zeros, sparsity) in enumerate(rows):
            if i == len(rows) - 1:
                lines.append("-" * len(lines[0]))
            lines.append(f"{name:<{width}}  {total:>10,}  {zeros:>10,}  {sparsity:>8.2%}")
        return "\n".join(lines)


def _effective_weight(module: nn.Module) -> torch.Tensor:
    """``weight_orig * weight_mask`` when pruned, else ``weight``.

    ``module.weight`` of a pruned layer is only refreshed by a forward pass, so after an optimizer
    step it is stale; recomputing from the parts is always current.
    """
    mask = getattr(module, _PARAM + "_mask", None)
    if mask is not None and hasattr(module, _PARAM + "_orig"):
        return (getattr(module, _PARAM + "_orig") * mask).detach()
    return getattr(module, _PARAM).detach()


def _is_pruned_layer(module: nn.Module) -> bool:
    return any(
        isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == _PARAM
        for hook in module._forward_pre_hooks.values()
    )


def sparsity_report(model: nn.Module) -> SparsityReport:
    """Count the zeros in the effective weights of every conv and linear layer (and any other
    pruned layer), whether or not it is pruned.

    Zeros are real zeros of the weight the forward pass uses, not mask entries, so a layer whose
    pruning was made permanent still reports its sparsity.
    """
    layers = []
    for name, module in model.named_modules():
        if not (isinstance(module, _REPORTED_TYPES) or _is_pruned_layer(module)):
            continue
        weight = _effective_weight(module)
        total, zeros = weight.numel(), int((weight == 0).sum())
        layers.append(LayerSparsity(name, total, zeros, zeros / total if total else 0.0))
    total = sum(layer.total for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    return SparsityReport(layers, total, zeros, zeros / total if total else 0.0)


# --------------------------------------------------------------------------------------------
# Selection and validation
# --------------------------------------------------------------------------------------------


def prunable_layers(
    model: nn.Module,
    *,
    layer_types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear),
    skip_first: bool = False,
    skip_last: bool = False,
) -> list[tuple[str, nn.Module]]:
    """Layers of ``layer_types`` that own a ``weight``, in registration order.

    Registration order is the forward order for the zoo models (stem first, classifier last).
    ``skip_first`` / ``skip_last`` leave the first / last of them dense, the usual protection for
    the input and output layers at extreme sparsity.
    """
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, layer_types) and _has_weight(module)
    ]
    if skip_first:
        layers = layers[1:]
    if skip_last:
        layers = layers[:-1]
    return layers


def _has_weight(module: nn.Module) -> bool:
    weight = getattr(module, _PARAM + "_orig", None)
    if weight is None:
        weight = getattr(module, _PARAM, None)
    return isinstance(weight, torch.Tensor)


def _check_rate(rate: float) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ValueError(
            f"pruning rate must be a number in [0, 1) (the fraction of weights set to zero), "
            f"got {rate!r}; e.g. rate=0.99"
        )
    return float(rate)


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"unknown pruning scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
    return scope


def _select(model: nn.Module, layers: Layers | None) -> list[tuple[str, nn.Module]]:
    selected = prunable_layers(model) if layers is None else list(layers)
    if not selected:
        raise ValueError(
            "no layers selected for pruning; pass a model with Conv2d/Linear layers or a non-empty "
            "`layers` list (see prunable_layers)"
        )
    seen: dict[int, str] = {}
    for name, module in selected:
        if not _has_weight(module):
            raise ValueError(f"layer '{name}' has no weight tensor to prune; remove it from layers")
        if id(module) in seen:
            raise ValueError(
                f"layer '{name}' is selected twice (also as '{seen[id(module)]}'); "
                "list each layer once"
            )
        seen[id(module)] = name
    return selected


def _masked_count(module: nn.Module) -> int:
    mask = getattr(module, _PARAM + "_mask", None)
    return 0 if mask is None else int((mask == 0).sum())


def _refresh_weights(modules: Sequence[nn.Module]) -> None:
    """Recompute ``module.weight`` from orig * mask outside autograd.

    torch stores the masked weight as a non-leaf tensor, which makes ``copy.deepcopy`` of a freshly
    pruned model fail; the forward pre-hook recomputes it (with autograd) on every forward anyway.
    """
    with torch.no_grad():
        for module in modules:
            if _is_pruned_layer(module):
                setattr(module, _PARAM, _effective_weight(module))


# --------------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------------


def magnitude_prune(
    model: nn.Module,
    rate: float,
    *,
    scope: str = "layerwise",
    layers: Layers | None = None,
) -> SparsityReport:
    """One-shot L1 (magnitude) unstructured pruning of the layers' weights.

    Parameters
    ----------
    model:
        Model to prune in place.
    rate:
        Fraction in ``[0, 1)`` of weights that are zero afterwards (absolute, see module doc).
    scope:
        ``"layerwise"``: every selected layer keeps its own ``round(rate * numel)`` zeros (the
        SAFS reference). ``"global"``: ``round(rate * total)`` zeros across all selected layers,
        chosen by one global magnitude threshold.
    layers:
        ``(name, module)`` pairs to prune; default :func:`prunable_layers` (every Conv2d/Linear).

    Returns
    -------
    :func:`sparsity_report` of the whole model after pruning.
    """
    rate = _check_rate(rate)
    scope = _check_scope(scope)
    selected = _select(model, layers)
    if scope == "layerwise":
        for _, module in selected:
            n = _effective_weight(module).numel()
            additional = round(rate * n) - _masked_count(module)
            if additional > 0 or not _is_pruned_layer(module):
                # amount is a count, so torch prunes exactly that many of the still-unmasked
                # weights (a PruningContainer keeps the existing mask).
                prune.l1_unstructured(
                    module,
                    _PARAM,
                    amount=max(additional, 0),
                    importance_scores=_effective_weight(module),
                )
    else:
        total = sum(_effective_weight(module).numel() for _, module in selected)
        additional = round(rate * total) - sum(_masked_count(module) for _, module in selected)
        if additional > 0 or not all(_is_pruned_layer(module) for _, module in selected):
            prune.global_unstructured(
                [(module, _PARAM) for _, module in selected],
                pruning_method=prune.L1Unstructured,
                # Explicit scores: module.weight of a pruned layer may be stale (see above).
                importance_scores={
                    (module, _PARAM): _effective_weight(module) for _, module in selected
                },
                amount=max(additional, 0),
            )
    _refresh_weights([module for _, module in selected])
    _warn_on_layer_collapse(selected)
    return sparsity_report(model)


def _warn_on_layer_collapse(selected: Layers) -> None:
    # Global pruning can empty a whole layer (typically a wide one with small weights), which cuts
    # the signal path and makes fine-tuning pointless; say so rather than fail silently later.
    dead = [name for name, module in selected if not _effective_weight(module).any()]
    if dead:
        warnings.warn(
            f"pruning left no non-zero weight in layer(s) {', '.join(dead)}; the network cannot "
            "pass a signal through them; use scope='layerwise', a lower rate or train the dense "
            "model first",
            RuntimeWarning,
            stacklevel=3,
        )


def iterative_magnitude_prune(
    model: nn.Module,
    rate: float,
    *,
    rounds: int,
    scope: str = "layerwise",
    layers: Layers | None = None,
    between_rounds: Callable[[nn.Module, int], None] | None = None,
) -> SparsityReport:
    """Prune to ``rate`` in ``rounds`` steps on a geometric schedule.

    Round ``r`` (1-based) prunes to ``1 - (1 - rate) ** (r / rounds)``, i.e. it removes the same
    fraction of the surviving weights every round; the last round reaches ``rate`` exactly.
    ``between_rounds(model, r)`` is called after every round except the last (``rounds - 1``
    calls), typically to fine-tune so the next round ranks weights that have adapted; fine-tuning
    after the last round is the caller's next step (e.g. the SAFS search itself).

    Returns
    -------
    :func:`sparsity_report` after the last round.
    """
    rate = _check_rate(rate)
    scope = _check_scope(scope)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(
            f"rounds must be an integer >= 1, got {rounds!r}; use rounds=1 for one-shot"
        )
    # Select once so every round prunes the same layers even if the callback adds modules.
    selected = _select(model, layers)
    report = sparsity_report(model)
    for r in range(1, rounds + 1):
        target = rate if r == rounds else 1.0 - (1.0 - rate) ** (r / rounds)
        report = magnitude_prune(model, target, scope=scope, layers=selected)
        if between_rounds is not None and r < rounds:
            between_rounds(model, r)
    return report


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def is_pruned(model: nn.Module) -> bool:
    """Whether any submodule carries a pruning reparametrisation."""
    return prune.is_pruned(model)


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks of all pruned weights as ``{"<layer>.weight": bool tensor on CPU}``."""
    return {
        _mask_key(name): getattr(module, _PARAM + "_mask").detach().to("cpu", torch.bool)
        for name, module in model.named_modules()
        if _is_pruned_layer(module)
    }


def _mask_key(module_name: str) -> str:
    return f"{module_name}.{_PARAM}" if module_name else _PARAM


def apply_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor], *, strict: bool = True
) -> None:
    """Set the pruning masks of ``model`` from ``masks`` (as returned by :func:`get_masks`).

    An unpruned layer is reparametrised with :func:`torch.nn.utils.prune.custom_from_mask`; the
    mask of an already pruned layer is *replaced* (not combined), like loading a checkpoint.

    Raises
    ------
    ValueError
        A key that names no layer weight of ``model`` (unexpected), a mask whose shape differs
        from the weight, a mask that is not 0/1, or, with ``strict``, a layer pruned in ``model``
        that ``masks`` does not cover (missing).
    """
    modules = dict(model.named_modules())
    targets: dict[str, nn.Module] = {}
    unexpected = []
    for key in masks:
        owner, _, param = key.rpartition(".")
        module = modules.get(owner)
        if param != _PARAM or module is None or not _has_weight(module):
            unexpected.append(key)
        else:
            targets[key] = module
    missing = []
    if strict:
        missing = [
            _mask_key(name)
            for name, module in modules.items()
            if _is_pruned_layer(module) and _mask_key(name) not in masks
        ]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if missing:
            parts.append(f"missing keys {missing}")
        raise ValueError(
            f"masks do not match the model: {'; '.join(parts)}; build the model with the same "
            "architecture as the one the masks came from"
        )
    for key, module in targets.items():
        weight = _effective_weight(module)
        mask = torch.as_tensor(masks[key])
        if mask.shape != weight.shape:
            raise ValueError(
                f"mask '{key}' has shape {tuple(mask.shape)} but the weight has "
                f"{tuple(weight.shape)}; use masks from a model of the same architecture"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask '{key}' must contain only 0/1 (or bool) values")
        mask = mask.to(device=weight.device, dtype=weight.dtype)
        if _is_pruned_layer(module):
            # The mask buffer is the hook's only state, so overwriting it replaces the mask.
            getattr(module, _PARAM + "_mask").copy_(mask)
        else:
            prune.custom_from_mask(module, _PARAM, mask)
    _refresh_weights(list(targets.values()))


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove every pruning reparametrisation; the pruned weights stay exactly zero.

    Afterwards ``layer.weight`` is a plain parameter again (no ``weight_orig``/``weight_mask``),
    so the model saves and loads like an unpruned one. Returns ``model``.
    """
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model
