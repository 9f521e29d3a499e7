"""Batched trials: M configurations of one network fine-tuned at once equal M sequential trials."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from safs_smac import pruning, sites
from safs_smac.data import load_dataset
from safs_smac.models import create_model
from safs_smac.problem.batched import evaluate_trials
from safs_smac.training import BatchingUnsupported, Recipe, evaluate, fit, fit_batched

SYNTHETIC = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4, "channels": 1, "size": 28}
# Three members that differ in everything a configuration can change: operators (parametric
# ones included), scales and whether they are learned, the fine-tuning optimizer, schedule,
# learning rate, momentum, weight decay and label smoothing.
MEMBERS: list[dict[str, Any]] = [
    {
        "act:00_act1": "swish",
        "act:01_act2": "tanhsoft1",
        "alpha:02_act3": 1.7,
        "beta:00_act1": 0.6,
        "ft:optimizer": "sgd",
        "ft:lr": 0.05,
        "ft:momentum": 0.9,
        "ft:scheduler": "cosine",
        "ft:label_smoothing": 0.1,
        "ft:learn_scales": True,
    },
    {
        "act:01_act2": "acon_c",
        "act:03_act4": "tanh",
        "ft:optimizer": "adam",
        "ft:lr": 0.01,
        "ft:scheduler": "onecycle",
        "ft:learn_scales": False,
    },
    {
        "act:02_act3": "srs",
        "beta:03_act4": 2.0,
        "ft:optimizer": "adamw",
        "ft:lr": 0.003,
        "ft:weight_decay": 0.01,
        "ft:scheduler": "constant",
        "ft:learn_scales": True,
    },
]


def _configs(problem: Any) -> list[Any]:
    from ConfigSpace import Configuration

    default = dict(problem.configspace.get_default_configuration())
    default.pop("ft:momentum", None)  # active for SGD only
    return [
        Configuration(problem.configspace, values={**default, **changes}) for changes in MEMBERS
    ]


def _member_models(problem: Any, configs: list[Any]) -> list[nn.Module]:
    models = []
    for config in configs:
        spec = problem.decode(config)
        models.append(
            sites.set_activations(
                problem.pruned_model(spec.prune_rate),
                spec.operators,
                alpha=spec.alpha,
                beta=spec.beta,
                learnable=spec.learn_scales,
            )
        )
    return models


def _recipes(problem: Any, configs: list[Any], epochs: int) -> list[Recipe]:
    return [
        problem.recipe.replace(**problem.decode(config).recipe_overrides, epochs=epochs)
        for config in configs
    ]


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ------------------------------------------------------------------------------------ the engine


def test_members_train_exactly_as_sequential_fits(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5)
    configs = _configs(problem)
    recipes = _recipes(problem, configs, epochs=2)
    seeds = [3, 4, 5]
    batched = _member_models(problem, configs)
    results = fit_batched(batched, problem.dataset, recipes, seeds=seeds, horizon=4, device="cpu")
    for i, (model, recipe, seed, result) in enumerate(
        zip(batched, recipes, seeds, results, strict=True)
    ):
        alone = _member_models(problem, [configs[i]])[0]
        fitted = fit(
            alone, problem.dataset, recipe, seed=seed, horizon=4, evaluate_val=False, device="cpu"
        )
        val = evaluate(alone, problem.dataset.val, problem.dataset, device="cpu")
        _assert_same_state(alone, model)  # weights, masks, scales, operator parameters
        assert result.val is not None
        assert (result.val.accuracy, result.val.loss) == (val.accuracy, val.loss)
        assert [r["train_loss"] for r in result.fit.history] == [
            r["train_loss"] for r in fitted.history
        ]
        assert [r["lr"] for r in result.fit.history] == [r["lr"] for r in fitted.history]
        assert result.fit.epochs_run == fitted.epochs_run == 2
        assert not result.fit.diverged


def test_members_keep_their_pruning_masks(make_problem) -> None:
    problem = make_problem(pruning_rate=0.8, search_rate=(0.5, 0.9))
    configs = _configs(problem)
    configs[1]["prune:rate"] = 0.6  # another rate: other masks in the same batch
    models = _member_models(problem, configs)
    before = [pruning.get_masks(model) for model in models]
    assert not torch.equal(before[0]["conv1.weight"], before[1]["conv1.weight"])
    fit_batched(
        models, problem.dataset, _recipes(problem, configs, 1), seeds=[0, 1, 2], device="cpu"
    )
    for model, masks in zip(models, before, strict=True):
        after = pruning.get_masks(model)
        for key, mask in masks.items():
            assert torch.equal(after[key], mask)
            layer = model.get_submodule(key.rsplit(".", 1)[0])
            assert bool((layer.weight[~mask] == 0).all())  # the weight the forward pass uses
            assert bool((layer.weight_orig[~mask] == 0).all())  # and the trained one
    rates = [pruning.sparsity_report(model).sparsity for model in models]
    assert rates[1] == pytest.approx(0.6, abs=0.01)
    assert rates[0] == pytest.approx(0.8, abs=0.01)


def test_a_diverging_member_stops_and_the_others_are_unaffected(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5)
    configs = _configs(problem)[:2]
    recipes = _recipes(problem, configs, 2)
    recipes[0] = recipes[0].replace(lr=1e30, scheduler="constant")  # overflows at once
    models = _member_models(problem, configs)
    results = fit_batched(models, problem.dataset, recipes, seeds=[0, 1], device="cpu")
    alone = _member_models(problem, configs)
    sequential = [
        fit(m, problem.dataset, r, seed=s, evaluate_val=False, device="cpu")
        for m, r, s in zip(alone, recipes, [0, 1], strict=True)
    ]
    assert results[0].fit.diverged and sequential[0].diverged
    assert results[0].fit.reason == sequential[0].reason
    assert results[0].val is None
    assert not results[1].fit.diverged
    _assert_same_state(alone[1], models[1])


def test_members_with_other_batch_sizes_or_structures_are_refused() -> None:
    data = load_dataset("synthetic", **SYNTHETIC)
    models = [create_model("lenet5", num_classes=4, in_channels=1, input_size=28) for _ in range(2)]
    with pytest.raises(BatchingUnsupported, match="batch size"):
        fit_batched(models, data, [Recipe(epochs=1, batch_size=32), Recipe(epochs=1)], seeds=[0, 1])
    other = create_model("mlp", num_classes=4, in_channels=1, input_size=28)
    with pytest.raises(BatchingUnsupported, match="structure"):
        fit_batched([models[0], other], data, [Recipe(epochs=1)] * 2, seeds=[0, 1])
    with pytest.raises(ValueError, match="one recipe and one seed"):
        fit_batched(models, data, [Recipe(epochs=1)], seeds=[0, 1])


class _MixesSamples(nn.Module):
    """Subtracts the batch mean: with members in one batch it mixes their samples."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.fc(self.act(x - x.mean(dim=0, keepdim=True)))


