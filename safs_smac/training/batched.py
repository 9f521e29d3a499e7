"""Batched fine-tuning: ``M`` members of one architecture trained and evaluated as one model.

A search proposes many configurations of the *same* pruned network, and on an accelerator a small
network's trial leaves the device mostly idle, so :func:`fit_batched` fine-tunes ``M`` of them at
once through one model whose batch holds every member's samples, member-major (``(M * N, ...)``:
member ``m`` owns rows ``m * N .. (m + 1) * N``). The members' own modules do the work: each
top-most submodule that holds parameters, buffers or hooks anywhere inside it (a ``Conv2d`` with
its pruning hook, a site's ``SearchableActivation``, a ResNet stage, VGG's ``features``) runs once
per member, as that member's module on that member's block, and the stateless submodules between
them (LeNet's pooling and flatten) run once on the whole batch, as do the data pipeline, the loss
bookkeeping and the backward pass. The model's own ``forward`` code runs unchanged.

Each member therefore keeps everything that makes it a separate trial, by construction: its
weights and **pruning masks** (its layers' ``torch.nn.utils.prune`` hooks apply them, so pruned
weights stay zero), its **operators, scales** and operator parameters (its own
``SearchableActivation`` modules), its **data order and augmentation** (its own seed), its **loss**
(its own label smoothing) and its own **torch optimizer and scheduler**, built by
:func:`~safs_smac.training.build_optimizer` and :func:`~safs_smac.training.build_scheduler` from
its recipe, so members may differ in ``ft:optimizer``, learning rate, momentum, weight decay,
schedule and ``ft:learn_scales``; gradient clipping is per member. What members must share: the
architecture, the batch size, the epochs and the schedule horizon of the call.

Because every parametrised computation is the member's own module on its own samples, and every
shared one acts sample by sample, a member's result equals :func:`~safs_smac.training.fit`
followed by :func:`~safs_smac.training.evaluate` with the same seed, bit for bit on the CPU (tested;
cuDNN on CUDA does not promise it). The exception is dropout: one generator draws the masks of the
whole batch. A member whose loss becomes non-finite stops (``diverged=True`` with ``fit``'s
reason) while the others go on. On CUDA the forward pass runs under bf16 autocast as in ``fit``,
without ``channels_last``; that path has not run on a GPU yet.

Where it pays: not on a CPU, measured (``benchmarks/batched.py``, ``benchmarks/README.md``):
a LeNet-5 step is compute-bound, the members' convolutions, pooling and operators are the same
work batched or not, and 8 batched trials ran at 0.94-1.04x the throughput of 8 sequential ones on
2 cores (ResNet-18 at CIFAR shape: 0.6x, the batch's activations multiply the memory traffic).
Stacking the members' weights instead (``benchmarks/stacked_step.py``) gains at most 1.2-1.4x on
that CPU with grouped ``channels_last`` convolutions, and only with one operator and one learning
rate for all members; ``torch.func.vmap`` loses (0.6x). It is meant for accelerators, where a
small network leaves the device idle between kernel launches; that has not been measured.

A model whose ``forward`` mixes the samples of a batch, or reshapes it by a fixed batch size,
cannot be batched: a probe forward pass compares the batched model with its members and raises
:class:`BatchingUnsupported`, so callers can fall back to sequential trials.

Imports torch and the package's ``device``, ``loop``, ``optim`` and ``recipe``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from safs_smac.training.device import (
    _augmenter,
    _autocast,
    _Normalizer,
    _on_device,
    _to_device,
    resolve_device,
)
from safs_smac.training.loop import _steps_per_batch, _steps_per_epoch
from safs_smac.training.optim import build_optimizer, build_scheduler
from safs_smac.training.recipe import EvalResult, FitResult, Recipe, _check_int

if TYPE_CHECKING:
    from safs_smac.data import Dataset, Split

__all__ = ["BatchingUnsupported", "MemberResult", "fit_batched"]

# Probe forward pass that checks the batched model against its members: relative tolerance on the
# logits (the batched model computes the same operations; a forward that mixes members is off by
# O(1)).
_PROBE_RTOL = 1e-4


class BatchingUnsupported(ValueError):
    """The members cannot be trained as one batched model; train them one by one instead."""


@dataclass
class MemberResult:
    """Outcome of one member of :func:`fit_batched`.

    Attributes
    ----------
    fit
        As :func:`~safs_smac.training.fit` reports it (``seconds`` is the whole batch's time).
    val
        Validation accuracy and loss after the last epoch (``None`` when not evaluated or after a
        divergence).
    """

    fit: FitResult
    val: EvalResult | None


# --------------------------------------------------------------------------------------------------
# The batched model
# --------------------------------------------------------------------------------------------------


class _PerMember(nn.Module):
    """Member ``m``'s module applied to member ``m``'s block of the batch."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        members = len(self.layers)
        if not isinstance(x, torch.Tensor) or x.shape[0] % members:
            raise BatchingUnsupported(
                "a stateful module got an input that is not a batch of all members' samples"
            )
        outs = [
            layer(chunk, *args, **kwargs)
            for layer, chunk in zip(self.layers, x.chunk(members), strict=True)
        ]
        return torch.cat(outs)


def _stateful(module: nn.Module) -> bool:
    """Whether a module holds parameters or buffers of its own, or hooks (pruning's are)."""
    own = any(True for _ in module.parameters(recurse=False)) or any(
        b is not None for b in module.buffers(recurse=False)
    )
    return own or bool(module._forward_pre_hooks) or bool(module._forward_hooks)


def _batched_model(models: Sequence[nn.Module]) -> nn.Module:
    """One model over all members: their stateful modules per member, the rest shared."""
    names = [[n for n, _ in model.named_modules()] for model in models]
    if any(n != names[0] for n in names[1:]):
        raise BatchingUnsupported("the members' models have different module structures")
    tables = [dict(model.named_modules()) for model in models]
    wrapped: dict[str, _PerMember] = {}
    for name in names[0]:
        if any(name.startswith(w + ".") for w in wrapped):
            continue  # inside a module that runs per member as a whole
        layers = [table[name] for table in tables]
        differ = len({type(layer) for layer in layers}) > 1 or (
            not any(True for _ in layers[0].children())
            and len({repr(layer) for layer in layers}) > 1
        )
        # The coarsest wrapping below the root: a child holding any state runs per member as a
        # whole (a ResNet stage, VGG's features), so the batch is split and joined once around
        # it rather than around each of its layers (each join copies every activation), and the
        # stateless top-level layers between (LeNet's pooling) run once for all members.
        if differ or any(_stateful(sub) for layer in layers for sub in layer.modules()):
            if name == "":
                if _stateful(layers[0]) or differ:
                    return _PerMember(models)  # the root holds state: every member runs whole
                continue
            wrapped[name] = _PerMember(layers)
    # A structural copy of member 0 in which each stateful module is its _PerMember: the memo
    # makes deepcopy substitute them instead of copying, so the members' own modules (not
    # copies) do the work and are trained in place.
    memo: dict[int, Any] = {id(tables[0][name]): per_member for name, per_member in wrapped.items()}
    return copy.deepcopy(models[0], memo)


@torch.no_grad()
def _check_batched(model: nn.Module, models: Sequence[nn.Module], example: torch.Tensor) -> None:
    """Run the batched model on ``example`` (``M`` blocks of other inputs) and every member on its
    block; they must agree."""
    modes = [member.training for member in models]
    try:
        model.eval()
        blocks = example.chunk(len(models))
        expected = torch.stack(
            [member(block) for member, block in zip(models, blocks, strict=True)]
        )
        got = model(example).view(expected.shape)
    except BatchingUnsupported:
        raise
    except RuntimeError as error:
        raise BatchingUnsupported(
            f"the model's forward does not run on a batch of members ({error})"
        ) from None
    finally:
        for member, mode in zip(models, modes, strict=True):
            member.train(mode)
    scale = expected.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)
    error = ((got - expected).abs() / scale).amax()
    if not bool(error <= _PROBE_RTOL):
        raise BatchingUnsupported(
            "the batched model disagrees with its members on a probe input (relative error "
            f"{float(error):.2g}); its forward mixes the samples of a batch"
        )


