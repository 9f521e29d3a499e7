"""Results of a run: the trials table, the paper-shaped summary table and the trajectory plot.

Everything here reads a SMAC :class:`~smac.runhistory.RunHistory` (ours or SMAC's, the format is the
same) or the files a finished run wrote, so ``safs-smac report`` works on any run directory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from smac.runhistory import RunHistory

from safs_smac._io import atomic_path, atomic_write_text

__all__ = [
    "RESULT_FILES",
    "format_table",
    "incumbent_curve",
    "is_collapsed",
    "plot_dnr",
    "plot_trajectory",
    "read_trials",
    "summary_table",
    "trajectory_references",
    "trials_dataframe",
    "with_incumbent_columns",
    "work_summary",
]

# The files a finished run directory holds next to SMAC's own directory.
RESULT_FILES = ("run.json", "results.csv", "incumbent.json", "summary.json", "trajectory.png")

_INCUMBENT_LABEL = "incumbent at highest budget so far"
_INFO_COLUMNS = (
    "val_accuracy",
    "epochs",
    "resumed_from",
    "seconds",
    "diverged",
    "reason",
    "sparsity",
    "dnr_mean",
)


def trials_dataframe(runhistory: RunHistory) -> pd.DataFrame:
    """One row per finished trial, in completion order, with anytime columns.

    Columns: ``trial, config_id, budget, seed, cost, status, val_accuracy, epochs, resumed_from,
    seconds, diverged, reason, sparsity, dnr_mean, starttime, endtime, cumulative_epochs, elapsed,
    incumbent_budget, incumbent_val_accuracy`` followed by the configuration's hyperparameters.

    ``budget`` is empty (NaN) for optimizers that run every trial at the max budget. ``epochs``
    are the fine-tuning epochs the trial ran; a trial that continued an earlier trial of its
    configuration (budget continuation) ran ``budget - resumed_from`` of them.
    ``cumulative_epochs`` and ``elapsed`` (seconds since the first trial started) are the anytime
    x axes. ``incumbent_budget`` and ``incumbent_val_accuracy`` are the incumbent trajectory of
    :func:`incumbent_curve`: after each trial, the best validation accuracy among the trials at
    the highest budget evaluated so far, and that budget. In a multi-fidelity run this curve can
    drop when a higher budget is first reached; a low-budget trial never sets it once a higher
    budget has been evaluated. Without budgets it is the running maximum of ``val_accuracy``.
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
        for site, rate in (info.get("dnr") or {}).items():
            row[f"dnr:{site}"] = rate
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
    return with_incumbent_columns(frame)


def _incumbent_steps(trials: pd.DataFrame) -> tuple[list[float], list[float], list[bool]]:
    """The rule of :func:`incumbent_curve`, plus where the incumbent's fidelity changes."""
    n = len(trials)
    budget = (
        pd.to_numeric(trials["budget"], errors="coerce")
        if "budget" in trials
        else pd.Series(math.nan, index=trials.index)
    ).to_numpy(float)
    stage = (
        pd.to_numeric(trials["stage"], errors="coerce").fillna(0)
        if "stage" in trials
        else pd.Series(0, index=trials.index)
    ).to_numpy(float)
    # A trial without an accuracy (crashed) counts as 0, as its cost (WORST_COST) says.
    accuracy = pd.to_numeric(trials["val_accuracy"], errors="coerce").fillna(0.0).to_numpy(float)
    budgets: list[float] = []
    values: list[float] = []
    changed: list[bool] = []
    top: tuple[float, float] | None = None
    top_budget, best = math.nan, -math.inf
    for i in range(n):
        # No budget = the max budget: every trial of a non-multi-fidelity optimizer.
        key = (stage[i], math.inf if math.isnan(budget[i]) else budget[i])
        raised = top is None or key > top
        if raised:
            top, top_budget, best = key, budget[i], accuracy[i]
        elif key == top:
            best = max(best, accuracy[i])
        budgets.append(top_budget)
        values.append(best)
        changed.append(raised)
    return budgets, values, changed


def incumbent_curve(trials: pd.DataFrame) -> pd.DataFrame:
    """The incumbent trajectory of trials given in completion order.

    After each trial: the highest budget among the trials finished so far (a trial without a
    budget, NaN or None, counts as the max budget, i.e. +inf) and the best validation accuracy
    among the trials so far at that budget. A trial at a lower budget never sets the curve once a
    higher budget has been evaluated, so in a multi-fidelity run the curve can drop when a higher
    budget is first reached: it is what the run would return at that point, not the best
    accuracy of any trial at any budget. Without budgets it is the running maximum.

    With a ``stage`` column (the two-stage paper protocol) a later stage ranks above every budget
    of an earlier one: stage 2 searches another space and its incumbent is the run's result.

    Returns a frame with the index of ``trials`` and the columns ``incumbent_budget`` (NaN for
    the max budget of an optimizer without budgets) and ``incumbent_val_accuracy``; a trial
    without a validation accuracy (crashed) counts as accuracy 0, as its cost does.
    """
    budgets, values, _ = _incumbent_steps(trials)
    return pd.DataFrame(
        {"incumbent_budget": budgets, "incumbent_val_accuracy": values},
        index=trials.index,
        dtype=float,
    )