def test_a_forward_that_mixes_samples_is_detected() -> None:
    data = load_dataset("synthetic", **SYNTHETIC)
    torch.manual_seed(0)
    models = [_MixesSamples() for _ in range(2)]
    with pytest.raises(BatchingUnsupported, match="mixes the samples"):
        fit_batched(models, data, [Recipe(epochs=1)] * 2, seeds=[0, 1], device="cpu")


# ----------------------------------------------------------------------------------- the problem


def test_train_batch_equals_sequential_trials(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5, continue_trials=False)
    configs = _configs(problem)
    seeds = [0, 1, 2]
    batched = problem.train_batch(configs, seeds, budget=1)
    for config, seed, (cost, info) in zip(configs, seeds, batched, strict=True):
        expected_cost, expected = problem.train(config, seed, 1)
        assert cost == pytest.approx(expected_cost, abs=1e-9)
        assert info["val_accuracy"] == expected["val_accuracy"]
        assert info["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-7)
        assert info["dnr"] == pytest.approx(expected["dnr"])
        assert info["sparsity"] == expected["sparsity"]
        assert (info["epochs"], info["resumed_from"], info["batched"]) == (1, 0, 3)
    assert sum(info["seconds"] for _, info in batched) > 0


def test_train_batch_groups_budgets_and_leaves_no_continuation_state(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5)  # continuation on: batched members ignore it
    configs = _configs(problem)
    results = problem.train_batch(configs, 7, budget=[1, 1, 2])
    assert [info["batched"] for _, info in results] == [2, 2, 1]  # a group of one runs alone
    assert [info["epochs"] for _, info in results] == [1, 1, 2]
    # Only the sequential trial (the group of one) at max_budget: nothing is kept at all.
    assert problem.continuation_bytes() == 0
    with pytest.raises(ValueError, match="2 items for 3 configurations"):
        problem.train_batch(configs, [0, 1], budget=1)
    with pytest.raises(ValueError):
        problem.train_batch([{"act:00_act1": "no-such-op"}], 0, budget=1)


def test_train_batch_falls_back_to_sequential_trials_for_an_unbatchable_model(
    make_problem,
) -> None:
    torch.manual_seed(0)
    problem = make_problem(model=_MixesSamples(), dense_epochs=0, pruning_rate=0.5)
    default = problem.configspace.get_default_configuration()
    results = problem.train_batch([default, default], [0, 1], budget=1)
    assert [info["batched"] for _, info in results] == [1, 1]
    assert results[0][0] == pytest.approx(problem.train(default, 0, 1)[0])


def test_evaluate_trials_takes_trial_infos_and_tuples(make_problem) -> None:
    from smac.runhistory import TrialInfo

    problem = make_problem(pruning_rate=0.5, continue_trials=False)
    configs = _configs(problem)[:2]
    asks = [TrialInfo(config=configs[0], seed=3, budget=1.0), (configs[1], None, 1.0)]
    results = evaluate_trials(problem, asks)
    assert results[0][0] == pytest.approx(problem.train(configs[0], 3, 1.0)[0], abs=1e-9)
    assert results[1][0] == pytest.approx(problem.train(configs[1], 0, 1.0)[0], abs=1e-9)


def test_members_trained_before_can_be_batched_again(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5)
    configs = _configs(problem)[:2]
    recipes = _recipes(problem, configs, 1)
    batched = _member_models(problem, configs)
    alone = _member_models(problem, configs)
    for _ in range(2):  # the second call starts from trained members
        fit_batched(batched, problem.dataset, recipes, seeds=[0, 1], device="cpu")
        for model, recipe, seed in zip(alone, recipes, [0, 1], strict=True):
            fit(model, problem.dataset, recipe, seed=seed, evaluate_val=False, device="cpu")
    for a, b in zip(alone, batched, strict=True):
        _assert_same_state(a, b)


def test_benchmark_quick_compares_both_modes(tmp_path) -> None:
    import importlib

    batched = importlib.import_module("batched")  # benchmarks/ is on pytest's path
    out = tmp_path / "out"
    argv = ["--quick", "--large-model", "lenet5", "--cache-dir", str(tmp_path), "--out", str(out)]
    assert batched.main(argv) == 0
    timings = pd.read_csv(out / "timings.csv")
    assert set(timings["mode"]) == {"sequential", "batched"}
    assert set(timings["case"]) == {
        "lenet5-sampled",
        "lenet5-shared-optimizer",
        "lenet5-cifar-shape",
    }
    assert (timings["max_cost_difference"] == 0).all()  # bit for bit on the CPU
    assert "batched / sequential" in (out / "table.md").read_text()


@pytest.mark.parametrize("zeta", [0.0, 0.3])
def test_train_batch_with_sparse_training_equals_sequential_trials(make_problem, zeta) -> None:
    from safs_smac.sparse_training import SETPruning

    # zeta 0: static Erdos-Renyi masks drawn per member, batched; zeta 0.3 rewires after every
    # epoch, which a batch cannot: those trials run one at a time.
    problem = make_problem(
        model="mlp",
        pruning=SETPruning(epsilon=20, zeta=zeta),
        pruning_rate=0.9,
        dense_epochs=0,
        max_budget=3,
        continue_trials=False,
    )
    configs = [problem.configspace.get_default_configuration()] * 2
    results = problem.train_batch(configs, [0, 1], budget=2)
    assert [info["batched"] for _, info in results] == ([2, 2] if zeta == 0 else [1, 1])
    for seed, (cost, info) in enumerate(results):
        expected_cost, expected = problem.train(configs[seed], seed, 2)
        assert cost == pytest.approx(expected_cost, abs=1e-9)
        assert info["sparsity"] == expected["sparsity"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_benchmark_refuses_a_device_it_does_not_have(tmp_path, capsys) -> None:
    import importlib

    batched = importlib.import_module("batched")
    with pytest.raises(SystemExit) as exit_info:
        batched.main(["--quick", "--device", "cuda", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
