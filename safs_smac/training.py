"""Fine-tuning and evaluation engine: one in-memory, seeded training loop for every model/device.

Every SAFS trial is a fine-tune of a pruned network, so this loop is the hot path of the whole
search. It is written for throughput without giving up reproducibility:

* The dataset splits live on the device as ``uint8`` (4x smaller than float). They are copied there
  once and the copy is cached for as long as the source tensor lives, so the hundreds of fits of a
  search on the same :class:`~safs_smac.data.Dataset` pay for the transfer once.
* Batches are drawn by index from a permutation made with a seeded :class:`torch.Generator`;
  normalisation and the ``crop_flip`` augmentation run per batch, vectorised, on the device.
  There is no DataLoader, no worker process and no per-sample Python.
* On CUDA the model and inputs use ``channels_last`` and the forward pass runs under bf16 autocast
  (no loss scaling needed); on CPU everything is fp32 and the result is bit-for-bit reproducible for
  a seed.
* A non-finite loss ends the fit early with ``FitResult(diverged=True)``; it never raises,
  because a diverging configuration is a legitimate (bad) outcome for the optimizer proposing it.
* Parameters of :class:`~safs_smac.activations.SearchableActivation` modules (the learned
  ``alpha`` and ``beta`` scales and the operator's own parameters) get no weight decay unless asked
  for: the reference decays them towards zero, which silently switches activations off.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from safs_smac.activations import SearchableActivation

if TYPE_CHECKING:
    from safs_smac.data import Dataset, Split

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "EvalResult",
    "FitResult",
    "FitState",
    "Recipe",
    "build_optimizer",
    "build_scheduler",
    "clear_device_cache",
    "crop_flip",
    "evaluate",
    "fit",
    "parameter_groups",
    "resolve_device",
    "seed_everything",
]

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
# --------------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device into a device.

    ``"auto"`` picks CUDA when available and the CPU otherwise. The CUDA device always carries its
    index so that device comparisons are exact.

    Raises
    ------
    ValueError
        If the device is unknown or not available on this machine.
    """
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cpu")
        try:
            resolved = torch.device(text)
        except RuntimeError:
            raise ValueError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
            ) from None
    elif isinstance(device, torch.device):
        resolved = device
    else:
        raise ValueError(
            f"device must be a string or torch.device, got {type(device).__name__}; "
            "use 'auto', 'cpu' or 'cuda'"
        )

    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(resolved)!r} requested but CUDA is not available "
                f"(torch {torch.__version__}); use device='cpu' or device='auto'"
            )
        index = torch.cuda.current_device() if resolved.index is None else resolved.index
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"device 'cuda:{index}' requested but only {count} CUDA device(s) exist; "
                f"use an index in 0..{count - 1}"
            )
        return torch.device("cuda", index)
    if resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available; use device='cpu'")
        return torch.device("mps")
    raise ValueError(f"unsupported device {str(resolved)!r}; use 'auto', 'cpu' or 'cuda'")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all CUDA devices).

    :func:`fit` does not need this (it seeds its own generators and restores the global torch RNG
    afterwards); use it before building a model so that its initialisation is reproducible.
    """
    _check_int("seed", seed, minimum=0)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32, got {seed}; pass a smaller seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# (id of the source tensor, device) -> (weak reference to the source tensor, copy on the device).
# The weak reference's callback drops the entry as soon as the source tensor is garbage collected,
# so the device copy lives exactly as long as the Dataset it came from.
_DEVICE_COPIES: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}


def _on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return ``tensor`` on ``device``, copying it at most once per (tensor, device)."""
    if tensor.device == device:
        return tensor
    key = (id(tensor), str(device))
    hit = _DEVICE_COPIES.get(key)
    if hit is not None and hit[0]() is tensor:
        return hit[1]
    copy = tensor.to(device).contiguous()
    source = weakref.ref(tensor, lambda _ref, key=key: _DEVICE_COPIES.pop(key, None))
    _DEVICE_COPIES[key] = (source, copy)
    return copy


def clear_device_cache() -> None:
    """Drop every cached device copy of dataset splits (frees accelerator memory)."""
    _DEVICE_COPIES.clear()


