"""Tests for safs_smac.sparse_training: AP (negative-weight rule, schedule, ap_prune) and SET."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from safs_smac.pruning import get_masks, magnitude_prune, prunable_layers, sparsity_report
from safs_smac.sparse_training import (
    AP,
    SET,
    SETPruning,
    ap_prune,
    ap_schedule,
    ap_step,
    erdos_renyi_density,
    erdos_renyi_epsilon,
)


def _param(layer: nn.Module) -> torch.Tensor:
    """The trainable weight tensor, pruned or not."""
    return layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight


def _mlp(seed: int = 0, widths: tuple[int, ...] = (8, 16, 4)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(widths):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _masked(model: nn.Module) -> int:
    return sum(int((~m).sum()) for m in get_masks(model).values())


# --------------------------------------------------------------------------------------------
# ap_step
# --------------------------------------------------------------------------------------------

W_START = torch.tensor([[0.1, -0.2, 0.3, -0.4], [0.5, -0.6, 0.7, -0.8]])
DELTA = torch.tensor([[0.0, -0.05, 0.0, -0.3], [-0.45, 0.0, 0.0, -0.1]])
W_END = W_START + DELTA  # [[0.1, -0.25, 0.3, -0.7], [0.05, -0.6, 0.7, -0.9]]


def test_ap_step_removes_the_negative_weights_that_moved_least():
    mask = torch.tensor([[True, True, True, True], [True, False, True, True]])
    # Eligible (surviving and negative at the end): (0,1) moved 0.05, (0,3) 0.3, (1,3) 0.1;
    # (1,1) moved 0 but is already pruned, positives are never eligible.
    new = ap_step(W_END, W_START, mask, 2)
    expected = torch.tensor([[True, False, True, True], [True, False, True, False]])
    assert new.dtype == torch.bool
    assert torch.equal(new, expected)
    assert torch.equal(mask, torch.tensor([[True] * 4, [True, False, True, True]]))  # untouched


def test_ap_step_accepts_float_masks_and_zero_removals():
    mask = torch.ones(2, 4)
    assert torch.equal(ap_step(W_END, W_START, mask, 0), torch.ones(2, 4, dtype=torch.bool))
    everything = ap_step(W_END, W_START, mask, 4)  # all four negatives
    assert torch.equal(everything, W_END >= 0)


def test_ap_step_breaks_ties_by_position():
    w_end = torch.tensor([-1.0, -2.0, -3.0])
    new = ap_step(w_end, w_end.clone(), torch.ones(3, dtype=torch.bool), 2)
    assert new.tolist() == [False, False, True]


def test_ap_step_works_on_channels_last_conv_weights():
    w_end = -torch.rand(4, 3, 2, 2).to(memory_format=torch.channels_last)
    mask = torch.ones_like(w_end, dtype=torch.bool).to(memory_format=torch.channels_last)
    new = ap_step(w_end, torch.zeros_like(w_end), mask, 5)
    assert new.shape == w_end.shape and int((~new).sum()) == 5
    # the five smallest |w_end - 0| are the five negatives closest to zero
    assert set(w_end[~new].tolist()) == set(w_end.reshape(-1).sort().values[-5:].tolist())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((W_END, W_START, torch.ones(2, 3), 1), "one shape"),
        ((W_END, W_START, torch.ones(2, 4), 5), "only 4 surviving weights are negative"),
        ((W_END, W_START, torch.ones(2, 4), -1), "n_remove"),
    ],
)
def test_ap_step_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ap_step(*args)


# --------------------------------------------------------------------------------------------
# ap_schedule
# --------------------------------------------------------------------------------------------


def test_ap_schedule_prunes_a_fixed_fraction_and_lands_exactly_on_the_rate():
    # 1000 -> 800 -> 640 -> 512 -> 500 (the last cycle removes only what is left)
    assert ap_schedule(1000, 1000, 0.5, rounds=10) == [800, 640, 512, 500]
    assert ap_schedule(1000, 800, 0.5, rounds=10) == [640, 512, 500]  # existing masks count
    assert ap_schedule(1000, 500, 0.5, rounds=1) == []  # already there


def test_ap_schedule_spreads_the_rate_over_rounds_when_no_fraction_is_given():
    steps = ap_schedule(1000, 1000, 0.75, rounds=2, prune_fraction_per_round=None)
    assert steps == [500, 250]


def test_ap_schedule_progresses_on_tiny_layers():
    # round(3 * 0.8) == 2 but round(2 * 0.8) == 2: every cycle must still remove a weight
    assert ap_schedule(4, 4, 0.75, rounds=5) == [3, 2, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"surviving": 1000, "rate": 0.9, "rounds": 3}, r"needs 11 cycles .* rounds=3"),
        ({"surviving": 400, "rate": 0.5, "rounds": 3}, "already have 600"),
        ({"surviving": 1000, "rate": 0.9999, "rounds": 99}, "prunes all 1000"),
        ({"surviving": 1000, "rate": 1.0, "rounds": 3}, "rate must be"),
        ({"surviving": 1000, "rate": 0.5, "rounds": 0}, "rounds must be"),
    ],
)
def test_ap_schedule_rejects_unreachable_targets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ap_schedule(1000, **kwargs)


# --------------------------------------------------------------------------------------------
# ap_prune
# --------------------------------------------------------------------------------------------


def _tiny_layer() -> nn.Linear:
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(W_START)
    return layer


def _add_delta(model: nn.Module, cycle: int) -> None:
    with torch.no_grad():
        _param(model).add_(DELTA)


@pytest.mark.parametrize("rewind", [True, False])
def test_ap_prune_one_cycle_by_hand(rewind):
    layer = _tiny_layer()
    calls = []

    def train_round(model: nn.Module, cycle: int) -> None:
        calls.append(cycle)
        _add_delta(model, cycle)

    # One cycle removes 4 of 8 weights: 2 by magnitude, 2 by the negative rule.
    report = ap_prune(
        layer,
        rate=0.5,
        rounds=1,
        train_round=train_round,
        rewind=rewind,
        prune_fraction_per_round=0.5,
        ap_fraction=0.25,
    )
    # Magnitude removes |0.05| (1,0) and |0.1| (0,0); of the surviving negatives -0.25 (moved
    # 0.05), -0.7 (0.3), -0.6 (0), -0.9 (0.1) AP removes -0.6 and -0.25. Plain magnitude
    # pruning would have removed -0.25 and 0.3 instead of -0.6.
    expected_mask = torch.tensor([[False, False, True, True], [False, False, True, True]])
    assert calls == [1]
    assert torch.equal(get_masks(layer)["weight"], expected_mask)
    assert report.zeros == 4 and report.sparsity == 0.5
    values = W_START if rewind else W_END
    assert torch.allclose(layer(torch.eye(4)).T, values * expected_mask)


def test_ap_prune_reaches_the_rate_exactly_and_rewinds_every_cycle():
    model = _mlp()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    seen_starts = []

    def train_round(m: nn.Module, cycle: int) -> None:
        first = m[0]
        seen_starts.append(first.weight_orig * first.weight_mask if cycle > 1 else first.weight)
        with torch.no_grad():  # deterministic "training": shift every weight
            for layer in (m[0], m[2]):
                gen = torch.Generator().manual_seed(cycle)
                _param(layer).add_(0.1 * torch.randn(_param(layer).shape, generator=gen))

    total = 8 * 16 + 16 * 4  # 192 weights, rate 0.5 -> 96 zeros
    report = ap_prune(model, rate=0.5, rounds=6, train_round=train_round)
    assert _masked(model) == 96
    assert report.zeros == 96 and report.total == total
    assert len(seen_starts) == len(ap_schedule(total, total, 0.5, rounds=6))
    for layer, key in ((model[0], "0"), (model[2], "2")):
        mask = layer.weight_mask.bool()
        # rewound to the initial weights, masks applied
        assert torch.equal(layer.weight_orig, initial[f"{key}.weight"])
        assert torch.equal(layer.bias, initial[f"{key}.bias"])
        assert torch.equal(layer.weight, initial[f"{key}.weight"] * mask)
    # every cycle starts from the rewound weights
    for start in seen_starts[1:]:
        assert torch.equal(start, initial["0.weight"] * (start != 0))


def test_ap_prune_applies_the_negative_rule_globally():
    """Compare one cycle with magnitude pruning alone: AP removes more negative weights."""
    model = _mlp(seed=1)
    baseline = _mlp(seed=1)

    def train_round(m: nn.Module, cycle: int) -> None:
        with torch.no_grad():
            for layer in (m[0], m[2]):
                _param(layer).mul_(1.5)  # negatives move by 0.5 |w|: the small ones move least

    ap_prune(model, rate=0.2, rounds=1, train_round=train_round, rewind=False, ap_fraction=0.1)
    train_round(baseline, 1)
    magnitude_prune(baseline, 0.2, scope="global")
    assert _masked(model) == _masked(baseline) == round(0.2 * 192)

    def pruned_negatives(m: nn.Module) -> int:
        return sum(
            int(((~layer.weight_mask.bool()) & (layer.weight_orig < 0)).sum())
            for layer in (m[0], m[2])
        )

    assert pruned_negatives(model) > pruned_negatives(baseline)
    # the AP share (0.1 of survivors, here 19 weights) is all negative
    diff = [
        (~m1.weight_mask.bool()) & m2.weight_mask.bool()
        for m1, m2 in zip(model, baseline)
        if hasattr(m1, "weight_mask")
    ]
    assert all(bool((model[2 * i].weight_orig[d] < 0).all()) for i, d in enumerate(diff))


def test_ap_prune_without_fixed_fraction_runs_exactly_rounds_cycles():
    model = _mlp()
    cycles = []
    report = ap_prune(
        model,
        rate=0.7,
        rounds=3,
        train_round=lambda m, c: cycles.append(c),
        prune_fraction_per_round=None,
    )
    assert cycles == [1, 2, 3]
    assert report.zeros == round(0.7 * 192)


def test_ap_prune_refuses_to_rewind_a_changed_architecture():
    model = _mlp()

    def grow(m: nn.Module, cycle: int) -> None:
        m.add_module("extra", nn.Linear(2, 2))

    with pytest.raises(ValueError, match="train_round changed the model"):
        ap_prune(model, rate=0.5, rounds=4, train_round=grow)


def test_ap_prune_falls_back_to_magnitude_without_negative_weights():
    layer = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1, 101, dtype=torch.float32).view(10, 10))
    ap_prune(layer, rate=0.3, rounds=2, train_round=lambda m, c: None)
    assert _masked(layer) == 30
    assert torch.equal(layer.weight_mask.bool().view(-1), torch.arange(100) >= 30)


def test_ap_prune_keeps_existing_masks_and_selected_layers_only():
    model = _mlp()
    magnitude_prune(model, 0.25, layers=[("0", model[0])])  # 32 of 128 already masked
    before = get_masks(model)["0.weight"]
    ap_prune(model, rate=0.5, rounds=3, train_round=lambda m, c: None, layers=[("0", model[0])])
    after = get_masks(model)
    assert set(after) == {"0.weight"}  # layer 2 untouched, still unpruned
    assert int((~after["0.weight"]).sum()) == 64
    assert not bool((after["0.weight"] & ~before).any())  # pruning never revives a weight


def test_ap_prune_pruned_weights_stay_zero_under_training():
    model = _mlp()
    ap_prune(model, rate=0.6, rounds=5, train_round=lambda m, c: None)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)  # refresh the effective weights
    assert sparsity_report(model).zeros == round(0.6 * 192)
    for layer in (model[0], model[2]):
        assert bool((layer.weight[~layer.weight_mask.bool()] == 0).all())


def test_ap_prune_validates_its_arguments():
    with pytest.raises(ValueError, match="ap_fraction=0.3 exceeds"):
        ap_prune(_mlp(), rate=0.5, rounds=5, train_round=lambda m, c: None, ap_fraction=0.3)
    with pytest.raises(ValueError, match="train_round must be a callable"):
        ap_prune(_mlp(), rate=0.5, rounds=5, train_round=None)
    with pytest.raises(ValueError, match="not a submodule"):
        ap_prune(
            _mlp(),
            rate=0.5,
            rounds=5,
            train_round=lambda m, c: None,
            layers=[("x", nn.Linear(2, 2))],
        )


# --------------------------------------------------------------------------------------------
# SET
# --------------------------------------------------------------------------------------------


def test_erdos_renyi_density_matches_the_formula():
    assert erdos_renyi_density(3072, 4000, 10) == pytest.approx(10 * 7072 / (3072 * 4000))
    assert erdos_renyi_density(4000, 10, 20) == 1.0  # capped: SET-MLP's output layer is dense
    # ERK for a 3x3 convolution with 16 -> 32 channels
    assert erdos_renyi_density(16, 32, 20, (3, 3)) == pytest.approx(20 * 54 / (16 * 32 * 9))
    # the study's eps=10 network is ~99.2 % sparse over its three sparse layers
    shapes = [(3072, 4000), (4000, 1000), (1000, 4000)]
    active = sum(erdos_renyi_density(a, b, 10) * a * b for a, b in shapes)
    assert 1 - active / sum(a * b for a, b in shapes) == pytest.approx(0.9916, abs=1e-4)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 4, 20), "layer dimension"), ((4, 4, 0), "epsilon"), ((4, 4, 20, (3, 0)), "dimension")],
)
def test_erdos_renyi_density_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        erdos_renyi_density(*args)


def _set_mlp(seed: int = 0) -> nn.Sequential:
    return _mlp(seed, widths=(100, 200, 50, 10))


def _signs(layer: nn.Module) -> tuple[int, int]:
    w = layer.weight_orig[layer.weight_mask.bool()]
    return int((w < 0).sum()), int((w >= 0).sum())


def test_set_masks_have_erdos_renyi_density_and_dense_layers_stay_dense():
    model = _set_mlp()
    sparse = SET(model, epsilon=10)
    assert [name for name, _ in sparse.layers] == ["0", "2"]
    assert sparse.dense_layers == ["4"]  # 50 x 10: 10 * 60 / 500 > 1
    density = sparse.density()
    assert density["0"] == round(10 * 300 / 20000 * 20000) / 20000
    assert density["2"] == round(10 * 250 / 10000 * 10000) / 10000
    assert density["total"] == pytest.approx((3000 + 2500) / 30000)
    assert set(get_masks(model)) == {"0.weight", "2.weight"}


def test_set_evolve_keeps_density_and_rewires_the_expected_count():
    model = _set_mlp()
    sparse = SET(model, epsilon=10, zeta=0.3)
    density = sparse.density()
    for step in range(3):
        layer = model[0]
        before = layer.weight_mask.bool().clone()
        w = layer.weight_orig.detach().clone()
        n_neg, n_pos = _signs(layer)
        expected = math.floor(0.3 * n_neg + 0.5) + math.floor(0.3 * n_pos + 0.5)
        # the weights closest to zero on each side are the ones to go
        active = w[before]
        neg, pos = active[active < 0].abs().sort().values, active[active >= 0].sort().values
        cut_neg, cut_pos = (
            neg[math.floor(0.3 * n_neg + 0.5) - 1],
            pos[math.floor(0.3 * n_pos + 0.5) - 1],
        )
        removable = before & (((w < 0) & (w.abs() <= cut_neg)) | ((w >= 0) & (w <= cut_pos)))

        result = sparse.evolve()
        after = layer.weight_mask.bool()
        assert result["0"] == (expected, expected)
        assert sparse.density() == density
        removed, grown = before & ~after, after & ~before
        assert int(removed.sum()) == int(grown.sum()) == expected
        assert bool((removed <= removable).all())
        assert bool((layer.weight_orig[grown] == 0).all())  # zero-initialised new connections
        with torch.no_grad():  # pretend training moved the new weights
            layer.weight_orig.add_(0.01 * torch.randn_like(layer.weight_orig) * after)
        del step


def test_set_masks_are_honoured_in_forward():
    model = _set_mlp()
    SET(model, epsilon=10)
    x = torch.randn(5, 100)
    manual = x
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Linear):
            weight = layer.weight_orig * layer.weight_mask if i < 4 else layer.weight
            manual = nn.functional.linear(manual, weight, layer.bias)
        else:
            manual = layer(manual)
    assert torch.allclose(model(x), manual)
    assert int((model[0].weight == 0).sum()) == 20000 - 3000


def test_set_is_reproducible_and_random_regrowth_is_small():
    a, b, c = _set_mlp(), _set_mlp(), _set_mlp()
    set_a = SET(a, epsilon=10, seed=3, regrow_init="random")
    set_b = SET(b, epsilon=10, seed=3, regrow_init="random")
    SET(c, epsilon=10, seed=4)
    assert torch.equal(a[0].weight_mask, b[0].weight_mask)
    assert not torch.equal(a[0].weight_mask, c[0].weight_mask)
    before = a[0].weight_mask.bool().clone()
    set_a.evolve()
    set_b.evolve()
    assert torch.equal(a[0].weight_orig, b[0].weight_orig)
    grown = a[0].weight_orig[a[0].weight_mask.bool() & ~before]
    assert bool((grown != 0).all()) and 0.05 < float(grown.detach().std()) < 0.2


def test_set_call_evolves_until_the_final_epoch():
    model = _set_mlp()
    sparse = SET(model, epsilon=10, final_epoch=3)
    for epoch in range(1, 4):
        sparse(epoch, {"train_loss": 1.0})
    assert [epoch for epoch, _ in sparse.history] == [1, 2]
    assert set(sparse.history[0][1]) == {"0", "2"}


def test_set_evolves_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3))
    model = model.to(memory_format=torch.channels_last)  # as fit() does on CUDA
    sparse = SET(model, epsilon=2)
    numel = 16 * 8 * 9
    assert sparse.density()["0"] == round(2 * (8 + 16 + 3 + 3) / numel * numel) / numel
    density = sparse.density()
    before = model[0].weight_mask.bool().clone()
    sparse.evolve()
    assert sparse.density() == density
    grown = model[0].weight_mask.bool() & ~before
    # zeros written exactly at the grown positions (a wrong memory-format index would not)
    assert torch.equal(model[0].weight_orig == 0, grown)
    assert model(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)


def test_set_density_constant_through_fit():
    training = pytest.importorskip("safs_smac.training")
    data = pytest.importorskip("safs_smac.data")
    dataset = data.load_dataset("synthetic", n_train=64, n_val=32, n_test=32, size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 4))
    sparse = SET(model, epsilon=4, final_epoch=3)
    density = sparse.density()
    recipe = training.Recipe(epochs=3, batch_size=16, lr=0.05)
    result = training.fit(model, dataset, recipe, device="cpu", on_epoch_end=sparse)
    assert result.epochs_run == 3 and len(sparse.history) == 2
    assert sparse.density() == density
    assert int((model[1].weight == 0).sum()) == 64 * 128 - round(density["1"] * 64 * 128)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"zeta": 1.5}, "zeta must be"),
        ({"regrow_init": "ones"}, "unknown regrow_init 'ones'"),
        ({"final_epoch": -1}, "final_epoch"),
        ({"epsilon": -1}, "epsilon"),
    ],
)
def test_set_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SET(_set_mlp(), **kwargs)


def test_set_rejects_pruned_layers():
    model = _set_mlp()
    magnitude_prune(model, 0.5)
    with pytest.raises(ValueError, match="already pruned"):
        SET(model)


def test_ap_schedule_fixed_fraction_and_dense_head_keep_the_old_settings_when_unset():
    # The fields that the benchmark uses show up in settings (cache keys) only when set, so the
    # cache keys of AP runs made before they existed stay valid.
    assert set(AP().settings()) == {
        "name",
        "rounds",
        "epochs_per_round",
        "ap_fraction",
        "rewind",
        "recipe",
    }
    imp = AP(rounds=9, epochs_per_round=0, ap_fraction=0.0, prune_fraction=0.5, skip_last=True)
    assert imp.settings()["prune_fraction"] == 0.5 and imp.settings()["skip_last"] is True
    with pytest.raises(ValueError, match="prune_fraction must be"):
        AP(prune_fraction=1.0)

    model = _mlp(0)
    head = prunable_layers(model)[-1][1]
    imp.prune(model, 0.75, scope="global")
    # A fixed half of the survivors per cycle: 50 %, 75 % in two cycles; the head stays dense.
    assert not hasattr(head, "weight_mask")
    selected = prunable_layers(model, skip_last=True)
    zeros = sum(int((m.weight == 0).sum()) for _, m in selected)
    assert zeros == round(0.75 * sum(m.weight.numel() for _, m in selected))


# --------------------------------------------------------------------------------------------
# SET as a pruning strategy of SAFSProblem
# --------------------------------------------------------------------------------------------


def _set_problem(make_problem, strategy, **overrides):
    settings = {"model": "mlp", "pruning": strategy, "pruning_rate": 0.9, "dense_epochs": 0}
    return make_problem(**{**settings, "max_budget": 3, **overrides})


class _RecordingSET(SETPruning):
    """SETPruning that keeps the masks at the start of every fine-tune and after every step."""

    def begin_finetune(self, model, **kwargs):
        step = super().begin_finetune(model, **kwargs)
        masks = [get_masks(model)]
        _RECORDED.append(masks)

        def record(epoch, logs):
            step(epoch, logs)
            masks.append(get_masks(model))

        return record


_RECORDED: list[list[dict[str, torch.Tensor]]] = []


def test_set_through_safs_problem_keeps_densities_and_rewires_after_all_but_the_last_epoch(
    make_problem,
):
    _RECORDED.clear()
    problem = _set_problem(make_problem, _RecordingSET())
    _, info = problem.finetune(problem.baseline_spec(), seed=0, epochs=3)
    (masks,) = _RECORDED
    assert len(masks) == 4  # the start, then after each of the 3 epochs
    start = masks[0]
    assert set(start) == {"fc1.weight", "fc2.weight"}  # the 100 x 4 head stays dense
    kept = {key: int(mask.sum()) for key, mask in start.items()}
    for after in masks[1:]:
        assert {key: int(mask.sum()) for key, mask in after.items()} == kept
    for before, after in itertools.pairwise(masks[:3]):  # rewired after epochs 1 and 2
        assert any(not torch.equal(before[key], after[key]) for key in before)
    assert all(torch.equal(masks[2][key], masks[3][key]) for key in start)  # not after the last
    assert info["sparsity"] == pytest.approx(0.9, abs=1e-3)  # epsilon solved from the rate
    # The masks belong to the fine-tune, not to the (dense) checkpoint; nothing is continued.
    assert get_masks(problem.pruned_model()) == {}
    assert problem.continuation_bytes() == 0


def test_set_with_zeta_zero_trains_on_static_erdos_renyi_masks(make_problem):
    problem = _set_problem(make_problem, SETPruning(epsilon=20, zeta=0.0))
    spec = problem.baseline_spec()
    assert (
        problem.prune_schedule.begin_finetune(problem.spec_model(spec), rate=0.9, seed=3, epochs=3)
        is None
    )  # no step: the fine-tune is a plain fit on the masks
    model, _ = problem.finetune(spec, seed=3, epochs=3)
    expected = problem.spec_model(spec)
    SET(expected, epsilon=20, seed=3)
    assert get_masks(model).keys() == get_masks(expected).keys()
    assert all(torch.equal(get_masks(model)[k], m) for k, m in get_masks(expected).items())


def test_a_strategy_without_a_step_fine_tunes_bit_identically_to_plain_fit(make_problem):
    training = pytest.importorskip("safs_smac.training")
    problem = make_problem()  # one-shot magnitude pruning
    spec = problem.decode(problem.configspace.get_default_configuration())
    model, _ = problem.finetune(spec, seed=5, epochs=problem.max_budget)
    # What finetune did before strategies had a per-epoch step.
    expected = problem.spec_model(spec)
    recipe = problem.recipe.replace(**spec.recipe_overrides, epochs=problem.max_budget)
    training.fit(
        expected, problem.dataset, recipe, device="cpu", seed=5, evaluate_val=False,
        horizon=problem.max_budget,
    )  # fmt: skip
    state, reference = model.state_dict(), expected.state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[key], reference[key]) for key in state)


def test_pruning_accepts_a_strategy_with_the_settings_of_the_explicit_form(make_problem):
    ap = make_problem(pruning="ap", pruning_rate=0.5)
    explicit = make_problem(pruning="global", prune_schedule="ap", pruning_rate=0.5)
    assert ap.settings() == explicit.settings()
    assert ap._pruned_fields(0.5) == explicit._pruned_fields(0.5)
    assert make_problem(pruning=SETPruning(epsilon=5)).settings()["prune_schedule"] == {
        "name": "set",
        "epsilon": 5,
        "zeta": 0.3,
        "regrow_init": "zero",
    }
    with pytest.raises(ValueError, match="pass the strategy once"):
        make_problem(pruning="set", prune_schedule="gradual")
    with pytest.raises(ValueError, match="or a pruning strategy: one-shot, gradual, ap, set"):
        make_problem(pruning="sett")
    with pytest.raises(ValueError, match="zeta must be"):
        SETPruning(zeta=2)


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9, 0.99])
def test_erdos_renyi_epsilon_reaches_the_rate(rate):
    model = _mlp(0, widths=(64, 48, 32, 10))
    sparse = SET(model, epsilon=erdos_renyi_epsilon(model, rate))
    assert sparsity_report(model).sparsity == pytest.approx(rate, abs=3 / 5000)
    assert (sparse.layers == []) == (rate == 0.0)
