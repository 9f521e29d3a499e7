"""Tests for safs_smac.pruning: exact sparsity, mask persistence, checkpoints, schedules."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from safs_smac import pruning
from safs_smac.pruning import (
    apply_masks,
    get_masks,
    magnitude_prune,
    prunable_layers,
    sparsity_report,
)


def small_net(seed: int = 0) -> nn.Sequential:
    """Conv + BN + linear layers with awkward sizes so rounding matters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 7, 3),  # 189 weights
        nn.BatchNorm2d(7),
        nn.ReLU(),
        nn.Conv2d(7, 5, 3),  # 315 weights
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 13),  # 1040 weights
        nn.ReLU(),
        nn.Linear(13, 3),  # 39 weights
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Effective weights of the conv/linear layers, computed fresh from orig * mask."""
    out = {}
    for name, module in prunable_layers(model):
        if hasattr(module, "weight_orig"):
            out[name] = (module.weight_orig * module.weight_mask).detach().clone()
        else:
            out[name] = module.weight.detach().clone()
    return out


def zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


X = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------ layer selection


def test_prunable_layers_in_order_and_skips():
    model = small_net()
    names = [name for name, _ in prunable_layers(model)]
    assert names == ["0", "3", "6", "8"]
    assert [n for n, _ in prunable_layers(model, skip_first=True)] == ["3", "6", "8"]
    assert [n for n, _ in prunable_layers(model, skip_last=True)] == ["0", "3", "6"]
    assert [n for n, _ in prunable_layers(model, layer_types=(nn.Linear,))] == ["6", "8"]


def test_skip_first_and_last_stay_dense():
    model = small_net()
    layers = prunable_layers(model, skip_first=True, skip_last=True)
    magnitude_prune(model, 0.9, layers=layers)
    w = weights(model)
    assert zeros(w["0"]) == 0 and zeros(w["8"]) == 0
    assert zeros(w["3"]) == round(0.9 * 315)
    assert not hasattr(model[0], "weight_orig")


# ------------------------------------------------------------------ exact sparsity


# At 0.99+ the 39-weight layer is emptied, which rightly warns; here only the counts matter.
COLLAPSE_OK = pytest.mark.filterwarnings("ignore:pruning left no non-zero weight")


@COLLAPSE_OK
@pytest.mark.parametrize("rate", [0.0, 0.1, 1 / 3, 0.5, 0.9, 0.99, 0.999])
def test_layerwise_sparsity_is_exact(rate):
    model = small_net()
    report = magnitude_prune(model, rate, scope="layerwise")
    for name, w in weights(model).items():
        assert zeros(w) == round(rate * w.numel()), name
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["6"].zeros == round(rate * 1040)
    # biases and BatchNorm are never pruned
    assert zeros(model[0].bias) == 0 and zeros(model[1].weight) == 0
    assert "bias_orig" not in dict(model[0].named_parameters())


@COLLAPSE_OK
@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.0, 0.999), fan_in=st.integers(1, 40), fan_out=st.integers(1, 9))
def test_layerwise_exact_for_any_rate_and_shape(rate, fan_in, fan_out):
    layer = nn.Linear(fan_in, fan_out)
    magnitude_prune(nn.Sequential(layer), rate)
    assert zeros(layer.weight) == round(rate * fan_in * fan_out)


@COLLAPSE_OK
@pytest.mark.parametrize("rate", [0.0, 0.37, 0.9, 0.99])
def test_global_sparsity_is_exact_and_uses_one_threshold(rate):
    model = small_net()
    report = magnitude_prune(model, rate, scope="global")
    w = weights(model)
    total = sum(t.numel() for t in w.values())
    assert report.total == total
    assert report.zeros == round(rate * total)
    flat = torch.cat([t.flatten() for t in w.values()])
    dense = torch.cat([t.flatten() for t in weights(small_net()).values()])
    pruned, kept = dense[flat == 0].abs(), dense[flat != 0].abs()
    if rate > 0:
        assert pruned.max() <= kept.min()


def test_global_differs_from_layerwise_per_layer():
    model = small_net()
    with torch.no_grad():
        model[6].weight.mul_(3.0)  # bigger weights: global pruning should spare this layer
    magnitude_prune(model, 0.5, scope="global")
    w = weights(model)
    assert zeros(w["6"]) < round(0.5 * 1040)
    assert sum(zeros(t) for t in w.values()) == round(0.5 * sum(t.numel() for t in w.values()))


def test_warns_when_a_layer_is_emptied():
    model = small_net()
    with torch.no_grad():
        model[6].weight.mul_(1e-3)  # tiny weights: global pruning takes all of them first
    with pytest.warns(RuntimeWarning, match="no non-zero weight in layer.*6"):
        magnitude_prune(model, 0.7, scope="global")
    assert zeros(weights(model)["6"]) == 1040


# ------------------------------------------------------------------ absolute semantics


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_repruning_is_absolute_and_keeps_old_masks(scope):
    model = small_net()
    magnitude_prune(model, 0.5, scope=scope)
    first = get_masks(model)
    report = magnitude_prune(model, 0.8, scope=scope)
    second = get_masks(model)
    for key in first:
        # nothing pruned before comes back
        assert not (second[key] & ~first[key]).any()
    if scope == "layerwise":
        for name, w in weights(model).items():
            assert zeros(w) == round(0.8 * w.numel()), name
    else:
        assert report.zeros == round(0.8 * report.total)


def test_lower_rate_never_revives_weights():
    model = small_net()
    magnitude_prune(model, 0.9)
    before = get_masks(model)
    magnitude_prune(model, 0.5)
    after = get_masks(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_repruning_ranks_current_weights_not_stale_ones():
    layer = nn.Linear(10, 1, bias=False)
    model = nn.Sequential(layer)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 11.0))
    magnitude_prune(model, 0.2)  # masks 1.0 and 2.0
    with torch.no_grad():  # as an optimizer step would, without a forward pass
        layer.weight_orig.copy_(torch.arange(10.0, 0.0, -1.0))
    magnitude_prune(model, 0.4)
    effective = (layer.weight_orig * layer.weight_mask).flatten()
    # the stale layer.weight would rank positions 2 and 3 lowest; the current weights rank 8 and 9
    assert effective.tolist() == [0, 0, 8, 7, 6, 5, 4, 3, 0, 0]


def test_unmasked_exact_zeros_count_as_zeros():
    layer = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.0, 0.0, 0.0, 1, 2, 3, 4, 5, 6, 7]))
    magnitude_prune(nn.Sequential(layer), 0.5)
    assert zeros(layer.weight) == 5
    assert layer.weight.flatten()[5:].ne(0).all()


# ------------------------------------------------------------------ masks survive training


def test_masks_survive_sgd_with_momentum_and_weight_decay():
    model = small_net()
    magnitude_prune(model, 0.9)
    masks = get_masks(model)
    before = weights(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    target = torch.randint(0, 3, (4,), generator=torch.Generator().manual_seed(2))
    for _ in range(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), target).backward()
        opt.step()
    after = weights(model)
    for key, mask in get_masks(model).items():
        assert torch.equal(mask, masks[key])
        name = key.removesuffix(".weight")
        assert (after[name][~mask] == 0).all()
        assert zeros(after[name]) == round(0.9 * after[name].numel())
    # the surviving weights did train
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert sparsity_report(model).zeros == sum(zeros(t) for t in after.values())


# ------------------------------------------------------------------ checkpoints


def test_apply_masks_reproduces_effective_weights_from_dense_copy():
    dense_state = small_net().state_dict()
    pruned = small_net()
    magnitude_prune(pruned, 0.8, scope="global")
    fresh = small_net(seed=123)
    fresh.load_state_dict(dense_state)
    apply_masks(fresh, get_masks(pruned))
    expected, got = weights(pruned), weights(fresh)
    assert all(torch.equal(expected[n], got[n]) for n in expected)
    pruned.eval(), fresh.eval()
    assert torch.equal(pruned(X), fresh(X))


def test_checkpoint_round_trip_through_state_dict():
    pruned = small_net()
    magnitude_prune(pruned, 0.95)
    state, masks = pruned.state_dict(), get_masks(pruned)
    assert all(m.dtype == torch.bool and m.device.type == "cpu" for m in masks.values())
    assert set(masks) == {"0.weight", "3.weight", "6.weight", "8.weight"}
    fresh = small_net(seed=7)
    apply_masks(fresh, masks)
    fresh.load_state_dict(state)
    pruned.eval(), fresh.eval()
    assert torch.equal(pruned(X), fresh(X))
    assert sparsity_report(fresh).to_dict() == sparsity_report(pruned).to_dict()


def test_apply_masks_replaces_existing_mask():
    model = small_net()
    magnitude_prune(model, 0.9)
    ones = {k: torch.ones_like(v) for k, v in get_masks(model).items()}
    apply_masks(model, ones)
    assert sparsity_report(model).zeros == 0
    assert all(m.all() for m in get_masks(model).values())


def test_apply_masks_rejects_mismatched_keys_and_shapes():
    masks = get_masks(magnitude_prune_copy(0.5))
    with pytest.raises(ValueError, match=r"unexpected keys \['9.weight'\]"):
        apply_masks(small_net(), {**masks, "9.weight": torch.ones(3)})
    with pytest.raises(ValueError, match=r"unexpected keys \['0.bias'\]"):
        apply_masks(small_net(), {"0.bias": torch.ones(7)})
    pruned = magnitude_prune_copy(0.5)
    partial = {k: v for k, v in masks.items() if k != "6.weight"}
    with pytest.raises(ValueError, match=r"missing keys \['6.weight'\]"):
        apply_masks(pruned, partial)
    apply_masks(pruned, partial, strict=False)  # explicitly allowed
    with pytest.raises(ValueError, match="shape"):
        apply_masks(small_net(), {"0.weight": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="0/1"):
        apply_masks(small_net(), {"8.weight": torch.full((3, 13), 0.5)})


def magnitude_prune_copy(rate: float) -> nn.Module:
    model = small_net()
    magnitude_prune(model, rate)
    return model


# ------------------------------------------------------------------ iterative


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_iterative_schedule_reaches_target_and_calls_back(scope):
    model = small_net()
    seen: list[tuple[int, float]] = []

    def between_rounds(m: nn.Module, r: int) -> None:
        assert m is model
        seen.append((r, sparsity_report(m).sparsity))

    report = pruning.iterative_magnitude_prune(
        model, 0.9, rounds=3, scope=scope, between_rounds=between_rounds
    )
    assert [r for r, _ in seen] == [1, 2]
    for r, sparsity in seen:
        assert sparsity == pytest.approx(1 - 0.1 ** (r / 3), abs=2e-3)
    if scope == "layerwise":
        for name, w in weights(model).items():
            assert zeros(w) == round(0.9 * w.numel()), name
    assert report.zeros == round(0.9 * report.total)


def test_iterative_single_round_equals_one_shot():
    a, b = small_net(), small_net()

    def never(model: nn.Module, round_: int) -> None:
        pytest.fail("called")

    pruning.iterative_magnitude_prune(a, 0.7, rounds=1, between_rounds=never)
    magnitude_prune(b, 0.7)
    assert all(torch.equal(get_masks(a)[k], get_masks(b)[k]) for k in get_masks(b))


# ------------------------------------------------------------------ permanence and reports


def test_make_permanent_keeps_zeros_and_removes_reparametrisation():
    model = small_net()
    magnitude_prune(model, 0.9)
    before = sparsity_report(model)
    assert pruning.is_pruned(model)
    assert pruning.make_permanent(model) is model
    assert not pruning.is_pruned(model)
    params = dict(model.named_parameters())
    assert not any(name.endswith("weight_orig") for name in params)
    assert not any(name.endswith("weight_mask") for name, _ in model.named_buffers())
    assert isinstance(model[0].weight, nn.Parameter)
    assert sparsity_report(model).to_dict() == before.to_dict()
    assert get_masks(model) == {}


def test_sparsity_report_lists_dense_layers_and_formats():
    model = small_net()
    magnitude_prune(model, 0.5, layers=[("3", model[3])])
    report = sparsity_report(model)
    assert [layer.name for layer in report.layers] == ["0", "3", "6", "8"]
    assert report.total == 189 + 315 + 1040 + 39
    assert report.zeros == round(0.5 * 315)
    assert report.sparsity == pytest.approx(report.zeros / report.total)
    text = str(report)
    assert text.splitlines()[0].split() == ["layer", "weights", "zeros", "sparsity"]
    assert "total" in text.splitlines()[-1] and "1,040" in text
    assert json.loads(json.dumps(report.to_dict()))["zeros"] == report.zeros


def test_pruned_model_can_be_deep_copied():
    model = small_net()
    magnitude_prune(model, 0.9)
    clone = copy.deepcopy(model)
    model.eval(), clone.eval()
    assert torch.equal(clone(X), model(X))
    assert all(torch.equal(get_masks(clone)[k], v) for k, v in get_masks(model).items())
    fresh = small_net()
    apply_masks(fresh, get_masks(model))
    copy.deepcopy(fresh)


def test_is_pruned():
    model = small_net()
    assert not pruning.is_pruned(model)
    magnitude_prune(model, 0.0)
    assert pruning.is_pruned(model)  # rate 0 still installs (all-ones) masks
    assert sparsity_report(model).zeros == 0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, math.nan, True, "0.5", None])
def test_invalid_rate_rejected(rate):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        magnitude_prune(small_net(), rate)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        pruning.iterative_magnitude_prune(small_net(), rate, rounds=2)


def test_invalid_arguments_rejected():
    with pytest.raises(ValueError, match="valid scopes: layerwise, global"):
        magnitude_prune(small_net(), 0.5, scope="local")
    with pytest.raises(ValueError, match="rounds"):
        pruning.iterative_magnitude_prune(small_net(), 0.5, rounds=0)
    with pytest.raises(ValueError, match="no layers selected"):
        magnitude_prune(small_net(), 0.5, layers=[])
    with pytest.raises(ValueError, match="no layers selected"):
        magnitude_prune(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="no layers selected"):
        one = nn.Sequential(nn.Linear(2, 2))
        magnitude_prune(one, 0.5, layers=prunable_layers(one, skip_first=True))
    model = small_net()
    with pytest.raises(ValueError, match="selected twice"):
        magnitude_prune(model, 0.5, layers=[("a", model[0]), ("b", model[0])])
    with pytest.raises(ValueError, match="no weight"):
        magnitude_prune(model, 0.5, layers=[("relu", model[2])])
    assert not pruning.is_pruned(model)
