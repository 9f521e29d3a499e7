"""Tests for safs_smac.training: recipe validation, the fit/evaluate loop, optimizer groups,
schedulers, augmentation, determinism, divergence handling and pruning-mask compatibility."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from safs_smac.activations import SearchableActivation
from safs_smac.data import Dataset, Split, load_dataset
from safs_smac.training import (
    ACCELERATOR_CHECK_EVERY,
    OPTIMIZERS,
    SCHEDULERS,
    EvalResult,
    FitResult,
    Recipe,
    _LossTracker,
    _on_device,
    build_optimizer,
    build_scheduler,
    crop_flip,
    evaluate,
    fit,
    parameter_groups,
    resolve_device,
    seed_everything,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset(
        "synthetic", n_train=384, n_val=128, n_test=128, num_classes=4, channels=2, size=8, seed=0
    )


class TinyCNN(nn.Module):
    """Two convs with SearchableActivation sites and a linear head."""

    def __init__(self, in_channels: int = 2, num_classes: int = 4, *, learnable: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = SearchableActivation("relu", learnable=learnable)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.act2 = SearchableActivation("relu", learnable=learnable)
        self.pool = nn.AdaptiveAvgPool2d(4)  # keeps coarse layout: classes may differ by position
        self.fc = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


def make_model(seed: int = 0, **kwargs) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(**kwargs)


FAST = Recipe(epochs=3, batch_size=64, optimizer="adam", lr=0.01, weight_decay=0.0)


# --------------------------------------------------------------------------------------------------
# Recipe
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"optimizer": "rmsprop"},
            "unknown optimizer 'rmsprop'; valid optimizers: adam, adamw, sgd",
        ),
        ({"scheduler": "linear"}, "unknown scheduler 'linear'; valid schedulers: constant, cosine"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": -1e-3}, "lr must be"),
        ({"lr": math.nan}, "lr must be"),
        ({"epochs": -1}, "epochs must be an integer >= 0"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"weight_decay": -1.0}, "weight_decay must be"),
        ({"gamma": 1.5}, r"gamma must be in \(0, 1\)"),
        ({"step_size": 0}, "step_size must be an integer >= 1"),
        ({"patience": -1}, "patience must be"),
        ({"grad_clip": 0.0}, "grad_clip must be None or"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov=True needs momentum > 0"),
    ],
)
def test_recipe_rejects_bad_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Recipe(**changes)


def test_recipe_normalises_names_and_round_trips() -> None:
    recipe = Recipe(optimizer="SGD", scheduler=" Cosine ")
    assert (recipe.optimizer, recipe.scheduler) == ("sgd", "cosine")
    assert Recipe(**recipe.to_dict()) == recipe
    changed = recipe.replace(lr=0.5, epochs=3)
    assert (changed.lr, changed.epochs, recipe.lr) == (0.5, 3, 0.01)
    with pytest.raises(ValueError, match="unknown recipe field"):
        recipe.replace(learning_rate=0.1)
    with pytest.raises(ValueError, match="lr must be"):
        recipe.replace(lr=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.lr = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------
# Devices and seeds
# --------------------------------------------------------------------------------------------------


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device(torch.device("cpu")) == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'; use 'auto', 'cpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="must be a string or torch.device"):
        resolve_device(0)  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_rejects_unavailable_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        resolve_device("cuda")


def test_seed_everything_makes_initialisation_reproducible() -> None:
    seed_everything(3)
    a = nn.Linear(4, 4).weight.detach().clone()
    seed_everything(3)
    assert torch.equal(a, nn.Linear(4, 4).weight)
    with pytest.raises(ValueError, match="seed must be"):
        seed_everything(-1)


def test_device_copies_are_cached_while_the_source_lives() -> None:
    # The "meta" device stands in for an accelerator: the copy logic is the same.
    source = torch.zeros(5, dtype=torch.uint8)
    meta = torch.device("meta")
    first = _on_device(source, meta)
    assert first.device.type == "meta"
    assert _on_device(source, meta) is first
    assert _on_device(source, CPU) is source
    from safs_smac import training

    key = (id(source), str(meta))
    assert key in training._DEVICE_COPIES
    del source, first
    gc.collect()
    assert key not in training._DEVICE_COPIES


# --------------------------------------------------------------------------------------------------
# fit / evaluate
# --------------------------------------------------------------------------------------------------


def test_fit_learns_the_synthetic_task(dataset: Dataset) -> None:
    model = make_model()
    before = evaluate(model, dataset.val, dataset, device="cpu")
    seen: list[int] = []
    result = fit(
        model,
        dataset,
        FAST.replace(epochs=4),
        device="cpu",
        on_epoch_end=lambda epoch, record: seen.append(epoch),
    )
    assert isinstance(result, FitResult)
    assert not result.diverged and result.reason is None
    assert result.epochs_run == 4 == len(result.history)
    assert seen == [1, 2, 3, 4]
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert set(result.history[0]) == {
        "epoch",
        "train_loss",
        "lr",
        "seconds",
        "val_accuracy",
        "val_loss",
    }
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert result.final_val_accuracy == result.history[-1]["val_accuracy"]
    assert result.final_val_accuracy >= 0.9 > before.accuracy
    assert not model.training  # left in eval mode
    test = evaluate(model, dataset.test, dataset, device="cpu", batch_size=50)
    assert isinstance(test, EvalResult)
    assert test.n == 128 and test.accuracy >= 0.9 and test.loss < before.loss


def test_fit_without_validation_and_with_zero_epochs(dataset: Dataset) -> None:
    model = make_model()
    result = fit(model, dataset, FAST, epochs=1, evaluate_val=False, device="cpu")
    assert result.epochs_run == 1 and result.final_val_accuracy is None
    assert "val_accuracy" not in result.history[0]

    untouched = make_model()
    reference = {k: v.clone() for k, v in untouched.state_dict().items()}
    zero = fit(untouched, dataset, FAST, epochs=0, device="cpu")
    assert zero.epochs_run == 0 and zero.history == []
    assert zero.final_val_accuracy == evaluate(untouched, dataset.val, dataset).accuracy
    assert all(torch.equal(reference[k], v) for k, v in untouched.state_dict().items())


def test_callback_errors_propagate_and_leave_eval_mode(dataset: Dataset) -> None:
    model = make_model()

    def stop(epoch: int, record: dict) -> None:
        raise RuntimeError(f"stop after epoch {epoch}")

    with pytest.raises(RuntimeError, match="stop after epoch 1"):
        fit(model, dataset, FAST, device="cpu", on_epoch_end=stop)
    assert not model.training


def test_fit_is_deterministic_for_a_seed(dataset: Dataset) -> None:
    recipe = FAST.replace(epochs=2, optimizer="sgd", lr=0.05)
    aug = dataclasses.replace(dataset, augment="crop_flip")  # exercise augmentation randomness

    def run(fit_seed: int) -> dict[str, torch.Tensor]:
        model = make_model(seed=0)
        fit(model, aug, recipe, device="cpu", seed=fit_seed)
        return model.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_restores_the_global_rng(dataset: Dataset) -> None:
    model = make_model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, dataset, FAST, epochs=1, device="cpu", evaluate_val=False, seed=7)
    assert torch.equal(torch.rand(3), expected)


class NaNAfter(nn.Module):
    """Produces NaN logits from its ``nan_at``-th training forward on (1-based)."""

    def __init__(self, nan_at: int, *, in_eval: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(2 * 8 * 8, 4)
        self.calls, self.nan_at, self.in_eval = 0, nan_at, in_eval

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
        if (self.training and self.calls >= self.nan_at) or (self.in_eval and not self.training):
            return out * math.nan
        return out


def test_nan_loss_stops_the_fit_without_raising(dataset: Dataset) -> None:
    # 384 samples / 64 = 6 steps per epoch: the 9th forward is epoch 2, step 3.
    model = NaNAfter(nan_at=9)
    result = fit(model, dataset, FAST.replace(epochs=5), device="cpu")
    assert result.diverged
    assert result.reason == "non-finite loss at epoch 2 step 3 (of 6)"
    assert result.epochs_run == 1 == len(result.history)
    assert result.final_val_accuracy is None
    assert model.calls == 9  # stopped immediately
    assert not model.training


def test_buffered_loss_tracking_finds_the_exact_step() -> None:
    steps = 3 * ACCELERATOR_CHECK_EVERY
    tracker = _LossTracker(steps, CPU, buffered=True)
    bad_at = ACCELERATOR_CHECK_EVERY + 5
    reported = None
    for step in range(steps):
        loss = torch.tensor(math.nan if step == bad_at else 1.0 + step)
        reported = tracker.record(step, loss)
        if reported is not None:
            break
    # Found at the next check, not later, with the step it really happened at.
    assert step == 2 * ACCELERATOR_CHECK_EVERY - 1 and reported == bad_at

    short = _LossTracker(4, CPU, buffered=True)
    assert [short.record(i, torch.tensor(float(i))) for i in range(4)] == [None] * 4
    assert short.mean() == pytest.approx(1.5)


def test_buffered_loss_tracking_inside_fit(dataset: Dataset, monkeypatch) -> None:
    # Force the accelerator code path on the CPU: the NaN at epoch 2 step 3 is still reported
    # exactly, and training stops at that epoch's next check (here: its last step).
    from safs_smac.training import loop

    unbuffered = fit(make_model(), dataset, FAST.replace(epochs=1), device="cpu")
    monkeypatch.setattr(
        loop,
        "_LossTracker",
        lambda steps, device, buffered: _LossTracker(steps, device, buffered=True),
    )
    buffered = fit(make_model(), dataset, FAST.replace(epochs=1), device="cpu")
    assert buffered.history[0]["train_loss"] == pytest.approx(unbuffered.history[0]["train_loss"])

    model = NaNAfter(nan_at=9)
    result = fit(model, dataset, FAST.replace(epochs=5), device="cpu")
    assert result.reason == "non-finite loss at epoch 2 step 3 (of 6)"
    assert result.epochs_run == 1 and model.calls == 12


def test_non_finite_validation_loss_counts_as_divergence(dataset: Dataset) -> None:
    result = fit(NaNAfter(nan_at=10**9, in_eval=True), dataset, FAST, device="cpu")
    assert result.diverged and result.reason == "non-finite validation loss at epoch 1"
    assert result.epochs_run == 0


def test_exploding_learning_rate_diverges(dataset: Dataset) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 4))
    recipe = Recipe(epochs=3, batch_size=64, optimizer="sgd", lr=1e30, weight_decay=0.0)
    result = fit(model, dataset, recipe, device="cpu")
    assert result.diverged and result.reason.startswith("non-finite loss at epoch 1 step")


def test_evaluate(dataset: Dataset) -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([0.0, 0.0, 5.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], 4)

    model = Constant().train()
    result = evaluate(model, dataset.val, dataset, device="cpu", batch_size=7)
    expected_acc = (dataset.val.y == 2).float().mean().item()
    expected_loss = nn.functional.cross_entropy(
        model.bias.detach().expand(len(dataset.val.y), 4), dataset.val.y
    ).item()
    assert result.n == len(dataset.val.y)
    assert result.accuracy == pytest.approx(expected_acc)
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    assert model.training  # mode restored
    empty = Split(x=dataset.val.x[:0], y=dataset.val.y[:0])
    with pytest.raises(ValueError, match="empty split"):
        evaluate(model, empty, dataset)


def test_pruning_masks_survive_fit(dataset: Dataset) -> None:
    model = make_model()
    prune.l1_unstructured(model.conv2, "weight", amount=0.9)
    prune.l1_unstructured(model.fc, "weight", amount=0.5)
    masks = {name: m.weight_mask.clone() for name, m in (("conv2", model.conv2), ("fc", model.fc))}
    result = fit(model, dataset, FAST.replace(epochs=2, optimizer="sgd", lr=0.05), device="cpu")
    assert not result.diverged
    for name, mask in masks.items():
        layer = getattr(model, name)
        assert prune.is_pruned(layer)
        assert torch.equal(layer.weight_mask, mask)
        assert torch.all(layer.weight[mask == 0] == 0)
        assert torch.any(layer.weight[mask == 1] != 0)
    assert evaluate(model, dataset.val, dataset).accuracy > 0.5


# --------------------------------------------------------------------------------------------------
# Optimizer and schedulers
# --------------------------------------------------------------------------------------------------


def test_activation_scales_get_no_weight_decay() -> None:
    model = make_model(learnable=True)
    scales = {id(p) for m in (model.act1, model.act2) for p in m.parameters()}
    assert len(scales) >= 4

    optimizer = build_optimizer(model, Recipe(weight_decay=1e-3))
    assert isinstance(optimizer, torch.optim.SGD)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"weights", "activation_scales"}
    assert {id(p) for p in groups["activation_scales"]["params"]} == scales
    assert groups["activation_scales"]["weight_decay"] == 0.0
    assert groups["weights"]["weight_decay"] == 1e-3
    assert not scales & {id(p) for p in groups["weights"]["params"]}

    decayed = parameter_groups(model, Recipe(weight_decay=1e-3, scale_weight_decay=True))
    assert [g["name"] for g in decayed] == ["weights"]
    assert len(decayed[0]["params"]) == len(list(model.parameters()))


def test_frozen_parameters_are_not_optimised() -> None:
    model = make_model(learnable=False)
    model.conv1.weight.requires_grad_(False)
    optimizer = build_optimizer(model, Recipe())
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert [g["name"] for g in optimizer.param_groups] == ["weights"]
    assert optimised == {id(p) for p in model.parameters() if p.requires_grad}
    assert id(model.conv1.weight) not in optimised and id(model.act1.alpha) not in optimised

    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(frozen, Recipe())


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers(name: str) -> None:
    expected = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    optimizer = build_optimizer(make_model(), Recipe(optimizer=name, lr=0.003))
    assert type(optimizer) is expected[name]
    assert all(g["lr"] == 0.003 for g in optimizer.param_groups)
    assert optimizer.defaults["fused"] is True  # one kernel for all parameters, CPU included


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_runs(dataset: Dataset, name: str) -> None:
    recipe = FAST.replace(
        optimizer="sgd", lr=0.1, scheduler=name, epochs=3, step_size=1, gamma=0.5, patience=0
    )
    result = fit(make_model(), dataset, recipe, device="cpu", evaluate_val=name != "plateau")
    assert not result.diverged
    lrs = [r["lr"] for r in result.history]
    if name == "constant":
        assert lrs == [0.1, 0.1, 0.1]
    elif name == "step":
        assert lrs == pytest.approx([0.1, 0.05, 0.025])
    elif name == "cosine":
        assert lrs[0] == pytest.approx(0.1) and lrs[0] > lrs[1] > lrs[2] > 0
    elif name == "onecycle":  # per-batch: the last recorded lr is the end of the annealing
        assert lrs[-1] < 1e-3
    else:  # plateau on the training loss, patience 0: lr only ever goes down
        assert lrs[0] == 0.1 and all(b <= a for a, b in itertools.pairwise(lrs))


def test_build_scheduler_types() -> None:
    optimizer = build_optimizer(make_model(), Recipe())
    sched = torch.optim.lr_scheduler
    expected = {
        "constant": type(None),
        "cosine": sched.CosineAnnealingLR,
        "step": sched.StepLR,
        "onecycle": sched.OneCycleLR,
        "plateau": sched.ReduceLROnPlateau,
    }
    for name, kind in expected.items():
        built = build_scheduler(optimizer, Recipe(scheduler=name), epochs=2, steps_per_epoch=3)
        assert type(built) is kind


def test_label_smoothing_and_grad_clip_run(dataset: Dataset) -> None:
    recipe = FAST.replace(epochs=1, label_smoothing=0.1, grad_clip=0.5)
    result = fit(make_model(), dataset, recipe, device="cpu")
    assert not result.diverged and math.isfinite(result.history[0]["train_loss"])


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------


def test_crop_flip_keeps_shape_dtype_and_is_seeded() -> None:
    x = torch.randint(1, 256, (32, 3, 6, 5), dtype=torch.uint8)
    a = crop_flip(x, torch.Generator().manual_seed(0))
    b = crop_flip(x, torch.Generator().manual_seed(0))
    c = crop_flip(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(crop_flip(x.float(), torch.Generator().manual_seed(0)), a.float())


def test_crop_flip_is_a_padded_crop_or_its_mirror() -> None:
    x = torch.randint(1, 256, (64, 2, 5, 7), dtype=torch.uint8)  # no zeros: padding is visible
    out = crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    shifted = 0
    for i in range(len(x)):
        candidates = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal(
                out[i],
                (lambda crop, f: crop.flip(-1) if f else crop)(
                    padded[i, :, dy : dy + 5, dx : dx + 7], flip
                ),
            )
        ]
        assert candidates, f"image {i} is not a crop of its padded input"
        flips += candidates[0][2]
        shifted += (candidates[0][0], candidates[0][1]) != (2, 2)
    assert 0 < flips < len(x) and shifted > len(x) // 2
    unpadded = crop_flip(x, torch.Generator().manual_seed(0), padding=0)
    assert all(torch.equal(u, v) or torch.equal(u, v.flip(-1)) for u, v in zip(unpadded, x))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        crop_flip(x[0], torch.Generator())
