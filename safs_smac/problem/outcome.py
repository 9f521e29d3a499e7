"""What a trial and a final evaluation report: the trial cost, :class:`FinalEvaluation`, and the
constants the problem's caches and results are versioned by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

PRUNING_SCOPES = ("layerwise", "global")
# Bump when dense training or pruning semantics change: cached checkpoints built by older code are
# then ignored instead of silently reused. 2: the dense model's initial weights are seeded.
CACHE_VERSION = 2
# Bump when what a continuation state holds or how a trial continues changes: states saved by older
# code then live under another name and are never loaded.
CONTINUATION_VERSION = 1
#: Default cap on the bytes of continuation states in a cache directory (all problems together).
CONTINUATION_MAX_BYTES = 1 << 30
# Cost of a configuration that diverged: the worst possible error, so every optimizer ranks it last.
WORST_COST = 1.0
#: What a trial's cost measures (see :func:`trial_cost`).
OBJECTIVES = ("accuracy", "error")


def trial_cost(accuracy: float, loss: float, n_val: int, objective: str = "accuracy") -> float:
    """The cost SMAC minimises for a fine-tuned configuration, in ``[0, 1)``.

    ``"error"`` is the paper's ``1 - accuracy``. At 99% sparsity most configurations of a low rung
    end at chance, where ``1 - accuracy`` ties and gives the surrogate and successive halving
    nothing to rank by; ``"accuracy"`` (the default) therefore breaks ties with the validation
    cross-entropy: ``(1 - eps) * (1 - accuracy) + eps * loss / (1 + loss)`` with
    ``eps = 0.5 / n_val``. One more correct validation image (``1 / n_val``) always outweighs any
    difference in loss, so the ranking by accuracy is unchanged wherever accuracies differ, and
    the cost stays below :data:`WORST_COST`, the cost of a diverged trial.
    """
    if objective == "error":
        return 1.0 - accuracy
    eps = 0.5 / max(int(n_val), 1)
    squashed = loss / (1.0 + loss) if math.isfinite(loss) and loss >= 0 else 1.0
    return (1.0 - eps) * (1.0 - accuracy) + eps * squashed


@dataclass
class FinalEvaluation:
    """A configuration fine-tuned at the full budget and evaluated on validation *and* test data."""

    val_accuracy: float
    test_accuracy: float
    epochs: int
    seconds: float
    diverged: bool
    reason: str | None
    operators: dict[str, str]
    alpha: dict[str, float]
    beta: dict[str, float]
    sparsity: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # The fields in order (values as they are, not copied), ``extra`` merged in at the end.
        return {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"},
            **self.extra,
        }


def _scalar_or_list(param: torch.Tensor) -> float | list[float]:
    values = param.detach().cpu().flatten().tolist()
    return values[0] if param.dim() == 0 else values


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
        else:
            out[key] = value
    return out
