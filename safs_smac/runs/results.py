"""The results of a run: :class:`SearchResult`, the files that hold it, and reading them back.

The run history (``smac/<seed>/runhistory.json``, one per stage) is the source of truth for the
trials: ``results.csv`` is derived from it, and a ``results.csv`` that is missing, unreadable or
holds another number of trials than the run history is rebuilt from it, never trusted.
``summary.json`` is written last: its presence marks a run as finished.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from ConfigSpace import Configuration
from smac.runhistory import StatusType

from safs_smac._io import atomic_write_json
from safs_smac.problem import FinalEvaluation
from safs_smac.report import (
    format_table,
    plot_trajectory,
    read_trials,
    trajectory_references,
    trials_dataframe,
    with_incumbent_columns,
    work_summary,
    write_csv,
)
from safs_smac.runs.directory import RUN_FILE, STAGE_DIRS
from safs_smac.runs.state import load_runhistory, read_state

__all__ = [
    "SearchResult",
    "concat_stage_trials",
    "load_result",
    "load_summary",
    "plain_config",
    "trusted_trials",
    "write_result",
]

logger = logging.getLogger(__name__)

_SUMMARY_KEYS = ("dense", "baseline", "incumbent", "incumbent_cost")


@dataclass
class SearchResult:
    """What a finished search found.

    Attributes
    ----------
    output_dir
        The run directory.
    incumbent
        Best configuration (SMAC's incumbent; for multi-fidelity runs, at the highest budget seen;
        for ``protocol="paper"``, the stage-2 incumbent, a configuration of the scales_hpo space).
    incumbent_cost
        Its cost during the search (1 - validation accuracy, ties broken by the validation loss;
        see :func:`safs_smac.problem.trial_cost`).
    final
        The incumbent fine-tuned again at the max budget, with a seed no trial used: validation
        and test accuracy, per-site operators and learned alpha/beta.
    baseline
        Magnitude pruning + fine-tuning with the default activation and the dense recipe,
        same epochs.
    dense
        Validation and test accuracy of the dense model.
    trials
        One row per trial (see :func:`safs_smac.report.trials_dataframe`); with
        ``protocol="paper"`` both stages, in order, with a ``stage`` column.
    stages
        ``protocol="paper"`` and ``"staged"``: the full results of ``"stage1"`` and ``"stage2"``
        (paper: operators, then scales + HPO; staged: network level, then per layer); empty
        otherwise.
    references
        Further rows of the table, each fine-tuned like ``final``: with ``protocol="staged"``,
        ``"single_operator"`` (stage 1's incumbent: one operator for the whole network) and
        ``"tuned_finetuning"`` (the best stage-1 configuration that keeps the default activation).
    prune_epochs
        Fine-tuning epochs the pruning schedule spent before the search (0 for one-shot).
    pruning
        How the table names the pruning, e.g. ``"gradual magnitude pruning"``.
    chance
        Chance-level accuracy (``1 / classes``): the line a collapsed fine-tune ends on.
    """

    output_dir: Path
    incumbent: Configuration
    incumbent_cost: float
    final: FinalEvaluation
    baseline: FinalEvaluation
    dense: dict[str, Any]
    trials: pd.DataFrame
    stages: dict[str, SearchResult] = field(default_factory=dict)
    references: dict[str, FinalEvaluation] = field(default_factory=dict)
    prune_epochs: int = 0
    pruning: str | None = None
    chance: float | None = None

    @property
    def operators(self) -> dict[str, str]:
        return self.final.operators

    @property
    def alpha(self) -> dict[str, Any]:
        return self.final.alpha

    @property
    def beta(self) -> dict[str, Any]:
        return self.final.beta

    def summary(self) -> dict[str, Any]:
        """The JSON written to ``summary.json``."""
        summary = {
            "dense": self.dense,
            "baseline": self.baseline.to_dict(),
            "incumbent": self.final.to_dict(),
            "incumbent_cost": self.incumbent_cost,
            "n_trials": len(self.trials),
            "total_epochs": _total_epochs(self.trials),
            "prune_epochs": self.prune_epochs,
            "work": work_summary(self.trials),
        }
        # Absent from summaries written before they were recorded; the table then says less.
        if self.pruning is not None:
            summary["pruning"] = self.pruning
        if self.chance is not None:
            summary["chance"] = self.chance
        if self.references:
            summary["references"] = {k: v.to_dict() for k, v in self.references.items()}
        if self.stages:
            summary["stages"] = {
                name: {
                    "incumbent": stage.final.to_dict(),
                    "incumbent_cost": stage.incumbent_cost,
                    "n_trials": len(stage.trials),
                    "total_epochs": _total_epochs(stage.trials),
                }
                for name, stage in self.stages.items()
            }
        return summary

    def table(self) -> str:
        """The paper-shaped table as markdown."""
        return format_table(self.summary())


def _total_epochs(trials: pd.DataFrame) -> float:
    return float(trials["epochs"].sum()) if len(trials) else 0.0


def write_result(
    result: SearchResult,
    *,
    title: str,
    incumbent_extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a finished run's result files; ``summary.json`` last, as it marks the run finished."""
    output_dir = result.output_dir
    write_csv(result.trials, output_dir / "results.csv")
    atomic_write_json(
        output_dir / "incumbent.json",
        {
            "config": plain_config(result.incumbent),
            "operators": result.final.operators,
            "alpha": result.final.alpha,
            "beta": result.final.beta,
            **dict(incumbent_extra or {}),
        },
    )
    summary = result.summary()
    plot_trajectory(
        result.trials,
        output_dir / "trajectory.png",
        title=title,
        references=trajectory_references(summary),
    )
    atomic_write_json(output_dir / "summary.json", summary)


def plain_config(config: Configuration | Mapping[str, Any]) -> dict[str, Any]:
    """A configuration's values as plain Python (JSON-able, and accepted back by ConfigSpace)."""
    # numpy scalars (sampled configurations, pandas cells) are not JSON-serialisable and
    # ConfigSpace refuses some of them as values.
    return {k: v.item() if hasattr(v, "item") else v for k, v in dict(config).items()}


def is_two_stage(settings: Mapping[str, Any]) -> bool:
    """Whether a run.json is the top level of a two-stage protocol (not one of its stages)."""
    return settings.get("protocol") in ("paper", "staged") and "stage" not in settings


def load_result(output_dir: str | Path) -> SearchResult:
    """Rebuild a :class:`SearchResult` from the files of a finished run (no retraining).

    The trials come from the run history (:func:`trusted_trials`); a damaged ``summary.json``
    or ``incumbent.json`` raises a ``ValueError`` naming the file.
    """
    from safs_smac.space import load_space

    output_dir = Path(output_dir)
    summary = read_state(output_dir / "summary.json", "the run's results", keys=_SUMMARY_KEYS)
    incumbent_file = read_state(
        output_dir / "incumbent.json", "the run's incumbent", keys=("config",)
    )
    settings = read_state(output_dir / RUN_FILE, "the run's identity")
    trials = trusted_trials(output_dir, settings)
    stages: dict[str, SearchResult] = {}
    if is_two_stage(settings):
        stages = {name: load_result(output_dir / name) for name in STAGE_DIRS}
        space = stages[incumbent_file.get("stage", "stage2")].incumbent.config_space
    else:
        space = load_space(_smac_dir(output_dir, settings) / "configspace.json")
    try:
        incumbent = Configuration(space, values=incumbent_file["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{output_dir / 'incumbent.json'} holds a configuration outside the run's space "
            f"({err}); delete incumbent.json and summary.json and rerun the same command to "
            "retrain the incumbent"
        ) from None
    return SearchResult(
        output_dir=output_dir,
        incumbent=incumbent,
        incumbent_cost=summary["incumbent_cost"],
        final=_final_from_dict(summary["incumbent"], output_dir),
        baseline=_final_from_dict(summary["baseline"], output_dir),
        dense=summary["dense"],
        trials=trials,
        stages=stages,
        references={
            name: _final_from_dict(entry, output_dir)
            for name, entry in (summary.get("references") or {}).items()
        },
        prune_epochs=int(summary.get("prune_epochs") or 0),
        pruning=summary.get("pruning"),
        chance=summary.get("chance"),
    )


def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """``summary.json`` of a finished run, with a clear error when the directory is not one."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} holds no finished safs-smac run (no summary.json); "
            "pass the --output-dir of a completed `safs-smac run`"
        )
    # The search's state is intact: the run's own command retrains and rewrites the file.
    return read_state(
        path,
        "the run's results",
        keys=("dense", "baseline", "incumbent"),
        fix="rerun the `safs-smac run` command of this run to write it again",
    )


def trusted_trials(
    output_dir: str | Path, settings: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """The trials of a run, checked against its run history.

    ``results.csv`` is read when it holds exactly the run history's finished trials; otherwise
    (missing, unreadable, truncated, another count) the table is rebuilt from the run history and
    written back, with a warning. Without a run history (a run of an early version),
    ``results.csv`` is all there is.
    """
    output_dir = Path(output_dir)
    if settings is None:
        settings = read_state(output_dir / RUN_FILE, "the run's identity")
    two_stage = is_two_stage(settings)
    later_stage_wins = settings.get("protocol") != "staged"
    csv = output_dir / "results.csv"
    expected = _finished_trials(output_dir, settings)
    try:
        trials = read_trials(csv)
        trusted = expected is None or len(trials) == expected
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        trials, trusted = pd.DataFrame(), False
    if trusted and (len(trials) == 0 or "epochs" in trials):
        # Recomputed: results.csv of older versions held best_val_accuracy instead.
        return _with_stage_curve(trials, later_stage_wins=later_stage_wins)
    if expected is None:
        raise ValueError(
            f"{csv} is missing or damaged and the run has no run history to rebuild it from; "
            "rerun the search into another --output-dir"
        )
    logger.warning("%s does not match the run history; rebuilt from it", csv)
    if two_stage:
        trials = concat_stage_trials(
            {i + 1: trusted_trials(output_dir / name) for i, name in enumerate(STAGE_DIRS)},
            later_stage_wins=later_stage_wins,
        )
    else:
        trials = _history_trials(output_dir, settings)
    try:
        write_csv(trials, csv)
    except OSError as err:  # a read-only run directory still reports
        logger.warning("could not rewrite %s (%s)", csv, err.strerror or err)
    return trials


def _smac_dir(output_dir: Path, settings: Mapping[str, Any]) -> Path:
    return output_dir / "smac" / str(settings.get("seed", 0))


def _history_trials(output_dir: Path, settings: Mapping[str, Any]) -> pd.DataFrame:
    from safs_smac.space import load_space

    smac_dir = _smac_dir(output_dir, settings)
    space = load_space(smac_dir / "configspace.json")
    return trials_dataframe(load_runhistory(smac_dir / "runhistory.json", space))


def _finished_trials(output_dir: Path, settings: Mapping[str, Any]) -> int | None:
    """Finished trials in the run history(ies) of a run; ``None`` when it has none."""
    if is_two_stage(settings):
        counts = [
            _finished_trials(output_dir / name, read_state(output_dir / name / RUN_FILE, "a stage"))
            for name in STAGE_DIRS
        ]
        return None if None in counts else sum(c for c in counts if c is not None)
    runhistory = _smac_dir(output_dir, settings) / "runhistory.json"
    if not runhistory.is_file():
        return None
    content = read_state(runhistory, "the run history", keys=("data",))
    return sum(1 for trial in content["data"] if trial.get("status") != StatusType.RUNNING)


def concat_stage_trials(
    stages: Mapping[int, pd.DataFrame], *, later_stage_wins: bool = True
) -> pd.DataFrame:
    """The trials of consecutive stages as one table with a ``stage`` column.

    Trial numbers, cumulative epochs, elapsed time and the incumbent curve
    (:func:`safs_smac.report.incumbent_curve`) run on across the stages, so the anytime curve of
    a two-stage protocol is comparable with a one-stage run's. With ``later_stage_wins`` (the
    paper protocol) the incumbent moves to stage 2 at its first trial: stage 2 searches another
    space, and its incumbent is the protocol's result. Without it (the staged protocol, whose
    result is the better of its stages) the budgets of both stages rank together.
    """
    frames = [frame.assign(stage=stage) for stage, frame in stages.items() if len(frame)]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True, sort=False)
    frame["trial"] = range(1, len(frame) + 1)
    frame.insert(1, "stage", frame.pop("stage"))
    epochs = pd.to_numeric(frame["epochs"], errors="coerce").fillna(0)
    frame["cumulative_epochs"] = epochs.cumsum()
    frame["elapsed"] = frame["endtime"] - frame["starttime"].min()
    return _with_stage_curve(frame, later_stage_wins=later_stage_wins)


def _with_stage_curve(frame: pd.DataFrame, *, later_stage_wins: bool) -> pd.DataFrame:
    """The incumbent columns of a (possibly two-stage) trials table, see concat_stage_trials."""
    if later_stage_wins or "stage" not in frame:
        return with_incumbent_columns(frame)
    curve = with_incumbent_columns(frame.drop(columns="stage"))
    return curve.assign(stage=frame["stage"])[frame.columns.union(curve.columns, sort=False)]


_FINAL_FIELDS = (
    "val_accuracy",
    "test_accuracy",
    "epochs",
    "seconds",
    "diverged",
    "reason",
    "operators",
    "alpha",
    "beta",
    "sparsity",
)


def _final_from_dict(entry: Any, output_dir: Path) -> FinalEvaluation:
    missing = [k for k in _FINAL_FIELDS if not isinstance(entry, Mapping) or k not in entry]
    if missing:
        raise ValueError(
            f"{output_dir / 'summary.json'} has a damaged evaluation (no {', '.join(missing)}); "
            "delete summary.json and rerun the same command to retrain the incumbent"
        )
    return FinalEvaluation(
        **{k: entry[k] for k in _FINAL_FIELDS},
        extra={k: v for k, v in entry.items() if k not in _FINAL_FIELDS},
    )
