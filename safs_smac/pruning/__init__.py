"""Unstructured magnitude pruning on top of :mod:`torch.nn.utils.prune`.

Pruning reparametrises ``layer.weight`` as ``weight_orig * weight_mask`` (torch's forward pre-hook),
so masks survive fine-tuning with any optimizer: gradients, momentum and weight decay act on
``weight_orig`` while the effective weight stays exactly zero where the mask is zero.
Biases and BatchNorm parameters are never pruned.

Rate semantics
--------------
``rate`` is *absolute*: after ``magnitude_prune(model, 0.9)`` 90 % of each selected layer's weights
(layer-wise) or of all selected weights together (global) are zero, i.e. exactly
``round(rate * n)`` of them. On an already pruned model the call prunes only the *additional*
weights needed to reach that count, choosing the smallest-magnitude survivors; existing masks are
kept (pruning never revives a weight). A layer that is already sparser than ``rate`` is left as it
is. Weights that are exactly zero without being masked count as zeros: they have the smallest
magnitude and are masked first.

Checkpoints
-----------
``state_dict()`` of a pruned model holds ``<layer>.weight_orig`` and ``<layer>.weight_mask``. To
load it into a freshly built model, first give the fresh model the same reparametrisation with
``apply_masks(fresh, get_masks(pruned))`` (or with masks stored next to the checkpoint), then call
``fresh.load_state_dict(state)``. :func:`make_permanent` drops the reparametrisation altogether.

``copy.deepcopy`` works on a model straight after :func:`magnitude_prune` / :func:`apply_masks`.
After a forward pass with autograd enabled torch leaves a non-leaf ``layer.weight`` behind, which
``deepcopy`` refuses; copy weights with ``state_dict()`` (plus :func:`get_masks`) instead.
"""

from safs_smac.pruning.magnitude import (  # the private helpers serve sparse_training
    SCOPES,
    LayerSparsity,
    SparsityReport,
    _effective_weight,  # noqa: F401
    _mask_key,  # noqa: F401
    _refresh_weights,  # noqa: F401
    _select,  # noqa: F401
    apply_masks,
    get_masks,
    is_pruned,
    iterative_magnitude_prune,
    magnitude_prune,
    make_permanent,
    prunable_layers,
    sparsity_report,
)
from safs_smac.pruning.schedules import (
    PRUNING_SCHEDULES,
    SPARSE_FINETUNE,
    EpochStep,
    Finetune,
    Gradual,
    OneShot,
    PruningSchedule,
    resolve_schedule,
    schedule_key,
)

__all__ = [
    "PRUNING_SCHEDULES",
    "SCOPES",
    "SPARSE_FINETUNE",
    "EpochStep",
    "Finetune",
    "Gradual",
    "LayerSparsity",
    "OneShot",
    "PruningSchedule",
    "SparsityReport",
    "apply_masks",
    "get_masks",
    "is_pruned",
    "iterative_magnitude_prune",
    "magnitude_prune",
    "make_permanent",
    "prunable_layers",
    "resolve_schedule",
    "schedule_key",
    "sparsity_report",
]
