"""Batched fine-tuning: ``M`` members of one architecture trained and evaluated as one model.

A search proposes many configurations of the *same* pruned network. On a small network each trial
leaves most of the hardware idle, so :func:`fit_batched` fine-tunes ``M`` of them at once as one
model whose batch holds every member's samples, member-major (``(M * N, ...)``: member ``m`` owns
rows ``m * N .. (m + 1) * N``). Every ``Linear`` becomes one batched matrix product over stacked
weights, every ``Conv2d`` and ``BatchNorm`` one call per member on its block of the batch (its own
weights, batch statistics and running averages), and everything without parameters (pooling,
flatten, residual additions, plain activations) runs once on the whole batch. The model's own
``forward`` code runs unchanged; one forward and one backward pass serve all members.

Each member keeps what makes it a separate trial:

* its weights and its **pruning masks** (``torch.nn.utils.prune``'s ``weight_orig`` and
  ``weight_mask``): the effective weight ``weight * mask`` is formed in the forward pass, exactly
  as the pruning hook does, so pruned weights get no gradient and stay zero;
* its **operators**: a site whose operator is the same for every member computes it once on the
  whole batch; a site where members differ runs each member's block through its own operator;
  operators with learnable parameters (ACON-C, SReLU, ...) get one value per member;
* its **scales** ``alpha``/``beta`` (learnable or frozen per member, ``ft:learn_scales``);
* its **data order and augmentation** (its own seed), **loss** (its own label smoothing) and
  **fine-tuning optimizer**: SGD (momentum, Nesterov), Adam and AdamW are one vectorised update with
  per-member learning rate, weight decay and momentum, so members with different ``ft:optimizer``
  share a batch; its **learning-rate schedule** comes from torch's own scheduler of its recipe,
  stepped exactly when :func:`~safs_smac.training.fit` steps it; gradient clipping is per member.

What members must share: the architecture (module types and shapes), the batch size and the number
of epochs and schedule horizon of the call. A member whose loss becomes non-finite stops, as in
:func:`~safs_smac.training.fit` (``diverged=True`` with the same reason), and the others go on.

Results equal :func:`~safs_smac.training.fit` followed by :func:`~safs_smac.training.evaluate`
for each member up to floating-point rounding (batched matrix products and the vectorised
optimizer round differently); bit-for-bit equality is not promised. Dropout draws other masks
than a sequential fit (one generator for the batch). On CUDA the forward pass runs under bf16
autocast as in ``fit``, without ``channels_last``; the CUDA path has not run on a GPU yet.

A model that cannot be batched (a module with parameters other than ``Conv2d``, ``Linear``,
``BatchNorm`` and ``SearchableActivation``; a ``forward`` that mixes samples of the batch, or
reshapes it by a fixed batch size, which a probe forward pass detects) raises
:class:`BatchingUnsupported`, so callers can fall back to sequential trials.

Imports torch, :mod:`safs_smac.activations` and the package's ``device``, ``loop``, ``optim`` and
``recipe``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from safs_smac.activations import SearchableActivation, make_operator
from safs_smac.training.device import (
    _augmenter,
    _autocast,
    _Normalizer,
    _on_device,
    resolve_device,
)
from safs_smac.training.loop import _steps_per_batch, _steps_per_epoch
from safs_smac.training.optim import build_scheduler
from safs_smac.training.recipe import EvalResult, FitResult, Recipe, _check_int

if TYPE_CHECKING:
    from safs_smac.data import Dataset, Split

__all__ = ["BatchingUnsupported", "MemberResult", "fit_batched"]

# torch's defaults for Adam/AdamW (the recipes never change them).
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
# Probe forward pass that checks the batched model against its members: relative tolerance on
# the logits (float rounding differs; a forward that mixes members differs by O(1)).
_PROBE_RTOL = 1e-3


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
# The batched modules
# --------------------------------------------------------------------------------------------------


class _Batched(nn.Module):
    """A layer holding the stacked parameters of ``members`` layers; dim 0 of each is the member."""

    members: int

    def trainable_params(self) -> list[tuple[nn.Parameter, str, torch.Tensor | None]]:
        """``(parameter, group, per-member trainable mask or None for all)`` of this layer."""
        return [(p, "weights", None) for p in self.parameters(recurse=False) if p.requires_grad]

    def write_back(self, layers: Sequence[nn.Module]) -> None:
        raise NotImplementedError


def _weight_and_mask(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The trained weight of a layer and its pruning mask (``None`` when not pruned)."""
    if hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask"):
        return layer.weight_orig, layer.weight_mask
    return layer.weight, None


