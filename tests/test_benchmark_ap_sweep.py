"""Smoke tests of the AP and activation-sweep benchmarks: `--quick` runs write good results.

They check the files and their shape, never the rankings: a quick run trains for one epoch. The
scripts are imported by name: pytest puts ``benchmarks/`` on ``sys.path`` (``pythonpath`` in
pyproject.toml), as Python does when they run as scripts.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep() -> ModuleType:
    return importlib.import_module("activation_sweep")


@pytest.fixture(scope="module")
def ap() -> ModuleType:
    return importlib.import_module("ap")


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"


def test_activation_sweep_quick(sweep: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--quick", "--output-dir", str(out), "--work-dir", str(tmp_path / "work")]
    assert sweep.main(argv) == 0

    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.columns) == sweep.RUN_COLUMNS
    # --quick: 1 seed, 3 activations (relu, srelu, safs), eps 20: dense + one-shot + SET each.
    assert len(runs) == 3 * 3
    assert sorted(runs["activation"].unique()) == ["relu", "safs", "srelu"]
    assert sorted(runs["regime"].unique()) == ["dense", "oneshot", "set"]
    assert runs["test_accuracy"].between(0, 1).all()
    dense = runs[runs["regime"] == "dense"]
    assert (dense["sparsity"] == 0).all()
    sparse = runs[runs["regime"] != "dense"]
    # SET and one-shot pruning use the same per-layer densities, so the same sparsity.
    assert sparse["sparsity"].max() - sparse["sparsity"].min() < 1e-3
    assert (sparse["sparsity"] > 0.5).all()
    assert runs["settings"].nunique() == 1

    report = (out / "results.md").read_text()
    for heading in ("## SET", "## one-shot", "## Published SET-study table", "Spearman"):
        assert heading in report
    assert "| SAFS (searched) |" in report
    assert_png(out / "accuracy_vs_sparsity.png")
    trials = pd.read_csv(out / "safs_search_trials.csv")
    assert len(trials) >= 1 and "val_accuracy" in trials.columns

    # A second run with the same settings reuses every recorded run.
    assert sweep.main(argv) == 0
    again = pd.read_csv(out / "runs.csv")
    pd.testing.assert_frame_equal(again, runs)


def test_activation_sweep_levels_match_the_study(sweep: ModuleType) -> None:
    # The study's sparsities: eps 10 ~ 99.2 %, eps 100 ~ 91.6 % of the three sparse layers.
    shapes = sweep.mlp_shapes(sweep.STUDY_INPUTS, sweep.STUDY_HIDDEN, 10)
    assert sweep.level_sparsity(shapes, 10)[1] == pytest.approx(0.992, abs=1e-3)
    assert sweep.level_sparsity(shapes, 100)[1] == pytest.approx(0.916, abs=1e-3)
    assert sweep.level_sparsity(shapes, None) == (0.0, 0.0)


def test_ranks_put_diverged_last_and_spearman_is_one_for_equal_orders(sweep: ModuleType) -> None:
    ranks = sweep.ranks({"a": 0.9, "b": None, "c": 0.5, "d": math.nan})
    assert ranks["a"] == 1 and ranks["c"] == 2 and ranks["b"] == ranks["d"] == 3.5
    assert sweep.spearman({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 3}) == pytest.approx(1)
    assert sweep.spearman({"a": 1, "b": 2, "c": 3}, {"a": 3, "b": 2, "c": 1}) == pytest.approx(-1)


def test_ap_quick(ap: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "ap"
    assert ap.main(["--quick", "--safs-sparsities", "0.5,0.8", "--output-dir", str(out)]) == 0

    cycles = pd.read_csv(out / "cycles.csv")
    # --quick: p = 0.5 to 80 %: cycles at 0, 50, 75 and 80 % sparsity, for both methods.
    assert sorted(cycles["method"].unique()) == ["imp", "imp_ap"]
    for _, part in cycles.groupby("method"):
        assert part["sparsity"].round(4).tolist() == [0.0, 0.5, 0.75, 0.8]
    # The cycles see validation data only.
    assert "test_accuracy" not in cycles.columns
    assert cycles["val_accuracy"].between(0, 1).all()
    assert cycles[["dnr_start", "dnr_mean"]].stack().between(0, 1).all()
    # Same seed, same initial weights and batches: the dense first cycle is identical.
    first = cycles[cycles["cycle"] == 1].set_index("method")
    assert first.loc["imp", "val_accuracy"] == first.loc["imp_ap", "val_accuracy"]

    trials = pd.read_csv(out / "safs_trials.csv")
    assert "test_accuracy" not in trials.columns
    assert len(trials) == 2 * 2 * 2  # 2 LAHC trials per method at each of the 2 SAFS levels
    assert trials.groupby(["method", "cycle"])["selected"].sum().tolist() == [1] * 4
    assert trials["operators"].str.count(";").eq(3).all()  # four LeNet-5 sites
    # LAHC starts from all-ReLU on the level's ticket, trained with the cycle's seed and
    # epochs: it is the network the schedule trained in that cycle, through SAFSProblem, both
    # for the target level (the schedule's own checkpoint) and for the recorded ticket at 50 %.
    default = trials[trials["default"]].set_index(["method", "cycle"])["val_accuracy"]
    trained = cycles.set_index(["method", "cycle"])["val_accuracy"]
    assert default.to_dict() == {key: trained[key] for key in default.index}

    finals = pd.read_csv(out / "final.csv")
    # ReLU and the selected operators, one final fine-tune each (--quick), per level and method.
    assert len(finals) == 2 * 2 * 2
    assert finals["test_accuracy"].between(0, 1).all()
    assert set(finals["pipeline"]) == {"relu", "safs"}

    report = (out / "results.md").read_text()
    assert "## Iterative pruning with and without AP (validation)" in report
    assert "IMP + AP + SAFS" in report
    assert_png(out / "dnr.png")
    assert_png(out / "accuracy_vs_sparsity.png")


def test_ap_dense_head_keeps_the_classifier_out_of_the_schedule(ap: ModuleType) -> None:
    from safs_smac.models import create_model

    model = create_model("lenet5")
    names = [name for name, _ in ap.pruned_layers(model, dense_head=True)]
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    assert [name for name, _ in ap.pruned_layers(model, dense_head=False)][-1] == "fc3"
    levels = ap.cycle_sparsities(model, 0.8, 0.5, dense_head=True)
    assert [round(x, 4) for x in levels] == [0.0, 0.5, 0.75, 0.8]
    assert ap.nearest(levels, [0.7, 0.76, 0.99]) == [2, 3]
