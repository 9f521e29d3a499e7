"""SAFSProblem: the pipeline dense -> pruned -> target function."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from torch import nn

from safs_smac.problem import SAFSProblem, trial_cost


def test_target_function_returns_cost_and_info(make_problem) -> None:
    problem = make_problem()
    config = problem.configspace.get_default_configuration()
    cost, info = problem.train(config, seed=0, budget=1)
    assert 0.0 <= cost <= 1.0
    n_val = len(problem.dataset.val.y)
    assert cost == trial_cost(info["val_accuracy"], info["val_loss"], n_val)
    # The loss only breaks ties: less than half a validation image of accuracy.
    assert 0.0 <= cost - (1.0 - info["val_accuracy"]) * (1 - 0.5 / n_val) < 0.5 / n_val
    assert info["epochs"] == 1
    assert info["diverged"] is False
    assert info["sparsity"] == pytest.approx(0.99, abs=0.01)
    assert set(info["dnr"]) == set(problem.sites)
    assert all(0.0 <= v <= 1.0 for v in info["dnr"].values())
    assert "test_accuracy" not in info  # the test set never feeds selection


def test_budget_is_rounded_and_none_means_max(make_problem) -> None:
    problem = make_problem()
    config = problem.configspace.get_default_configuration()
    assert problem.train(config, budget=1.6)[1]["epochs"] == 2
    assert problem.train(config)[1]["epochs"] == problem.max_budget
    with pytest.raises(ValueError, match="budget"):
        problem.epochs_for(0.0)


def test_same_seed_same_cost(make_problem) -> None:
    problem = make_problem()
    config = problem.configspace.sample_configuration()
    assert problem.train(config, seed=3, budget=1)[0] == problem.train(config, seed=3, budget=1)[0]


def test_second_problem_reuses_cached_dense_and_pruned_models(make_problem, monkeypatch) -> None:
    first = make_problem()
    first.pruned_checkpoint()

    def fail(*args, **kwargs):
        raise AssertionError("the dense model was trained again")

    monkeypatch.setattr(SAFSProblem, "_train_dense", fail)
    second = make_problem()
    checkpoint = second.pruned_checkpoint()
    assert checkpoint["sparsity"] == pytest.approx(0.99, abs=0.01)


def test_cache_key_separates_datasets_and_seeds(make_problem, caplog) -> None:
    make_problem().dense_checkpoint()
    with caplog.at_level(logging.INFO, logger="safs_smac.cache"):
        make_problem(seed=1).dense_checkpoint()
    assert "cache miss" in caplog.text


def test_divergence_is_reported_not_raised(make_problem) -> None:
    problem = make_problem()
    spec = problem.baseline_spec()
    diverging = type(spec)(
        **{**spec.__dict__, "recipe_overrides": {"lr": 1e12, "optimizer": "sgd"}}
    )
    _, info = problem.finetune(diverging, seed=0, epochs=3)
    assert info["diverged"] is True
    assert info["reason"]

    problem.decode = lambda config: diverging  # type: ignore[method-assign]
    cost, info = problem.train(problem.configspace.get_default_configuration(), budget=3)
    assert cost == 1.0
    assert info["diverged"] is True


def test_problem_pickles_without_tensors(make_problem) -> None:
    problem = make_problem()
    problem.pruned_checkpoint()
    blob = pickle.dumps(problem)
    assert len(blob) < 200_000  # settings only: data and checkpoints come from the cache
    clone = pickle.loads(blob)
    cost, _ = clone.train(clone.configspace.get_default_configuration(), budget=1)
    assert 0.0 <= cost <= 1.0


def test_user_module_is_accepted(make_problem) -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.act = nn.ReLU()
            self.head = nn.Linear(4 * 26 * 26, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.tanh(self.act(self.conv(x))).flatten(1))

    problem = make_problem(
        model=Tiny(), dense_epochs=1, pruning_rate=0.9, finetune_recipe={"optimizer": "adam"}
    )
    assert len(problem.sites) == 2  # the module and the functional tanh
    cost, _info = problem.train(problem.configspace.sample_configuration(), budget=1)
    assert 0.0 <= cost <= 1.0


def test_baseline_and_final_evaluation_report_test_accuracy(make_problem) -> None:
    problem = make_problem()
    final = problem.final_evaluation(problem.baseline_spec(), seed=0)
    assert 0.0 <= final.test_accuracy <= 1.0
    assert set(final.operators.values()) == {problem.default_activation}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pruning_rate": 1.0}, "0 <= rate < 1"),
        ({"pruning_rate": -0.1}, "0 <= rate < 1"),
        ({"pruning": "random"}, "valid values: layerwise, global"),
        ({"model": "resnet1000"}, "lenet5"),
        ({"operators": ["relu", "reluu"]}, "reluu"),
        ({"max_budget": 0}, "max_budget"),
        ({"fixed_operators": {"nope": "relu"}}, "unknown sites"),
    ],
)
def test_bad_settings_raise_clear_errors(make_problem, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_problem(**kwargs)


def test_an_untraceable_model_is_searched_with_the_example_input_the_error_asks_for(
    make_problem,
) -> None:

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.act1 = nn.ReLU()
            self.fc = nn.Linear(4 * 28 * 28, 4)
            self.act2 = nn.ReLU()

        def forward(self, x):
            x = self.act1(self.conv(x))
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 1.0
            return self.fc(self.act2(x.flatten(1)))

    with pytest.raises(ValueError, match=r"example_input=\.\.\. \(to SAFSProblem"):
        make_problem(model=Branchy())
    problem = make_problem(model=Branchy(), example_input=torch.zeros(1, 1, 28, 28), max_budget=1)
    assert problem.sites == ["00_act1", "01_act2"]
    cost, info = problem.train(problem.configspace.get_default_configuration(), seed=0, budget=1)
    assert 0.0 <= cost <= 1.0 and info["epochs"] == 1
