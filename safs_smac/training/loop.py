"""The training loop (:func:`fit`) and :func:`evaluate`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from safs_smac.data import Dataset, Split


from safs_smac.training.device import (
    _augmenter,
    _autocast,
    _Normalizer,
    _on_device,
    _to_device,
    _training_context,
    resolve_device,
)
from safs_smac.training.optim import build_optimizer, build_scheduler
from safs_smac.training.recipe import (
    ACCELERATOR_CHECK_EVERY,
    EvalResult,
    FitResult,
    FitState,
    Recipe,
    _check_int,
)

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
