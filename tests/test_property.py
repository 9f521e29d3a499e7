"""Property: any configuration of any shipped configspace evaluates to a finite cost or a recorded
failure on synthetic data, never an unhandled exception."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safs_smac.problem import SAFSProblem
from safs_smac.space import load_space

CONFIGSPACES = sorted((Path(__file__).parents[1] / "configspaces").glob("*.json"))

# Small inputs keep every zoo model to well under a second per trial on a CPU.
_DATA = {
    "lenet5": {"channels": 1, "size": 28},
    "mlp": {"channels": 1, "size": 28},
    "vgg16": {"channels": 3, "size": 16},
    "resnet18": {"channels": 3, "size": 16},
    "efficientnet_b0": {"channels": 3, "size": 16},
}
_PROBLEMS: dict[str, SAFSProblem] = {}


def _problem(path: Path, cache_dir: Path) -> SAFSProblem:
    model, stage = (
        path.stem.split("_", 1)
        if not path.stem.startswith("efficientnet")
        else (
            "efficientnet_b0",
            path.stem.removeprefix("efficientnet_b0_"),
        )
    )
    key = f"{model}:{stage}"
    if key not in _PROBLEMS:
        data = {"n_train": 16, "n_val": 8, "n_test": 8, "num_classes": 4, **_DATA[model]}
        base = _PROBLEMS.get(model)
        if base is None:
            base = SAFSProblem(
                model,
                "synthetic",
                dataset_kwargs=data,
                dense_epochs=0,  # random weights: the property is about robustness, not accuracy
                max_budget=1,
                cache_dir=cache_dir,
                device="cpu",
                dnr_probe_size=8,
                finetune_recipe={"batch_size": 8},
            )
            _PROBLEMS[model] = base
        _PROBLEMS[key] = base.with_space(stage=stage)
    return _PROBLEMS[key]


def test_every_shipped_space_is_covered() -> None:
    assert len(CONFIGSPACES) == 15


@pytest.mark.parametrize("path", CONFIGSPACES, ids=lambda p: p.stem)
@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_random_configurations_evaluate_cleanly(path: Path, seed: int, tmp_path_factory) -> None:
    problem = _problem(path, tmp_path_factory.getbasetemp() / "property-cache")
    space = load_space(path)
    space.seed(seed)
    config = problem.check(dict(space.sample_configuration()))  # the file's space is the problem's
    cost, info = problem.train(config, seed=seed % 1000, budget=1)
    assert math.isfinite(cost)
    assert 0.0 <= cost <= 1.0
    if info["diverged"]:
        assert cost == 1.0
        assert info["reason"]