class _Normalizer:
    """``(x / 255 - mean) / std`` for a ``uint8`` batch, fused into one multiply-add."""

    def __init__(self, dataset: Dataset, device: torch.device, channels_last: bool) -> None:
        mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(device)
        self.shift = (-mean / std).to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x.to(dtype=torch.float32, memory_format=self.memory_format)
        return out.mul_(self.scale).add_(self.shift)


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, for a whole batch at once.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied
    to every image independently, but done with one ``gather`` on the device. Apply it to raw
    pixels (before normalisation) so the padding is black, as in the usual CIFAR recipe.

    Parameters
    ----------
    x
        Batch ``(N, C, H, W)`` of any dtype; the result has the same shape, dtype and device.
    generator
        Source of randomness; must live on ``x.device``.
    padding
        Pixels of zero padding on each side, i.e. the maximal shift.
    """
    if x.dim() != 4:
        raise ValueError(f"crop_flip expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    width = w + 2 * padding
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=device)
    flip = torch.randint(0, 2, (n, 1, 1), generator=generator, device=device).bool()
    rows = top + torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    cols = left + torch.where(flip, (w - 1) - cols, cols)
    index = (rows * width + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


# --------------------------------------------------------------------------------------------------
# Optimizer and scheduler
# --------------------------------------------------------------------------------------------------


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``model`` into optimizer parameter groups.

    Group ``"weights"`` gets ``recipe.weight_decay``; group ``"activation_scales"`` holds the
    parameters of every :class:`SearchableActivation` (``alpha``, ``beta`` and the operator's own
    parameters) and gets weight decay 0 unless ``recipe.scale_weight_decay``. Frozen parameters
    (``requires_grad=False``) are left out; empty groups are omitted.
    """
    scale_ids = {
        id(p)
        for module in model.modules()
        if isinstance(module, SearchableActivation)
        for p in module.parameters()
    }
    weights: list[nn.Parameter] = []
    scales: list[nn.Parameter] = []
    for p in model.parameters():  # deduplicates shared parameters
        if not p.requires_grad:
            continue
        in_scales = id(p) in scale_ids and not recipe.scale_weight_decay
        (scales if in_scales else weights).append(p)
    groups = []
    if weights:
        groups.append({"params": weights, "weight_decay": recipe.weight_decay, "name": "weights"})
    if scales:
        groups.append({"params": scales, "weight_decay": 0.0, "name": "activation_scales"})
    return groups


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The optimizer of ``recipe`` over :func:`parameter_groups` of ``model``.

    Raises
    ------
    ValueError
        If the model has no trainable parameter.
    """
    groups = parameter_groups(model, recipe)
    if not groups:
        raise ValueError(
            "model has no trainable parameters (all have requires_grad=False); "
            "unfreeze some parameters before fitting"
        )
    # The fused kernels update every parameter in one pass: 2-8x faster optimizer steps than the
    # default per-parameter loop, on CPU as well as on CUDA, and numerically equivalent.
    fused = _fused_supported(p for group in groups for p in group["params"])
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov, fused=fused
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr, fused=fused)
    return torch.optim.AdamW(groups, lr=recipe.lr, fused=fused)


def _fused_supported(params: Iterable[torch.Tensor]) -> bool | None:
    """``True`` when the fused optimizer kernels apply, else ``None`` (torch's default choice)."""
    devices = set()
    for p in params:
        if not p.is_floating_point() or p.is_sparse:
            return None
        devices.add(p.device.type)
    return True if devices and devices <= {"cpu", "cuda"} and len(devices) == 1 else None


def build_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, *, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The learning-rate scheduler of ``recipe``; ``None`` for ``constant``.

    :func:`fit` steps ``onecycle`` once per batch (``epochs * steps_per_epoch`` steps in total),
    ``plateau`` once per epoch with a loss and every other scheduler once per epoch.
    """
    _check_int("epochs", epochs, minimum=0)
    _check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    sched = torch.optim.lr_scheduler
    if recipe.scheduler == "constant":
        return None
    if recipe.scheduler == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if recipe.scheduler == "step":
        return sched.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    if recipe.scheduler == "plateau":
        return sched.ReduceLROnPlateau(
            optimizer, mode="min", factor=recipe.gamma, patience=recipe.patience
        )
    # onecycle: keep the recipe's momentum instead of cycling it, so that "momentum" means the
    # same thing for every scheduler.
    return sched.OneCycleLR(
        optimizer,
        max_lr=recipe.lr,
        total_steps=max(epochs * steps_per_epoch, 1),
        cycle_momentum=False,
    )


# --------------------------------------------------------------------------------------------------
# fit / evaluate
# --------------------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    dataset: Dataset,
    recipe: Recipe,
    *,
    epochs: int | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    evaluate_val: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    horizon: int | None = None,
    resume: FitState | None = None,
    keep_state: bool = False,
) -> FitResult:
    """Fine-tune ``model`` in place on ``dataset.train`` with ``recipe``.

    The model is moved to ``device`` and stays there; it is left in eval mode. Pruning masks of
    :mod:`torch.nn.utils.prune` keep applying (the optimizer updates ``weight_orig``; the mask is
    re-applied in every forward).

    Parameters
    ----------
    model
        Classifier mapping ``(N, C, H, W)`` float inputs to ``(N, num_classes)`` logits.
    dataset
        Data and its normalisation; ``dataset.augment == "crop_flip"`` turns on augmentation.
    recipe
        Hyperparameters.
    epochs
        Overrides ``recipe.epochs`` (a multi-fidelity budget): the epochs the model has been
        trained for when the fit ends, counting those of ``resume``.
    device
        See :func:`resolve_device`.
    seed
        Seeds batch order, augmentation and any randomness inside the model (dropout). The global
        torch RNG is restored afterwards. Same seed, same initial weights, CPU: identical result.
    evaluate_val
        Evaluate on ``dataset.val`` after every epoch (skipped when the split is empty).
    on_epoch_end
        Called as ``on_epoch_end(epoch, record)`` after every epoch (1-based) with the history
        record ``{"epoch", "train_loss", "lr", "seconds", ["val_accuracy", "val_loss"]}``.
    horizon
        Epochs the learning-rate schedule spans (``cosine`` anneals to 0 and ``onecycle`` ends
        there); default: ``epochs``. With ``horizon`` fixed to the maximum budget, a fit of ``b``
        epochs is exactly the first ``b`` epochs of the fit at the maximum budget, which is what
        makes :attr:`FitResult.state` continuable. Must be ``>= epochs``.
    resume
        Continue from this state (taken from an earlier :attr:`FitResult.state` of the same model,
        data, recipe, seed and horizon) instead of from the model's weights: its weights are
        loaded into ``model`` and only epochs ``resume.epochs + 1 .. epochs`` run.
    keep_state
        Return the state at the end of the fit in :attr:`FitResult.state` (``None`` after a
        divergence).

    Returns
    -------
    FitResult
        With ``diverged=True`` and a reason when a loss became NaN or infinite; never raises for
        that.
    """
    n_epochs = recipe.epochs if epochs is None else epochs
    _check_int("epochs", n_epochs, minimum=0)
    _check_int("seed", seed, minimum=0)
    span = n_epochs if horizon is None else horizon
    _check_int("horizon", span, minimum=n_epochs)
    first_epoch = 1
    if resume is not None:
        if resume.seed != seed or resume.horizon != span or resume.epochs > n_epochs:
            raise ValueError(
                f"cannot continue a state of {resume.epochs} epochs (seed {resume.seed}, horizon "
                f"{resume.horizon}) as a fit of {n_epochs} epochs (seed {seed}, horizon {span}); "
                "continue with the state's seed and horizon and at least its epochs"
            )
        first_epoch = resume.epochs + 1
    start = time.perf_counter()
    dev = resolve_device(device)
    train_x = _on_device(dataset.train.x, dev)
    train_y = _on_device(dataset.train.y, dev)
    n_train = int(train_y.shape[0])
    steps = _steps_per_epoch(n_train, recipe.batch_size)
    use_val = evaluate_val and int(dataset.val.y.shape[0]) > 0

    _to_device(model, dev)
    if resume is not None:
        # Loaded into the existing tensors, so the optimizer built next holds the live parameters.
        model.load_state_dict(resume.model)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, epochs=span, steps_per_epoch=steps)
    on_plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    per_epoch = scheduler is not None and not on_plateau and not _steps_per_batch(scheduler)
    runner = _EpochRunner(model, optimizer, scheduler, recipe, dataset, dev, seed)
    order_gen = torch.Generator().manual_seed(seed)
    if resume is not None:
        # The optimizer's state dict also restores every group's learning rate (and OneCycle's
        # bookkeeping in the groups), so it goes after the scheduler's constructor changed them.
        optimizer.load_state_dict(resume.optimizer)
        if scheduler is not None and resume.scheduler is not None:
            scheduler.load_state_dict(resume.scheduler)
        order_gen.set_state(resume.order_rng)
        runner.augment_gen.set_state(resume.augment_rng)  # a CPU tensor for every device
    history: list[dict[str, float]] = []
    reason: str | None = None
    state: FitState | None = None

    with _training_context(dev, seed, resume):
        try:
            for epoch in range(first_epoch, n_epochs + 1):
                order = torch.randperm(n_train, generator=order_gen).to(dev, non_blocking=True)
                train_loss, lr, bad = runner.run(train_x, train_y, order, steps)
                if bad is not None:
                    reason = f"non-finite loss at epoch {epoch} step {bad + 1} (of {steps})"
                    break
                record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
                if use_val:
                    val = evaluate(model, dataset.val, dataset, device=dev)
                    if not math.isfinite(val.loss):
                        reason = f"non-finite validation loss at epoch {epoch}"
                        break
                    record["val_accuracy"] = val.accuracy
                    record["val_loss"] = val.loss
                if on_plateau:
                    scheduler.step(record["val_loss"] if use_val else record["train_loss"])
                elif per_epoch:
                    scheduler.step()
                record["seconds"] = time.perf_counter() - start
                history.append(record)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, dict(record))
            if keep_state and reason is None:
                # Inside the context: the global generator's state is this fit's, not the caller's.
                state = FitState(
                    epochs=n_epochs,
                    horizon=span,
                    seed=seed,
                    model=_cpu_copy(model.state_dict()),
                    optimizer=_cpu_copy(optimizer.state_dict()),
                    scheduler=None if scheduler is None else _cpu_copy(scheduler.state_dict()),
                    order_rng=order_gen.get_state(),
                    augment_rng=runner.augment_gen.get_state().cpu(),
                    torch_rng=torch.get_rng_state(),
                    cuda_rng=torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                )
        finally:
            model.eval()  # also when a callback raises

    final_val: float | None = None
    if reason is None and use_val:
        if history:
            final_val = history[-1]["val_accuracy"]
        else:  # no epoch ran: report the starting point, e.g. a pruned net without fine-tuning
            final_val = evaluate(model, dataset.val, dataset, device=dev).accuracy
    return FitResult(
        epochs_run=len(history),
        seconds=time.perf_counter() - start,
        diverged=reason is not None,
        reason=reason,
        history=history,
        final_val_accuracy=final_val,
        start_epoch=first_epoch - 1,
        state=state,
    )


def evaluate(
    model: nn.Module,
    split: Split,
    dataset: Dataset,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 1024,
) -> EvalResult:
    """Top-1 accuracy and mean cross-entropy of ``model`` on ``split`` (normalised as ``dataset``).

    Runs in eval mode under :func:`torch.no_grad` and restores the model's train/eval mode. The
    model is moved to ``device``. ``no_grad`` rather than ``inference_mode`` because pruned layers
    cache their masked weight as a module attribute in a forward hook, and an inference tensor
    left there would break a later ``make_permanent`` or backward outside inference mode.
    """
    _check_int("batch_size", batch_size, minimum=1)
    n = int(split.y.shape[0])
    if n == 0:
        raise ValueError("cannot evaluate on an empty split; pass a split with at least one sample")
    dev = resolve_device(device)
    accelerated = dev.type == "cuda"
    x_all = _on_device(split.x, dev)
    y_all = _on_device(split.y, dev)
    normalize = _Normalizer(dataset, dev, channels_last=accelerated)
    _to_device(model, dev)

    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float32, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        with torch.no_grad():
            for begin in range(0, n, batch_size):
                y = y_all[begin : begin + batch_size]
                with _autocast(dev):
                    logits = model(normalize(x_all[begin : begin + batch_size]))
                logits = logits.float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(dim=1) == y).sum()
    finally:
        model.train(was_training)
    return EvalResult(accuracy=correct.item() / n, loss=loss_sum.item() / n, n=n)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


class _EpochRunner:
    """The per-step work of :func:`fit`: one model, optimizer and normalisation, bound once."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        recipe: Recipe,
        dataset: Dataset,
        device: torch.device,
        seed: int,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.batch_scheduler = scheduler if _steps_per_batch(scheduler) else None
        self.batch_size = recipe.batch_size
        self.grad_clip = recipe.grad_clip
        self.trainable = [p for group in optimizer.param_groups for p in group["params"]]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.normalize = _Normalizer(dataset, device, channels_last=device.type == "cuda")
        self.augment = _augmenter(dataset.augment)
        self.augment_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.device = device

    def run(
        self, x_all: torch.Tensor, y_all: torch.Tensor, order: torch.Tensor, steps: int
    ) -> tuple[float, float, int | None]:
        """Train one epoch over ``order``; return (mean loss, last lr, first non-finite step)."""
        self.model.train()
        losses = _LossTracker(steps, self.device, buffered=self.device.type != "cpu")
        lr = self.optimizer.param_groups[0]["lr"]
        for step in range(steps):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]
            x = x_all.index_select(0, index)
            if self.augment is not None:
                x = self.augment(x, self.augment_gen)
            with _autocast(self.device):
                loss = self.criterion(self.model(self.normalize(x)), y_all.index_select(0, index))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.trainable, self.grad_clip)
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses, for the history
            self.optimizer.step()
            if self.batch_scheduler is not None:
                self.batch_scheduler.step()
            bad = losses.record(step, loss)
            if bad is not None:
                return math.nan, lr, bad
        return losses.mean(), lr, None


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {key: _cpu_copy(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(value) for value in obj)
    return copy.deepcopy(obj)


def _steps_per_batch(scheduler: object) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per epoch. A trailing batch of one sample is dropped (BatchNorm cannot train on it);
    the permutation changes every epoch, so no sample is systematically left out."""
    if n == 0:
        raise ValueError("the training split is empty; pass a dataset with training samples")
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or full == 0 else 0)


def _augmenter(name: str | None) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    if name is None:
        return None
    if name == "crop_flip":
        return lambda x, gen: crop_flip(x, gen, _AUGMENT_PADDING)
    raise ValueError(f"unknown augmentation {name!r}; valid augmentations: crop_flip, None")


def _to_device(model: nn.Module, device: torch.device) -> None:
    model.to(device)
    if device.type == "cuda":
        # Only 4-D tensors (conv weights) change layout; channels_last feeds tensor cores directly.
        model.to(memory_format=torch.channels_last)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _training_context(
    device: torch.device, seed: int, resume: FitState | None = None
) -> Iterator[None]:
    """Seed the global torch RNG (dropout) for this fit only, or restore it from ``resume``, and
    tune cuDNN for fixed shapes."""
    cuda_devices = [device.index] if device.type == "cuda" else []
    benchmark = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if resume is not None:
            torch.set_rng_state(resume.torch_rng)
            if device.type == "cuda" and resume.cuda_rng is not None:
                torch.cuda.set_rng_state(resume.cuda_rng, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = benchmark


class _LossTracker:
    """Per-step training losses of one epoch, with cheap detection of the first non-finite one.

    Unbuffered (CPU, where reading a loss costs nothing), every loss is read and checked at once.
    Buffered (accelerators), the losses stay in a device buffer and are inspected once every
    :data:`ACCELERATOR_CHECK_EVERY` steps and at the last step, so the host never waits for the
    device in between (see the constant for the trade-off).
    """

    def __init__(self, steps: int, device: torch.device, *, buffered: bool) -> None:
        self.steps = steps
        self.total = 0.0
        self.count = 0
        self.buffer = torch.empty(steps, device=device) if buffered else None
        self.checked = 0

    def record(self, step: int, loss: torch.Tensor) -> int | None:
        """Store the loss of ``step`` (0-based); return the first non-finite step seen, if any."""
        self.count = step + 1
        if self.buffer is None:
            value = loss.item()
            if not math.isfinite(value):
                return step
            self.total += value
            return None
        self.buffer[step] = loss.detach()
        if step + 1 - self.checked < ACCELERATOR_CHECK_EVERY and step + 1 < self.steps:
            return None
        finite = torch.isfinite(self.buffer[self.checked : step + 1])
        if bool(finite.all()):  # the one host-device synchronisation per check
            self.checked = step + 1
            return None
        return self.checked + int((~finite).nonzero()[0, 0])

    def mean(self) -> float:
        """Mean loss of the recorded steps."""
        if self.buffer is None:
            return self.total / self.count
        return self.buffer[: self.count].mean().item()


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}; pass an integer >= {minimum}"
        )
