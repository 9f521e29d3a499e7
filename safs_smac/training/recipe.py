"""The settings and results of a fine-tune: :class:`Recipe`, :class:`FitResult`, :class:`FitState`,
:class:`EvalResult`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULERS: tuple[str, ...] = ("constant", "cosine", "onecycle", "plateau", "step")

# On an accelerator, reading the loss back to the host every step would stall the launch queue, so
# per-step losses are written into a device buffer and checked for NaN/inf once every this many
# steps (and at the end of every epoch). A non-finite loss is still reported with its exact step,
# and training stops at most this many steps late, within the same epoch. On CPU there is no
# queue to stall and the check runs after every step.
ACCELERATOR_CHECK_EVERY = 32

_AUGMENT_PADDING = 4


# --------------------------------------------------------------------------------------------------
# Recipe and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Fine-tuning hyperparameters: everything :func:`fit` needs besides the model and the data.

    Attributes
    ----------
    epochs, batch_size
        Length of the fine-tune and samples per step.
    optimizer
        One of :data:`OPTIMIZERS`. ``momentum`` and ``nesterov`` apply to ``sgd`` only; Adam and
        AdamW use their default betas.
    lr, momentum, nesterov, weight_decay
        Optimizer settings; ``lr`` is the peak learning rate for ``onecycle``.
    scheduler
        One of :data:`SCHEDULERS`: ``constant``; ``cosine`` (annealed to 0 over the epochs of the
        fit); ``step`` (multiply by ``gamma`` every ``step_size`` epochs); ``onecycle`` (per batch,
        peak ``lr``); ``plateau`` (multiply by ``gamma`` after ``patience`` epochs without a lower
        validation loss, or training loss when no validation split is evaluated).
    label_smoothing
        Cross-entropy label smoothing in ``[0, 1)``.
    scale_weight_decay
        Also decay the parameters of ``SearchableActivation`` modules (off by default).
    grad_clip
        Clip the global gradient norm to this value; ``None`` disables clipping.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    scheduler: str = "constant"
    step_size: int = 20
    gamma: float = 0.5
    patience: int = 10
    label_smoothing: float = 0.0
    scale_weight_decay: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        # Accept "SGD"/"Adam" as written in the paper; store the canonical lowercase name.
        for name, valid in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS)):
            value = getattr(self, name)
            canonical = value.strip().lower() if isinstance(value, str) else value
            if canonical not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid {name}s: {', '.join(valid)}")
            object.__setattr__(self, name, canonical)
        _check_int("epochs", self.epochs, minimum=0)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("step_size", self.step_size, minimum=1)
        _check_int("patience", self.patience, minimum=0)
        if not (_is_real(self.lr) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}; pass e.g. lr=0.01")
        if not (_is_real(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(
                f"momentum must be in [0, 1), got {self.momentum!r}; e.g. momentum=0.9"
            )
        if not (_is_real(self.weight_decay) and 0.0 <= self.weight_decay < math.inf):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}; "
                "pass 0.0 to disable it"
            )
        if not (_is_real(self.gamma) and 0.0 < self.gamma < 1.0):
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma!r}; e.g. gamma=0.5")
        if not (_is_real(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0):
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}; "
                "pass 0.0 to disable it"
            )
        if self.grad_clip is not None and not (
            _is_real(self.grad_clip) and 0.0 < self.grad_clip < math.inf
        ):
            raise ValueError(
                f"grad_clip must be None or a finite number > 0, got {self.grad_clip!r}; "
                "pass None to disable clipping"
            )
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9)")

    def replace(self, **changes: Any) -> Recipe:
        """Return a copy with ``changes`` applied (validated like a new recipe)."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ValueError(
                f"unknown recipe field(s) {', '.join(unknown)}; valid fields: "
                f"{', '.join(sorted(valid))}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields; ``Recipe(**recipe.to_dict()) == recipe``."""
        return dataclasses.asdict(self)


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    ``epochs_run`` counts the epochs this call completed (an epoch cut short by divergence is not
    counted), so it equals ``len(history)``; a fit continued from a :class:`FitState` of
    ``start_epoch`` epochs did not run those again. ``state`` is the state to continue from
    (``fit(..., keep_state=True)`` only, ``None`` after a divergence). ``final_val_accuracy`` is
    the validation accuracy after the *last* epoch (never the best epoch: picking the maximum over
    epochs is optimistic), ``None`` when no validation split was evaluated or the fit diverged.
    After a divergence the model's weights are undefined (possibly non-finite).
    """

    epochs_run: int
    seconds: float
    diverged: bool
    reason: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    final_val_accuracy: float | None = None
    start_epoch: int = 0
    state: FitState | None = None


@dataclass
class FitState:
    """Everything :func:`fit` needs to continue a fine-tune exactly where it stopped.

    Continuing from the state after ``epochs`` epochs gives the same weights, bit for bit on CPU,
    as one uninterrupted fit of the same length: the state holds the model's ``state_dict``
    (weights, pruning masks, activation scales, BatchNorm statistics), the optimizer's and the
    scheduler's state dicts, and the states of the three random generators a fit draws from (batch
    order, augmentation, and the global torch generator that dropout uses). All tensors are on the
    CPU, so a state pickles and moves between processes.

    Attributes
    ----------
    epochs
        Completed epochs.
    horizon
        Epochs the learning-rate schedule spans; a continuation must use the same.
    seed
        The fit's seed (a continuation must pass the same one).
    """

    epochs: int
    horizon: int
    seed: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    order_rng: torch.Tensor
    augment_rng: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (what the on-disk cache stores)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitState:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass
class EvalResult:
    """Top-1 ``accuracy`` as a fraction in [0, 1], mean cross-entropy ``loss``, ``n`` samples."""

    accuracy: float
    loss: float
    n: int


# --------------------------------------------------------------------------------------------------
# Devices, seeds and data on the device


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}; pass an integer >= {minimum}"
        )
