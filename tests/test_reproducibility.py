"""The same command, seed and thread count on the same machine gives the same results, also with
an empty checkpoint cache each time (dense training included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from safs_smac.cli import main

RUN = [
    *("run", "--dataset", "synthetic", "--dense-epochs", "2", "--n-trials", "6"),
    *("--max-budget", "3", "--no-progress", "--device", "cpu"),
]
# Wall-clock measurements: the only fields allowed to differ between two runs.
TIMES = {
    "seconds",
    "starttime",
    "endtime",
    "elapsed",
    "prune_seconds",
    "target_seconds",
    "search_seconds",
    "overhead_share",
}


def _without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items() if k not in TIMES}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def _without_time_line(printed: str) -> str:
    """The printed table without the output directory and the search's seconds."""
    lines = printed.split("results in")[0].splitlines()
    return "\n".join(line.split(";")[0] if line.startswith("Search:") else line for line in lines)


def _run(root: Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    out = root / "run"
    assert main([*RUN, "--output-dir", str(out), "--cache-dir", str(root / "cache")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    trials = pd.read_csv(out / "results.csv")
    settings = json.loads((out / "run.json").read_text())
    return summary, trials.drop(columns=[c for c in TIMES if c in trials]), settings


def test_two_runs_with_fresh_caches_are_identical(tmp_path, capsys):
    first = _run(tmp_path / "a")
    table_a = _without_time_line(capsys.readouterr().out)
    second = _run(tmp_path / "b")
    table_b = _without_time_line(capsys.readouterr().out)
    assert _without_times(first[0]) == _without_times(second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    assert table_a == table_b
    # The dense network really was retrained (empty caches), and with the same weights.
    assert first[0]["dense"]["val_accuracy"] == second[0]["dense"]["val_accuracy"]
    assert first[2]["environment"]["torch_threads"] == torch.get_num_threads()