def _replicate(x: torch.Tensor, members: int) -> torch.Tensor:
    """``(N, ...)`` -> ``(M * N, ...)``: the same inputs for every member."""
    return x.repeat(members, *([1] * (x.dim() - 1)))


def fit_batched(
    models: Sequence[nn.Module],
    dataset: Dataset,
    recipes: Sequence[Recipe],
    *,
    seeds: Sequence[int],
    epochs: int | None = None,
    horizon: int | None = None,
    device: str | torch.device = "auto",
    evaluate_val: bool = True,
    eval_batch_size: int = 1024,
) -> list[MemberResult]:
    """Fine-tune ``models`` (members of one architecture) at once as one batched model.

    Member ``m`` is trained in place exactly as ``fit(models[m], dataset, recipes[m],
    seed=seeds[m], epochs=epochs, horizon=horizon, evaluate_val=False)`` trains it (bit for bit on
    the CPU, dropout aside; see the module docstring) and left on ``device`` in eval mode.

    Parameters
    ----------
    models
        One model per member, built identically up to their weights, pruning masks and
        ``SearchableActivation`` operators and scales.
    dataset
        Training data; ``dataset.val`` is evaluated at the end when ``evaluate_val``.
    recipes
        One recipe per member; they must share ``batch_size``.
    seeds
        One seed per member (data order and augmentation, as in ``fit``).
    epochs
        Epochs of every member (default: the recipes' common ``epochs``).
    horizon
        Epochs the learning-rate schedules span (default ``epochs``), as in ``fit``.
    device
        See :func:`~safs_smac.training.resolve_device`.
    evaluate_val
        Evaluate every member on ``dataset.val`` after the last epoch (batched); no per-epoch
        validation, so a ``plateau`` schedule steps on the training loss.
    eval_batch_size
        Validation samples per forward pass (each runs through all members).

    Returns
    -------
    list[MemberResult]
        In member order.

    Raises
    ------
    BatchingUnsupported
        If the models cannot be batched (architecture, forward code or differing batch sizes).
    ValueError
        For inconsistent arguments.
    """
    members = len(models)
    if members < 1:
        raise ValueError("fit_batched needs at least one model")
    if len(recipes) != members or len(seeds) != members:
        raise ValueError(
            f"got {members} models, {len(recipes)} recipes and {len(seeds)} seeds; "
            "pass one recipe and one seed per model"
        )
    for seed in seeds:
        _check_int("seed", seed, minimum=0)
    batch_sizes = {r.batch_size for r in recipes}
    if len(batch_sizes) > 1:
        raise BatchingUnsupported(
            f"members differ in batch size ({sorted(batch_sizes)}); batch them separately"
        )
    if epochs is None:
        counts = {r.epochs for r in recipes}
        if len(counts) > 1:
            raise ValueError(f"recipes differ in epochs ({sorted(counts)}); pass epochs=...")
        epochs = counts.pop()
    _check_int("epochs", epochs, minimum=0)
    span = epochs if horizon is None else horizon
    _check_int("horizon", span, minimum=epochs)
    start = time.perf_counter()
    dev = resolve_device(device)
    batch_size = batch_sizes.pop()

    example = torch.randn(
        (2 * members, *dataset.train.x.shape[1:]),
        generator=torch.Generator().manual_seed(0),
        device=_model_device(models[0]),
    )
    model = _batched_model(models)
    _check_batched(model, models, example)
    for member in models:
        _to_device(member, dev)
    model.to(dev)

    train_x = _on_device(dataset.train.x, dev)
    train_y = _on_device(dataset.train.y, dev)
    n_train = int(train_y.shape[0])
    steps = _steps_per_epoch(n_train, batch_size)
    # Each member's own optimizer, scheduler and loss, exactly as fit builds them.
    optimizers = [build_optimizer(member, r) for member, r in zip(models, recipes, strict=True)]
    schedulers = [
        build_scheduler(opt, r, epochs=span, steps_per_epoch=steps)
        for opt, r in zip(optimizers, recipes, strict=True)
    ]
    trainable = [[p for group in opt.param_groups for p in group["params"]] for opt in optimizers]
    criteria = [nn.CrossEntropyLoss(label_smoothing=r.label_smoothing) for r in recipes]
    normalize = _Normalizer(dataset, dev, channels_last=dev.type == "cuda")
    augment = _augmenter(dataset.augment)
    order_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    augment_gens = [torch.Generator(device=dev).manual_seed(int(s) + 1) for s in seeds]

    alive = [True] * members
    reasons: list[str | None] = [None] * members
    histories: list[list[dict[str, float]]] = [[] for _ in range(members)]
    cuda_devices = [dev.index] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(seeds[0]))  # dropout: one generator for the batch
        try:
            for epoch in range(1, epochs + 1):
                if not any(alive):
                    break
                model.train()
                orders = torch.stack(
                    [torch.randperm(n_train, generator=gen) for gen in order_gens]
                ).to(dev, non_blocking=True)
                totals = [0.0] * members
                lrs = [opt.param_groups[0]["lr"] for opt in optimizers]
                for step in range(steps):
                    index = orders[:, step * batch_size : (step + 1) * batch_size]
                    x = train_x.index_select(0, index.reshape(-1))
                    if augment is not None:
                        chunks = zip(x.chunk(members), augment_gens, strict=True)
                        x = torch.cat([augment(chunk, gen) for chunk, gen in chunks])
                    y = train_y.index_select(0, index.reshape(-1)).view(members, -1)
                    with _autocast(dev):
                        logits = model(normalize(x))
                    losses = [
                        criteria[m](chunk, y[m]) for m, chunk in enumerate(logits.chunk(members))
                    ]
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    # d(sum)/d(loss_m) is exactly 1: every member gets its own loss's gradient.
                    torch.stack(
                        [loss for m, loss in enumerate(losses) if alive[m]]
                    ).sum().backward()
                    for m, opt in enumerate(optimizers):
                        if not alive[m]:
                            continue
                        if recipes[m].grad_clip is not None:
                            nn.utils.clip_grad_norm_(trainable[m], recipes[m].grad_clip)
                        lrs[m] = opt.param_groups[0]["lr"]
                        opt.step()
                        if _steps_per_batch(schedulers[m]):
                            schedulers[m].step()
                    for m, value in enumerate(torch.stack(losses).tolist()):
                        if not alive[m]:
                            continue
                        if math.isfinite(value):
                            totals[m] += value
                        else:
                            alive[m] = False
                            reasons[m] = (
                                f"non-finite loss at epoch {epoch} step {step + 1} (of {steps})"
                            )
                    if not any(alive):
                        break
                elapsed = time.perf_counter() - start
                for m, scheduler in enumerate(schedulers):
                    if not alive[m]:
                        continue
                    mean = totals[m] / steps
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(mean)  # fit steps it on the training loss without val
                    elif scheduler is not None and not _steps_per_batch(scheduler):
                        scheduler.step()
                    histories[m].append(
                        {"epoch": epoch, "train_loss": mean, "lr": lrs[m], "seconds": elapsed}
                    )
        finally:
            model.eval()
    vals: list[EvalResult | None] = [None] * members
    if evaluate_val and int(dataset.val.y.shape[0]) > 0 and any(alive):
        evaluated = _evaluate_members(model, members, dataset.val, dataset, dev, eval_batch_size)
        vals = [result if alive[m] else None for m, result in enumerate(evaluated)]
    seconds = time.perf_counter() - start
    return [
        MemberResult(
            fit=FitResult(
                epochs_run=len(histories[m]),
                seconds=seconds,
                diverged=reasons[m] is not None,
                reason=reasons[m],
                history=histories[m],
                final_val_accuracy=None if vals[m] is None else vals[m].accuracy,
            ),
            val=vals[m],
        )
        for m in range(members)
    ]