def with_incumbent_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with the columns of :func:`incumbent_curve` (re)computed.

    Drops ``best_val_accuracy``, the running maximum over every budget that results.csv held
    before the incumbent curve replaced it, so old run directories read the same as new ones.
    """
    frame = trials.drop(columns=["best_val_accuracy"], errors="ignore")
    if frame.empty:
        return frame
    curve = incumbent_curve(frame)
    for column in curve:
        frame[column] = curve[column]
    return frame


def work_summary(trials: pd.DataFrame) -> dict[str, float]:
    """What a search cost: epochs budgeted and run, seconds in the target and in the search.

    ``epochs_budgeted`` sums the trials' budgets (a trial without a budget counts the epochs it was
    asked to run), ``epochs_run`` the epochs that actually ran (a diverged trial stops early, a
    continued trial skips the epochs it continued from); ``epochs_continued`` sums those skipped
    epochs over the ``trials_continued`` trials that continued an earlier one.
    ``target_seconds`` is the time inside the target function, ``search_seconds`` the span from
    the first trial's start to the last trial's end (a resumed run includes its downtime; a
    two-stage protocol sums its stages' spans, so stage 1's final retraining between them is not
    counted), and ``overhead_share`` the rest's share of it: the optimizer, the runner and our
    bookkeeping.
    """
    if trials.empty:
        return {}
    epochs = pd.to_numeric(trials.get("epochs"), errors="coerce").fillna(0.0)
    budgets = pd.to_numeric(trials.get("budget"), errors="coerce")
    budgeted = budgets.fillna(epochs) if budgets is not None else epochs
    # Absent from results written before budget continuation: nothing was continued then.
    resumed = pd.to_numeric(trials.get("resumed_from", 0.0), errors="coerce")
    resumed = pd.Series(resumed, index=trials.index).fillna(0.0)
    target = float(pd.to_numeric(trials.get("seconds"), errors="coerce").fillna(0.0).sum())
    stages = trials.groupby("stage") if "stage" in trials else [(None, trials)]
    span = sum(float(part["endtime"].max() - part["starttime"].min()) for _, part in stages)
    return {
        "epochs_budgeted": float(budgeted.round().sum()),
        "epochs_run": float(epochs.sum()),
        "epochs_continued": float(resumed.sum()),
        "trials_continued": int((resumed > 0).sum()),
        "target_seconds": target,
        "search_seconds": span,
        "overhead_share": max(0.0, 1.0 - target / span) if span > 0 else 0.0,
    }


def summary_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's table shape: dense, magnitude pruning + fine-tuning, SAFS (val and test, %)."""
    rows = []
    # A summary written before pruning schedules existed was one-shot magnitude pruning.
    pruning = summary.get("pruning", "magnitude pruning")
    chance = summary.get("chance")
    references = summary.get("references") or {}
    for label, entry in (
        ("dense", summary.get("dense")),
        (f"{pruning} + fine-tuning (dense recipe)", summary.get("baseline")),
        ("tuned fine-tuning, default activation (stage 1)", references.get("tuned_finetuning")),
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
                # Unknown chance level (older summaries): nothing is marked.
                "collapsed": chance is not None and is_collapsed(entry, chance),
            }
        )
    return pd.DataFrame(rows)


#: A final fine-tune whose validation accuracy ends within this many points of chance collapsed.
COLLAPSE_MARGIN = 0.01


def is_collapsed(entry: Mapping[str, Any], chance: float) -> bool:
    """Whether a fine-tune ended at chance level: diverged, or a validation accuracy within
    :data:`COLLAPSE_MARGIN` of ``chance`` (``1 / classes``)."""
    if entry.get("diverged"):
        return True
    accuracy = entry.get("val_accuracy")
    if accuracy is None or "test_accuracy" not in entry:
        return False
    return float(accuracy) <= chance + COLLAPSE_MARGIN


