"""The incumbent curve of results.csv, trajectory.png and the optimizer comparison."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from safs_smac.report import incumbent_curve, plot_trajectory, with_incumbent_columns
from safs_smac.search import concat_stage_trials

NAN = math.nan


def _trials(budgets, accuracies, **extra) -> pd.DataFrame:
    n = len(budgets)
    return pd.DataFrame(
        {
            "trial": range(1, n + 1),
            "budget": budgets,
            "val_accuracy": accuracies,
            "epochs": [1 if b is None or b != b else b for b in budgets],
            "cumulative_epochs": np.cumsum([1 if b is None or b != b else b for b in budgets]),
            "starttime": np.arange(n, dtype=float),
            "endtime": np.arange(n, dtype=float) + 0.5,
            "elapsed": np.arange(n, dtype=float) + 0.5,
            **extra,
        }
    )


def test_the_incumbent_is_the_best_trial_at_the_highest_budget_so_far() -> None:
    trials = _trials(
        [1.0, 1.0, 3.0, 1.0, 3.0, 9.0, 1.0, 9.0],
        [0.50, 0.90, 0.40, 0.95, 0.60, 0.30, 0.99, 0.70],
    )
    curve = incumbent_curve(trials)
    assert list(curve.columns) == ["incumbent_budget", "incumbent_val_accuracy"]
    assert curve.index.equals(trials.index)
    assert curve["incumbent_budget"].tolist() == [1, 1, 3, 3, 3, 9, 9, 9]
    # The 1-epoch trials at 95% and 99% never set the curve once a 3-epoch trial exists, and the
    # curve drops to the first 9-epoch trial's 30% when budget 9 is first reached.
    expected = [0.50, 0.90, 0.40, 0.40, 0.60, 0.30, 0.30, 0.70]
    np.testing.assert_allclose(curve["incumbent_val_accuracy"], expected)
    # The old running maximum over every budget would have said 99%.
    assert curve["incumbent_val_accuracy"].max() < trials["val_accuracy"].max()


def test_without_budgets_the_curve_is_the_running_maximum() -> None:
    accuracies = [0.2, 0.5, 0.3, None, 0.7, 0.6]
    trials = _trials([None] * 6, accuracies)
    curve = incumbent_curve(trials)
    running_max = pd.Series(accuracies, dtype=float).fillna(0.0).cummax()
    np.testing.assert_allclose(curve["incumbent_val_accuracy"], running_max)
    assert curve["incumbent_budget"].isna().all()
    # A trial without a budget counts as the max budget: it outranks every numeric budget.
    mixed = incumbent_curve(_trials([9.0, None, 9.0], [0.8, 0.1, 0.9]))
    np.testing.assert_allclose(mixed["incumbent_val_accuracy"], [0.8, 0.1, 0.1])


def test_old_results_get_the_new_columns_and_lose_best_val_accuracy() -> None:
    old = _trials([1.0, 3.0], [0.9, 0.4]).assign(best_val_accuracy=[0.9, 0.9])
    new = with_incumbent_columns(old)
    assert "best_val_accuracy" not in new
    assert new["incumbent_val_accuracy"].tolist() == [0.9, 0.4]


def test_two_stages_run_on_and_stage_two_takes_over() -> None:
    stage1 = with_incumbent_columns(_trials([1.0, 3.0, 3.0], [0.5, 0.6, 0.8]))
    stage2 = with_incumbent_columns(_trials([None, None], [0.7, 0.85]))
    frame = concat_stage_trials({1: stage1, 2: stage2})
    assert frame["stage"].tolist() == [1, 1, 1, 2, 2]
    assert frame["trial"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(frame["incumbent_val_accuracy"], [0.5, 0.6, 0.8, 0.7, 0.85])
    assert "best_val_accuracy" not in frame


@pytest.mark.parametrize("budgets", [[1.0, 3.0, 1.0, 9.0], [None] * 4])
def test_trajectory_plot(tmp_path, budgets) -> None:
    trials = _trials(budgets, [0.3, 0.5, 0.9, 0.4])
    path = plot_trajectory(trials, tmp_path / "trajectory.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # An old results.csv without the incumbent columns plots too (the curve is recomputed).
    plot_trajectory(trials.assign(best_val_accuracy=0.9), tmp_path / "old.png")
    plot_trajectory(pd.DataFrame(), tmp_path / "empty.png")


def test_work_summary_counts_epochs_and_the_optimizer_share() -> None:
    from safs_smac.report import work_summary

    trials = pd.DataFrame(
        {
            "budget": [1.0, 3.0, 9.0],
            "epochs": [1, 2, 9],  # the 3-epoch trial diverged after 2 epochs
            "seconds": [1.0, 2.0, 9.0],
            "starttime": [0.0, 2.0, 5.0],
            "endtime": [1.5, 4.5, 15.0],
        }
    )
    work = work_summary(trials)
    assert work["epochs_budgeted"] == 13 and work["epochs_run"] == 12
    assert work["target_seconds"] == 12.0 and work["search_seconds"] == 15.0
    assert work["overhead_share"] == pytest.approx(0.2)
    assert work_summary(pd.DataFrame()) == {}


def test_work_summary_of_two_stages_leaves_out_the_time_between_them() -> None:
    from safs_smac.report import work_summary

    # Stage 1 searched from 0 to 4 s, retrained its incumbent until 10 s, stage 2 ran 10-13 s.
    trials = pd.DataFrame(
        {
            "stage": [1, 1, 2, 2],
            "budget": [3.0, 9.0, 3.0, 9.0],
            "epochs": [3, 9, 3, 9],
            "seconds": [1.0, 2.0, 1.0, 1.5],
            "starttime": [0.0, 1.5, 10.0, 11.0],
            "endtime": [1.0, 4.0, 11.0, 13.0],
        }
    )
    work = work_summary(trials)
    assert work["search_seconds"] == 7.0 and work["target_seconds"] == 5.5
    assert work["overhead_share"] == pytest.approx(1.5 / 7.0)