@torch.no_grad()
def _evaluate_members(
    model: nn.Module,
    members: int,
    split: Split,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
) -> list[EvalResult]:
    """:func:`~safs_smac.training.evaluate` of every member, in one pass over ``split``."""
    _check_int("batch_size", batch_size, minimum=1)
    n = int(split.y.shape[0])
    x_all = _on_device(split.x, device)
    y_all = _on_device(split.y, device)
    normalize = _Normalizer(dataset, device, channels_last=device.type == "cuda")
    loss_sums = [torch.zeros((), dtype=torch.float32, device=device) for _ in range(members)]
    corrects = [torch.zeros((), dtype=torch.int64, device=device) for _ in range(members)]
    model.eval()
    for begin in range(0, n, batch_size):
        y = y_all[begin : begin + batch_size]
        with _autocast(device):
            logits = model(_replicate(normalize(x_all[begin : begin + batch_size]), members))
        # Member by member, as evaluate sums them, so the result is the same.
        for m, chunk in enumerate(logits.float().chunk(members)):
            loss_sums[m] += F.cross_entropy(chunk, y, reduction="sum")
            corrects[m] += (chunk.argmax(dim=1) == y).sum()
    return [
        EvalResult(accuracy=c.item() / n, loss=s.item() / n, n=n)
        for c, s in zip(corrects, loss_sums, strict=True)
    ]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
