"""benchmarks/search_quality.py --quick: every row, paired comparisons, resumable jobs."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest


def _load():
    # pytest puts benchmarks/ on sys.path (pyproject.toml), as Python does for a script.
    return importlib.import_module("search_quality")


@pytest.mark.slow
def test_quick_run_writes_every_row_and_the_paired_comparisons(tmp_path) -> None:
    bench = _load()
    argv = ["--quick", "--workers", "1", "--scopes", "global"]
    argv += ["--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert bench.main(argv) == 0
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    stage1_rows = {"oneshot_safs_stage1", "gradual_safs_stage1"}  # from the SAFS runs themselves
    assert set(runs["method"]) == set(bench.DEFAULT_ROWS) | stage1_rows
    assert len(runs) == 2 * len(set(runs["method"]))  # two seeds
    by_seed = runs.set_index(["method", "seed"])["selection_epochs"]
    assert (by_seed["gradual_safs_stage1"] < by_seed["gradual_safs"]).all()
    assert runs["test_accuracy"].between(0, 1).all()
    by_method = runs.groupby("method")
    # No search behind the pruning baselines; gradual pruning's own epochs are reported apart.
    assert (by_method["selection_epochs"].max()[["oneshot_mp", "gradual_mp"]] == 0).all()
    assert by_method["prune_epochs"].max()["gradual_safs"] == 15
    assert by_method["prune_epochs"].max()["oneshot_safs"] == 0
    # The grid evaluates every operator at two learning rates at the max budget (2 epochs).
    grid = runs[runs["method"] == "oneshot_single_op"]["selection_epochs"]
    assert (grid == 14 * len(bench.GRID_LRS) * 2).all()
    table = (tmp_path / "out" / "table.md").read_text()
    assert "gradual + SAFS vs gradual + tuned fine-tuning" in table
    assert "| comparison | mean gain (test points) | wins | Wilcoxon p |" in table
    # Finished jobs are reused: a second run recomputes nothing and writes the same table.
    assert bench.main([*argv, "--report-only"]) == 0
    assert (tmp_path / "out" / "table.md").read_text() == table