def trajectory_references(summary: Mapping[str, Any]) -> dict[str, float]:
    """The horizontal lines of a run's ``trajectory.png``: the retrained baseline and chance."""
    references = {"pruning + fine-tuning (retrained)": summary["baseline"]["val_accuracy"]}
    if summary.get("chance") is not None:
        references["chance"] = summary["chance"]
    return references


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
            f"The pruning ({summary.get('pruning', 'its schedule')}) spent "
            f"{summary['prune_epochs']} fine-tuning epochs before any row."
        )
    work = summary.get("work") or {}
    if work:
        lines.append(
            f"Search: {work['epochs_run']:g} fine-tuning epochs run of {work['epochs_budgeted']:g} "
            f"budgeted; {work['target_seconds']:.1f} s training in {work['search_seconds']:.1f} s "
            f"of search ({100 * work['overhead_share']:.0f}% optimizer and bookkeeping)."
        )
        if work.get("trials_continued"):
            lines.append(
                f"{work['trials_continued']} promoted or revisited trial(s) continued from an "
                f"earlier trial's state instead of re-running {work['epochs_continued']:g} epochs."
            )
    elif summary.get("total_epochs") is not None:
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


def plot_trajectory(
    trials: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "",
    references: Mapping[str, float] | None = None,
) -> Path:
    """The incumbent curve against cumulative fine-tuning epochs and wall time, with the trials.

    The curve is :func:`incumbent_curve` (recomputed, so results.csv files written before it
    existed plot the same way); a marker shows each point where the incumbent moves to a higher
    budget (or the next stage), and the trials are scattered, one colour per budget.
    ``references`` (label -> validation accuracy in [0, 1], e.g. chance level and the pruning
    baseline) are drawn as horizontal lines, so a gain reads against what it is a gain over.
    """
    plt = _pyplot()
    # One shared y-axis from 0 to 100%: a gain of one point must look like one point.
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True, sharey=True)
    axes[0].set_ylim(0, 100)
    xs = ("cumulative_epochs", "elapsed")
    if not trials.empty:
        budgets, values, changed = _incumbent_steps(trials)
        curve = 100.0 * pd.Series(values, index=trials.index)
        raised = pd.Series(changed, index=trials.index)
        accuracy = 100.0 * pd.to_numeric(trials["val_accuracy"], errors="coerce")
        budget = (
            pd.to_numeric(trials["budget"], errors="coerce")
            if "budget" in trials
            else pd.Series(math.nan, index=trials.index)
        )
        levels: Sequence[float] = sorted(budget.dropna().unique())
        groups: list[tuple[str, pd.Series]] = [
            (f"trials at budget {level:g}", budget == level) for level in levels
        ]
        if budget.isna().any():
            name = "trials at the max budget" if levels else "trials"
            groups.append((name, budget.isna()))
        colours = plt.get_cmap("viridis")
        for axis, column in zip(axes, xs):
            x = trials[column]
            for k, (label, mask) in enumerate(groups):
                axis.scatter(
                    x[mask],
                    accuracy[mask],
                    s=14,
                    alpha=0.6,
                    color=colours(k / max(1, len(groups) - 1) * 0.75),
                    label=label,
                )
            axis.step(x, curve, where="post", color="C3", lw=1.6, label=_INCUMBENT_LABEL)
            axis.scatter(
                x[raised],
                curve[raised],
                marker="D",
                s=28,
                facecolors="none",
                edgecolors="C3",
                zorder=3,
                label="incumbent budget raised",
            )
            if len(levels) > 1:
                for i in trials.index[raised]:
                    b = budgets[trials.index.get_loc(i)]
                    text = "max" if math.isnan(b) else f"{b:g}"
                    axis.annotate(
                        text,
                        (x[i], curve[i]),
                        textcoords="offset points",
                        xytext=(3, 4),
                        fontsize=7,
                        color="C3",
                    )
        for k, (label, value) in enumerate((references or {}).items()):
            for axis in axes:
                axis.axhline(
                    100.0 * value, color="0.4", ls=(0, (4, 2 + 2 * k)), lw=1.0, label=label
                )
        axes[0].legend(fontsize=7, loc="best")
    axes[0].set_xlabel("cumulative fine-tuning epochs")
    axes[1].set_xlabel("wall time (s)")
    for axis in axes:
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save_png(fig, path)


def plot_dnr(dnr: Mapping[str, float], path: str | Path, *, title: str = "") -> Path:
    """Bar chart of the dead neuron rate per activation site."""
    plt = _pyplot()
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
    return _save_png(fig, path)


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically (a reader never sees half a file), close it."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)
    return Path(path)


def read_trials(path: str | Path) -> pd.DataFrame:
    """``results.csv`` of a run; text columns stay text (an empty ``reason`` is not a float NaN)."""
    return pd.read_csv(path, dtype={"reason": "string", "status": "string"})


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a DataFrame as CSV atomically."""
    atomic_write_text(path, frame.to_csv(index=False))
