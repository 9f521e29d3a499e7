"""Results of a run: the trials table, the paper-shaped summary table and the trajectory plot.

Everything here reads a SMAC :class:`~smac.runhistory.RunHistory` (ours or SMAC's, the format is the
same) or the files a finished run wrote, so ``safs-smac report`` works on any run directory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from smac.runhistory import RunHistory

from safs_smac._io import atomic_path, atomic_write_text, read_json

__all__ = [
    "RESULT_FILES",
    "format_table",
    "is_collapsed",
    "plot_dnr",
    "plot_trajectory",
    "summary_table",
    "trials_dataframe",
]

# The files a finished run directory holds next to SMAC's own directory.
RESULT_FILES = ("run.json", "results.csv", "incumbent.json", "summary.json", "trajectory.png")

_INFO_COLUMNS = ("val_accuracy", "epochs", "seconds", "diverged", "reason", "sparsity", "dnr_mean")


def trials_dataframe(runhistory: RunHistory) -> pd.DataFrame:
    """One row per finished trial, in completion order, with anytime columns.

    Columns: ``trial, config_id, budget, seed, cost, status, val_accuracy, epochs, seconds,
    diverged, reason, sparsity, dnr_mean, starttime, endtime, cumulative_epochs, elapsed,
    best_val_accuracy`` followed by the configuration's hyperparameters.
    """
    rows: list[dict[str, Any]] = []
    for key in runhistory:
        value = runhistory[key]
        if value.status.name == "RUNNING":
            continue
        info = value.additional_info or {}
        config = dict(runhistory.get_config(key.config_id))
        cost = float(value.cost) if not isinstance(value.cost, list) else float(value.cost[0])
        row: dict[str, Any] = {
            "config_id": key.config_id,
            "budget": key.budget,
            "seed": key.seed,
            "cost": cost,
            "status": value.status.name,
            "starttime": value.starttime,
            "endtime": value.endtime,
        }
        for column in _INFO_COLUMNS:
            row[column] = info.get(column)
        if row["val_accuracy"] is None and math.isfinite(cost):
            row["val_accuracy"] = 1.0 - cost
        if row["epochs"] is None and key.budget is not None:
            row["epochs"] = round(key.budget)
        row.update(config)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.sort_values("endtime", kind="stable").reset_index(drop=True)
    frame.insert(0, "trial", range(1, len(frame) + 1))
    epochs = pd.to_numeric(frame["epochs"], errors="coerce").fillna(0)
    frame["cumulative_epochs"] = epochs.cumsum()
    frame["elapsed"] = frame["endtime"] - frame["starttime"].min()
    accuracy = pd.to_numeric(frame["val_accuracy"], errors="coerce").fillna(0.0)
    frame["best_val_accuracy"] = accuracy.cummax()
    return frame


def summary_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's table shape: dense, magnitude pruning + fine-tuning, SAFS (val and test, %)."""
    rows = []
    pruning = "gradual magnitude pruning" if summary.get("prune_epochs") else "magnitude pruning"
    references = summary.get("references") or {}
    for label, entry in (
        ("dense", summary.get("dense")),
        (f"{pruning} + fine-tuning (dense recipe)", summary.get("baseline")),
        ("tuned fine-tuning, default activation", references.get("tuned_finetuning")),
        ("best single operator (network-level)", references.get("single_operator")),
        ("SAFS (incumbent)", summary.get("incumbent")),
    ):
        if entry is None:
            continue
        rows.append(
            {
                "model": label,
                "val_acc_%": 100.0 * entry["val_accuracy"],
                "test_acc_%": 100.0 * entry["test_accuracy"],
                "epochs": entry.get("epochs"),
                "collapsed": is_collapsed(entry),
            }
        )
    return pd.DataFrame(rows)


#: A final fine-tune whose validation accuracy ends within this many points of chance collapsed.
COLLAPSE_MARGIN = 0.01


def is_collapsed(entry: Mapping[str, Any], num_classes: int = 10) -> bool:
    """Whether a fine-tune ended at chance level (diverged, or within 1 point of ``1/classes``)."""
    if entry.get("diverged"):
        return True
    accuracy = entry.get("val_accuracy")
    if accuracy is None or "test_accuracy" not in entry:
        return False
    return float(accuracy) <= 1.0 / num_classes + COLLAPSE_MARGIN


def format_table(summary: Mapping[str, Any]) -> str:
    """A markdown rendering of :func:`summary_table` plus the gain over magnitude pruning."""
    table = summary_table(summary)
    lines = ["| row | val acc % | test acc % | fine-tune epochs |", "|---|---|---|---|"]
    for _, row in table.iterrows():
        epochs = "" if row["epochs"] is None or pd.isna(row["epochs"]) else int(row["epochs"])
        mark = " (collapsed to chance)" if row["collapsed"] else ""
        lines.append(
            f"| {row['model']}{mark} | {row['val_acc_%']:.2f} | {row['test_acc_%']:.2f} "
            f"| {epochs} |"
        )
    if summary.get("prune_epochs"):
        lines.append("")
        lines.append(
            f"Gradual pruning spent {summary['prune_epochs']} fine-tuning epochs before any row."
        )
    if summary.get("total_epochs") is not None:
        lines.append(f"Search: {summary['total_epochs']:g} fine-tuning epochs over all trials.")
    incumbent = summary.get("incumbent")
    if incumbent is not None:
        lines.append("")
        comparisons = [
            ("pruning + fine-tuning", summary.get("baseline")),
            ("tuned fine-tuning", (summary.get("references") or {}).get("tuned_finetuning")),
            ("best single operator", (summary.get("references") or {}).get("single_operator")),
        ]
        for name, entry in comparisons:
            if entry is not None:
                gain = 100.0 * (incumbent["test_accuracy"] - entry["test_accuracy"])
                lines.append(f"SAFS vs {name} (test): {gain:+.2f} points")
    return "\n".join(lines)


def plot_trajectory(trials: pd.DataFrame, path: str | Path, *, title: str = "") -> Path:
    """Best validation accuracy so far against cumulative fine-tuning epochs and wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    if not trials.empty:
        best = 100.0 * trials["best_val_accuracy"]
        axes[0].step(trials["cumulative_epochs"], best, where="post")
        axes[1].step(trials["elapsed"], best, where="post")
        axes[0].scatter(
            trials["cumulative_epochs"],
            100.0 * trials["val_accuracy"].astype(float),
            s=8,
            alpha=0.4,
        )
    axes[0].set_xlabel("cumulative fine-tuning epochs")
    axes[1].set_xlabel("wall time (s)")
    for axis in axes:
        axis.set_ylabel("best validation accuracy (%)")
        axis.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def plot_dnr(dnr: Mapping[str, float], path: str | Path, *, title: str = "") -> Path:
    """Bar chart of the dead neuron rate per activation site."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dnr)
    fig, axis = plt.subplots(
        figsize=(max(4.0, 0.35 * len(names) + 2), 3.6), constrained_layout=True
    )
    axis.bar(range(len(names)), [100.0 * float(dnr[n]) for n in names])
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axis.set_ylabel("dead neuron rate (%)")
    axis.set_ylim(0, 100)
    if title:
        axis.set_title(title)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV atomically."""
    atomic_write_text(path, frame.to_csv(index=False))


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json`` of a finished run, with a clear error when the directory is not one."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} holds no finished safs-smac run (no summary.json); "
            "pass the --output-dir of a completed `safs-smac run`"
        )
    return read_json(path)