def _stack_masks(masks: list[torch.Tensor | None], weights: list[torch.Tensor]) -> torch.Tensor:
    """Stacked masks; a member without a mask gets ones (the layer is pruned in another one)."""
    return torch.stack(
        [
            (torch.ones_like(w) if m is None else m.detach().to(w.dtype))
            for m, w in zip(masks, weights, strict=True)
        ]
    )


def _same(layers: Sequence[nn.Module], attrs: Sequence[str]) -> None:
    first = layers[0]
    for attr in attrs:
        value = getattr(first, attr)
        if any(getattr(layer, attr) != value for layer in layers[1:]):
            raise BatchingUnsupported(
                f"{type(first).__name__} layers differ in {attr} between members"
            )


def _requires_grad(params: Sequence[torch.Tensor]) -> bool:
    flags = {bool(p.requires_grad) for p in params}
    if len(flags) > 1:
        raise BatchingUnsupported("a parameter is trainable in some members and frozen in others")
    return flags.pop()


class _BatchedConv2d(_Batched):
    """Member ``m``'s convolution on its block of the batch (weights stacked ``(M, O, ...)``).

    One convolution per member rather than one grouped convolution: on the CPU, torch's grouped
    convolution (forward and above all backward) is several times slower than the same work as
    separate convolutions, and the per-member calls cost what the sequential trials' do.
    """

    def __init__(self, layers: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        _same(layers, ("in_channels", "out_channels", "kernel_size", "stride", "padding"))
        _same(layers, ("dilation", "groups", "padding_mode"))
        first = layers[0]
        if first.padding_mode != "zeros":
            raise BatchingUnsupported(f"Conv2d padding_mode {first.padding_mode!r}")
        self.members = len(layers)
        self.stride, self.padding = first.stride, first.padding
        self.dilation, self.groups = first.dilation, first.groups
        _stack_weight(self, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = _effective_weight(self).unbind(0)
        biases = self.bias.unbind(0) if self.bias is not None else [None] * self.members
        outs = [
            F.conv2d(chunk, w, b, self.stride, self.padding, self.dilation, self.groups)
            for chunk, w, b in zip(x.chunk(self.members), weights, biases, strict=True)
        ]
        return torch.cat(outs)

    def write_back(self, layers: Sequence[nn.Module]) -> None:
        _write_weight(self, layers)


def _stack_weight(batched: _Batched, layers: Sequence[nn.Module]) -> None:
    """Give ``batched`` the stacked ``weight`` (and ``mask``, ``bias``) of ``layers``."""
    weights, masks = zip(*(_weight_and_mask(layer) for layer in layers), strict=True)
    batched.weight = nn.Parameter(
        torch.stack([w.detach() for w in weights]), requires_grad=_requires_grad(weights)
    )
    batched.pruned = any(m is not None for m in masks)
    mask = _stack_masks(list(masks), list(weights)) if batched.pruned else None
    batched.register_buffer("mask", mask)
    batched.bias = None
    if layers[0].bias is not None:
        biases = [layer.bias for layer in layers]
        batched.bias = nn.Parameter(
            torch.stack([b.detach() for b in biases]), requires_grad=_requires_grad(biases)
        )


def _effective_weight(batched: _Batched) -> torch.Tensor:
    # What torch.nn.utils.prune's hook computes: pruned weights are zero and get no gradient.
    return batched.weight * batched.mask if batched.pruned else batched.weight


@torch.no_grad()
def _write_weight(batched: _Batched, layers: Sequence[nn.Module]) -> None:
    for m, layer in enumerate(layers):
        weight, _ = _weight_and_mask(layer)
        weight.copy_(batched.weight[m])
        if batched.bias is not None:
            layer.bias.copy_(batched.bias[m])


class _BatchedLinear(_Batched):
    """All members' linear layers as one batched matrix product."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        _same(layers, ("in_features", "out_features"))
        self.members = len(layers)
        self.in_features, self.out_features = layers[0].in_features, layers[0].out_features
        _stack_weight(self, layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise BatchingUnsupported(
                f"Linear on a {x.dim()}-D input; batched members support (N, features) inputs"
            )
        xs = x.view(self.members, -1, self.in_features)  # (M, N, in)
        weight_t = _effective_weight(self).transpose(1, 2)  # (M, in, out)
        if self.bias is None:
            out = torch.bmm(xs, weight_t)
        else:
            out = torch.baddbmm(self.bias.unsqueeze(1), xs, weight_t)
        return out.view(-1, self.out_features)

    def write_back(self, layers: Sequence[nn.Module]) -> None:
        _write_weight(self, layers)


class _BatchedBatchNorm(_Batched):
    """Member ``m``'s BatchNorm on its block of the batch: its own statistics and averages."""

    def __init__(self, layers: Sequence[nn.modules.batchnorm._BatchNorm]) -> None:
        super().__init__()
        _same(layers, ("num_features", "eps", "momentum", "affine", "track_running_stats"))
        first = layers[0]
        self.members = len(layers)
        self.eps, self.momentum = first.eps, first.momentum
        self.track_running_stats = first.track_running_stats
        self.weight = self.bias = None
        if first.affine:
            self.weight = nn.Parameter(
                torch.stack([layer.weight.detach() for layer in layers]),
                requires_grad=_requires_grad([layer.weight for layer in layers]),
            )
            self.bias = nn.Parameter(
                torch.stack([layer.bias.detach() for layer in layers]),
                requires_grad=_requires_grad([layer.bias for layer in layers]),
            )
        if first.track_running_stats:
            self.register_buffer("running_mean", torch.stack([lay.running_mean for lay in layers]))
            self.register_buffer("running_var", torch.stack([lay.running_var for lay in layers]))
            self.register_buffer("num_batches_tracked", first.num_batches_tracked.clone())
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.BatchNorm's own logic, once per member; the running statistics are rows of the
        # stacked buffers, updated in place through the views.
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or self.running_mean is None
        keep_stats = not self.training or self.track_running_stats
        none = [None] * self.members
        means = (
            self.running_mean.unbind(0) if keep_stats and self.running_mean is not None else none
        )
        variances = (
            self.running_var.unbind(0) if keep_stats and self.running_var is not None else none
        )
        weights = self.weight.unbind(0) if self.weight is not None else none
        biases = self.bias.unbind(0) if self.bias is not None else none
        outs = [
            F.batch_norm(chunk, mean, var, w, b, use_batch, factor, self.eps)
            for chunk, mean, var, w, b in zip(
                x.chunk(self.members), means, variances, weights, biases, strict=True
            )
        ]
        return torch.cat(outs)

    @torch.no_grad()
    def write_back(self, layers: Sequence[nn.Module]) -> None:
        for m, layer in enumerate(layers):
            if self.weight is not None:
                layer.weight.copy_(self.weight[m])
                layer.bias.copy_(self.bias[m])
            if self.running_mean is not None:
                layer.running_mean.copy_(self.running_mean[m])
                layer.running_var.copy_(self.running_var[m])
                layer.num_batches_tracked.copy_(self.num_batches_tracked)


class _BatchedActivation(_Batched):
    """``alpha_m * op_m(beta_m * x_m)`` for every member ``m`` (its own block of the batch)."""

    def __init__(self, layers: Sequence[SearchableActivation]) -> None:
        super().__init__()
        _same(layers, ("num_channels",))
        self.members = len(layers)
        self.num_channels = layers[0].num_channels
        names = [layer.op_name for layer in layers]
        self.op_names = list(dict.fromkeys(names))
        self.member_op = [self.op_names.index(name) for name in names]
        self.ops = nn.ModuleList(make_operator(op) for op in self.op_names)
        self.alpha = nn.Parameter(torch.stack([layer.alpha.detach() for layer in layers]))
        self.beta = nn.Parameter(torch.stack([layer.beta.detach() for layer in layers]))
        trainable = [bool(layer.alpha.requires_grad) for layer in layers]
        self.register_buffer("trainable", torch.tensor(trainable), persistent=False)
        # One value per member of every parameter of every distinct operator; members that use
        # another operator keep the published initial value, unused.
        self.op_params = nn.ParameterDict()
        for k, op in enumerate(self.ops):
            for pname, init in op.named_parameters():
                values = [
                    dict(layer.op.named_parameters())[pname].detach().clone()
                    if self.member_op[m] == k
                    else init.detach().clone()
                    for m, layer in enumerate(layers)
                ]
                self.op_params[f"{k}_{pname}"] = nn.Parameter(torch.stack(values))
        self.any_trainable = any(trainable)
        self.requires_grad_(self.any_trainable)
        for op in self.ops:  # the stacked copies are the ones trained
            op.requires_grad_(False)
        # Frozen unit scales: alpha * op(beta * x) is op(x) exactly; skip the multiplications.
        self.unit = not self.any_trainable and all(
            bool((layer.alpha == 1).all()) and bool((layer.beta == 1).all()) for layer in layers
        )

    def trainable_params(self) -> list[tuple[nn.Parameter, str, torch.Tensor | None]]:
        if not self.any_trainable:
            return []
        params = [self.alpha, self.beta, *self.op_params.values()]
        return [(p, "scales", self.trainable) for p in params]

    def _op_params(self, k: int) -> dict[str, torch.Tensor]:
        prefix = f"{k}_"
        return {
            name[len(prefix) :]: value
            for name, value in self.op_params.items()
            if name.startswith(prefix)
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit and len(self.ops) == 1 and not self.op_params:
            return self.ops[0](x)  # the same parameter-free operator everywhere: one call
        # Otherwise member by member: each block goes through beta, its operator and alpha while
        # it is in the cache (on the CPU, whole-batch multiplications are memory-bound), and
        # unbind/stack keep the backward to one copy.
        scale_view = (
            (-1,) if self.num_channels is None else (1, self.num_channels) + (1,) * (x.dim() - 2)
        )
        per_op = [
            {name: value.unbind(0) for name, value in self._op_params(k).items()}
            for k in range(len(self.ops))
        ]
        alphas, betas = self.alpha.unbind(0), self.beta.unbind(0)
        outs = []
        for m, chunk in enumerate(x.view(self.members, -1, *x.shape[1:]).unbind(0)):
            k = self.member_op[m]
            op = self.ops[k]
            params = {name: values[m] for name, values in per_op[k].items()}
            if not self.unit:
                chunk = betas[m].view(scale_view) * chunk
            out = functional_call(op, params, (chunk,)) if params else op(chunk)
            if not self.unit:
                out = alphas[m].view(scale_view) * out
            outs.append(out)
        return torch.stack(outs).view(x.shape)

    @torch.no_grad()
    def write_back(self, layers: Sequence[nn.Module]) -> None:
        for m, layer in enumerate(layers):
            layer.set_scales(alpha=self.alpha[m], beta=self.beta[m])
            k = self.member_op[m]
            for pname, param in layer.op.named_parameters():
                param.copy_(self.op_params[f"{k}_{pname}"][m])


def _convert(layers: Sequence[nn.Module], name: str) -> nn.Module | None:
    """The batched layer of ``layers`` (one per member), ``None`` to keep the module as it is."""
    first = layers[0]
    kinds = {type(layer) for layer in layers}
    if all(isinstance(layer, SearchableActivation) for layer in layers):
        return _BatchedActivation(layers)
    if len(kinds) > 1:
        raise BatchingUnsupported(
            f"module {name!r} is {', '.join(sorted(k.__name__ for k in kinds))} "
            "in different members"
        )
    if type(first) is nn.Conv2d:
        return _BatchedConv2d(layers)
    if type(first) is nn.Linear:
        return _BatchedLinear(layers)
    if type(first) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return _BatchedBatchNorm(layers)
    own = list(first.named_parameters(recurse=False)) + [
        b for b in first.named_buffers(recurse=False) if b[1] is not None
    ]
    if own:
        raise BatchingUnsupported(
            f"module {name!r} ({type(first).__name__}) has parameters or buffers that batched "
            "trials do not support (only Conv2d, Linear, BatchNorm and SearchableActivation)"
        )
    if any(first._forward_pre_hooks) or any(first._forward_hooks):
        raise BatchingUnsupported(f"module {name!r} has forward hooks")
    return None


class _BatchedNetwork:
    """The members' network as one model, with the map back to each member's layers."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.members = len(models)
        names = [[n for n, _ in model.named_modules()] for model in models]
        if any(n != names[0] for n in names[1:]):
            raise BatchingUnsupported("the members' models have different module structures")
        self.model = copy.deepcopy(models[0])
        tables = [dict(model.named_modules()) for model in models]
        self.layers: list[tuple[_Batched, list[nn.Module]]] = []
        replaced: list[str] = []
        for name in names[0]:
            if any(name.startswith(prefix + ".") for prefix in replaced):
                continue  # inside a module that was replaced as a whole
            layers = [table[name] for table in tables]
            batched = _convert(layers, name or type(models[0]).__name__)
            if batched is None:
                continue
            if not name:
                raise BatchingUnsupported("the model itself is a single layer")
            parent_name, _, attr = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, attr, batched)
            self.layers.append((batched, layers))
            replaced.append(name)
        self.model.train(models[0].training)

    def params(self) -> list[tuple[nn.Parameter, str, torch.Tensor | None]]:
        return [entry for batched, _ in self.layers for entry in batched.trainable_params()]

    def write_back(self) -> None:
        for batched, layers in self.layers:
            batched.write_back(layers)

    @torch.no_grad()
    def check(self, models: Sequence[nn.Module], example: torch.Tensor) -> None:
        """Run the batched model and every member on ``example``; they must agree."""
        modes = [model.training for model in models]
        batched_mode = self.model.training
        try:
            for model in models:
                model.eval()
            self.model.eval()
            expected = torch.stack([model(example) for model in models])
            got = self.model(_replicate(example, self.members))
            got = got.view(expected.shape)
        except BatchingUnsupported:
            raise
        except RuntimeError as error:
            raise BatchingUnsupported(
                f"the model's forward does not run on batched members ({error})"
            ) from None
        finally:
            for model, mode in zip(models, modes, strict=True):
                model.train(mode)
            self.model.train(batched_mode)
        scale = expected.abs().amax(dim=(1, 2), keepdim=True).clamp(min=1e-6)
        error = ((got - expected).abs() / scale).amax()
        if not bool(error <= _PROBE_RTOL):
            raise BatchingUnsupported(
                "the batched model disagrees with its members on a probe input (relative error "
                f"{float(error):.2g}); its forward mixes channels of different members, e.g. a "
                "concatenation along channels"
            )


def _replicate(x: torch.Tensor, members: int) -> torch.Tensor:
    """``(N, ...)`` -> ``(M * N, ...)``: the same inputs for every member."""
    return x.repeat(members, *([1] * (x.dim() - 1)))


# --------------------------------------------------------------------------------------------------
# The per-member optimizer
# --------------------------------------------------------------------------------------------------


class _MemberOptimizer:
    """SGD (momentum, Nesterov), Adam and AdamW with per-member hyperparameters, vectorised.

    Follows torch's single-tensor update rules (weight decay added to the gradient for SGD and
    Adam, decoupled for AdamW; Adam's bias corrections), on every parameter viewed as
    ``(M, -1)``. Rows of members that are frozen for a parameter (scales with
    ``learn_scales=False``) or have diverged are left untouched.
    """

    def __init__(
        self,
        params: list[tuple[nn.Parameter, str, torch.Tensor | None]],
        recipes: Sequence[Recipe],
        device: torch.device,
    ) -> None:
        self.params = params
        self.members = len(recipes)

        def column(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1)

        kinds = [r.optimizer for r in recipes]
        self.any_sgd = "sgd" in kinds
        self.any_adam = any(k in ("adam", "adamw") for k in kinds)
        self.is_sgd = torch.tensor([k == "sgd" for k in kinds], device=device).view(-1, 1)
        decay = [r.weight_decay for r in recipes]
        scale_decay = [r.weight_decay if r.scale_weight_decay else 0.0 for r in recipes]
        coupled = [k != "adamw" for k in kinds]
        self.decay = {
            group: (
                column([d if c else 0.0 for d, c in zip(values, coupled, strict=True)]),
                column([0.0 if c else d for d, c in zip(values, coupled, strict=True)]),
            )
            for group, values in (("weights", decay), ("scales", scale_decay))
        }
        self.any_decoupled = any(not c and d > 0 for c, d in zip(coupled, decay, strict=True))
        self.momentum = column([r.momentum if r.optimizer == "sgd" else 0.0 for r in recipes])
        self.nesterov = torch.tensor(
            [r.optimizer == "sgd" and r.nesterov for r in recipes], device=device
        ).view(-1, 1)
        self.any_nesterov = bool(self.nesterov.any())
        self.step_count = 0
        self.state: list[dict[str, torch.Tensor]] = []
        for p, _, _ in params:
            rows = p.detach().view(self.members, -1)
            entry = {}
            if self.any_sgd:
                entry["momentum"] = torch.zeros_like(rows)
            if self.any_adam:
                entry["exp_avg"] = torch.zeros_like(rows)
                entry["exp_avg_sq"] = torch.zeros_like(rows)
            self.state.append(entry)

    def zero_grad(self) -> None:
        for p, _, _ in self.params:
            p.grad = None

    @torch.no_grad()
    def clip(self, max_norms: Sequence[float | None], alive: torch.Tensor) -> None:
        """Per-member ``clip_grad_norm_`` over the parameters each member trains."""
        if all(value is None for value in max_norms):
            return
        total = None
        for p, _, trainable in self.params:
            if p.grad is None:
                continue
            squares = p.grad.view(self.members, -1).square().sum(dim=1)
            if trainable is not None:
                squares = squares * trainable
            total = squares if total is None else total + squares
        if total is None:
            return
        norm = total.sqrt()
        limit = torch.tensor(
            [math.inf if v is None else float(v) for v in max_norms], device=norm.device
        )
        coef = (limit / (norm + 1e-6)).clamp(max=1.0).view(-1, 1)
        coef = torch.where(limit.view(-1, 1).isinf(), torch.ones_like(coef), coef)
        for p, _, _ in self.params:
            if p.grad is not None:
                p.grad.view(self.members, -1).mul_(coef)

    @torch.no_grad()
    def step(self, lr: torch.Tensor, alive: torch.Tensor) -> None:
        """One update with learning rates ``lr`` ``(M, 1)``; members not ``alive`` are skipped."""
        self.step_count += 1
        t = self.step_count
        beta1, beta2 = _ADAM_BETAS
        bias1 = 1.0 - beta1**t
        bias2_sqrt = math.sqrt(1.0 - beta2**t)
        for (p, group, trainable), state in zip(self.params, self.state, strict=True):
            if p.grad is None:
                continue
            rows = p.view(self.members, -1)
            grad = p.grad.view(self.members, -1)
            coupled, decoupled = self.decay[group]
            grad = grad + coupled * rows
            base = rows * (1.0 - lr * decoupled) if self.any_decoupled else rows
            new = None
            if self.any_sgd:
                buf = state["momentum"]
                buf.mul_(self.momentum).add_(grad)
                direction = buf
                if self.any_nesterov:
                    direction = torch.where(self.nesterov, grad + self.momentum * buf, buf)
                new = base - lr * direction
            if self.any_adam:
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(_ADAM_EPS)
                adam = base - (lr / bias1) * exp_avg / denom
                new = adam if new is None else torch.where(self.is_sgd, new, adam)
            keep = alive.view(-1, 1)
            if trainable is not None:
                keep = keep & trainable.view(-1, 1)
            rows.copy_(torch.where(keep, new, rows))


class _Schedules:
    """Each member's learning rate, from torch's scheduler of its recipe on a stand-in optimizer."""

    def __init__(self, recipes: Sequence[Recipe], horizon: int, steps: int) -> None:
        self.optimizers = []
        self.schedulers = []
        for recipe in recipes:
            stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
            self.optimizers.append(stand_in)
            self.schedulers.append(
                build_scheduler(stand_in, recipe, epochs=horizon, steps_per_epoch=steps)
            )

    def lrs(self) -> list[float]:
        return [opt.param_groups[0]["lr"] for opt in self.optimizers]

    def after_step(self) -> None:
        for opt, scheduler in zip(self.optimizers, self.schedulers, strict=True):
            if _steps_per_batch(scheduler):
                opt.step()  # no gradient: nothing changes; keeps torch's step-order check quiet
                scheduler.step()

    def after_epoch(self, losses: Sequence[float]) -> None:
        for opt, scheduler, loss in zip(self.optimizers, self.schedulers, losses, strict=True):
            if scheduler is None or _steps_per_batch(scheduler):
                continue
            opt.step()
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(loss)
            else:
                scheduler.step()


def _member_losses(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy per member with its own label smoothing; logits ``(M, B, K)``."""
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.mean(dim=-1)
    per_sample = (1.0 - smoothing) * nll + smoothing * smooth
    return per_sample.mean(dim=1)


# --------------------------------------------------------------------------------------------------
# fit_batched
# --------------------------------------------------------------------------------------------------


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

    Member ``m`` trains as ``fit(models[m], dataset, recipes[m], seed=seeds[m], epochs=epochs,
    horizon=horizon, evaluate_val=False)`` would, up to floating-point rounding (see the module
    docstring for what members may and may not differ in). The trained weights are copied back
    into ``models`` (which stay on their device, in eval mode), so sparsity, diagnostics and tests
    read them as after :func:`~safs_smac.training.fit`.

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

    net = _BatchedNetwork(models)
    example = torch.randn(
        (2, *dataset.train.x.shape[1:]),
        generator=torch.Generator().manual_seed(0),
        device=_model_device(models[0]),
    )
    net.check(models, example)
    model = net.model.to(dev)
    optimizer = _MemberOptimizer(net.params(), recipes, dev)

    train_x = _on_device(dataset.train.x, dev)
    train_y = _on_device(dataset.train.y, dev)
    n_train = int(train_y.shape[0])
    steps = _steps_per_epoch(n_train, batch_size)
    schedules = _Schedules(recipes, span, steps)
    smoothing = torch.tensor(
        [r.label_smoothing for r in recipes], dtype=torch.float32, device=dev
    ).view(-1, 1)
    normalize = _Normalizer(dataset, dev, channels_last=False)
    augment = _augmenter(dataset.augment)
    order_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    augment_gens = [torch.Generator(device=dev).manual_seed(int(s) + 1) for s in seeds]
    clip_norms = [r.grad_clip for r in recipes]

    alive = [True] * members
    alive_mask = torch.ones(members, dtype=torch.bool, device=dev)
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
                lr_used = schedules.lrs()
                for step in range(steps):
                    index = orders[:, step * batch_size : (step + 1) * batch_size].reshape(-1)
                    x = train_x.index_select(0, index)
                    if augment is not None:
                        x = torch.cat(
                            [
                                augment(chunk, gen)
                                for chunk, gen in zip(x.chunk(members), augment_gens, strict=True)
                            ]
                        )
                    y = train_y.index_select(0, index).view(members, -1)
                    with _autocast(dev):
                        logits = model(normalize(x))
                    logits = logits.float().view(members, y.shape[1], -1)
                    losses = _member_losses(logits, y, smoothing)
                    total = torch.where(alive_mask, losses, torch.zeros_like(losses)).sum()
                    optimizer.zero_grad()
                    total.backward()
                    optimizer.clip(clip_norms, alive_mask)
                    lr_used = schedules.lrs()
                    lr = torch.tensor(lr_used, dtype=torch.float32, device=dev).view(-1, 1)
                    optimizer.step(lr, alive_mask)
                    schedules.after_step()
                    values = losses.tolist()
                    for m, value in enumerate(values):
                        if not alive[m]:
                            continue
                        if not math.isfinite(value):
                            alive[m] = False
                            reasons[m] = (
                                f"non-finite loss at epoch {epoch} step {step + 1} (of {steps})"
                            )
                        else:
                            totals[m] += value
                    if not all(alive):
                        alive_mask = torch.tensor(alive, device=dev)
                means = [total / steps for total in totals]
                schedules.after_epoch(means)
                elapsed = time.perf_counter() - start
                for m in range(members):
                    if alive[m]:
                        histories[m].append(
                            {
                                "epoch": epoch,
                                "train_loss": means[m],
                                "lr": lr_used[m],
                                "seconds": elapsed,
                            }
                        )
        finally:
            model.eval()
    vals: list[EvalResult | None] = [None] * members
    if evaluate_val and int(dataset.val.y.shape[0]) > 0 and any(alive):
        evaluated = _evaluate_members(model, members, dataset.val, dataset, dev, eval_batch_size)
        vals = [result if alive[m] else None for m, result in enumerate(evaluated)]
    net.write_back()
    for member in models:
        member.eval()
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
    normalize = _Normalizer(dataset, device, channels_last=False)
    loss_sum = torch.zeros(members, dtype=torch.float32, device=device)
    correct = torch.zeros(members, dtype=torch.int64, device=device)
    model.eval()
    for begin in range(0, n, batch_size):
        y = y_all[begin : begin + batch_size]
        with _autocast(device):
            logits = model(_replicate(normalize(x_all[begin : begin + batch_size]), members))
        logits = logits.float().view(members, y.shape[0], -1)  # (M, B, K)
        targets = y.unsqueeze(0).expand(members, -1)
        loss_sum += (
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            )
            .view(members, -1)
            .sum(dim=1)
        )
        correct += (logits.argmax(dim=-1) == targets).sum(dim=1)
    return [
        EvalResult(accuracy=int(c) / n, loss=float(s) / n, n=n)
        for c, s in zip(correct.tolist(), loss_sum.tolist(), strict=True)
    ]


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
