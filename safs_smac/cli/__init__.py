"""The ``safs-smac`` command: ``run`` (the main job), ``space`` and ``report``.

Bad input (unknown names, out-of-range values, missing data, a directory holding another run) ends
with one line on stderr naming the problem and the fix, and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safs_smac.cli.arguments import (
    DEFAULT_MAX_BUDGET,
    DEFAULT_MIN_BUDGET,
    DEFAULT_TRIALS,
    EXIT_BAD_INPUT,
    build_parser,
)

if TYPE_CHECKING:
    from safs_smac.problem import SAFSProblem

__all__ = [
    "DEFAULT_MAX_BUDGET",
    "DEFAULT_MIN_BUDGET",
    "DEFAULT_TRIALS",
    "build_parser",
    "main",
    "run_options",
    "run_problem",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``safs-smac`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "space":
            return _cmd_space(args)
        return _cmd_report(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"safs-smac: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # a path that cannot be read or written: the user's to fix
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"safs-smac: error: {err.strerror or err}{where}; check that the path exists, is "
            "writable and has space, or choose another one",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("safs-smac: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def run_problem(args: argparse.Namespace, **overrides: Any) -> SAFSProblem:
    """The problem ``safs-smac run`` builds from its parsed arguments; ``overrides`` are further
    :class:`~safs_smac.problem.SAFSProblem` keywords (benchmarks vary the seed or the cache)."""
    from safs_smac.problem import SAFSProblem

    settings = {
        "pruning_rate": args.pruning_rate,
        "pruning": args.pruning,
        "prune_schedule": args.prune_schedule,
        "objective": args.objective,
        "data_root": args.data_root,
        "device": args.device,
        "cache_dir": args.cache_dir,
        "seed": args.seed,
        "dense_epochs": args.dense_epochs,
        "max_budget": max(1, round(args.max_budget)),
        "stage": args.stage,
        "granularity": args.granularity,
        "operators": args.operators,
        "search_rate": args.search_rate,
    }
    return SAFSProblem(args.model, args.dataset, **{**settings, **overrides})


def run_options(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The keywords ``safs-smac run`` passes to :func:`~safs_smac.search.optimize` besides the
    problem and the optimizer; ``overrides`` replace some (benchmarks vary the seed or the
    directory)."""
    options = {
        "protocol": args.protocol,
        "stage1_trials": args.stage1_trials,
        "stage1_epochs": args.stage1_epochs,
        "stage2_trials": args.stage2_trials,
        "stage2_epochs": args.stage2_epochs,
        "n_trials": args.n_trials,
        "walltime": args.walltime,
        "min_budget": args.min_budget,
        "max_budget": args.max_budget,
        "seed": args.seed,
        "n_workers": args.n_workers,
        "scheduler_file": args.scheduler_file,
        "trial_walltime_limit": args.trial_walltime,
        "trial_memory_limit": args.trial_memory,
        "overwrite": args.overwrite,
        "wait": args.wait,
        "eta": args.eta,
        "intensifier": args.intensifier,
        "progress": not args.no_progress,
    }
    return {**options, **overrides}


def _cmd_run(args: argparse.Namespace) -> int:
    from safs_smac.search import optimize, run_label

    problem = run_problem(args)
    problem.dataset  # noqa: B018 - load now: a missing data directory must fail before any write
    label = run_label(args.optimizer, args.protocol)
    output_dir = args.output_dir or Path("safs_runs") / (
        f"{problem.model_name}_{problem.dataset_name}_{problem.pruning}{problem.pruning_rate:g}"
        f"{'' if args.prune_schedule == 'one-shot' else '-' + args.prune_schedule}"
        f"_{label}_s{args.seed}"
    )
    result = optimize(problem, args.optimizer, **run_options(args, output_dir=output_dir))
    print()
    print(
        f"{problem.model_name} on {problem.dataset_name}, {problem.pruning} "
        f"{problem.prune_schedule.label} at {100 * problem.pruning_rate:g}% sparsity, "
        f"{len(result.trials)} trials ({label})"
    )
    print(result.table())
    for name, stage in result.stages.items():
        print(
            f"{name}: val {100 * stage.final.val_accuracy:.2f}%, "
            f"test {100 * stage.final.test_accuracy:.2f}% after {stage.final.epochs} epochs "
            f"({len(stage.trials)} trials)"
        )
    print()
    print("incumbent operators: " + ", ".join(f"{k}={v}" for k, v in result.operators.items()))
    print(f"results in {output_dir}")
    return 0


def _cmd_space(args: argparse.Namespace) -> int:
    from safs_smac.space import save_space, space_to_text, zoo_space

    space = zoo_space(
        args.model,
        stage=args.stage,
        granularity=args.granularity,
        flat=args.flat,
        operators=args.operators,
    )
    if args.output is None:
        sys.stdout.write(space_to_text(space, args.format))
    else:
        if args.output.is_dir():
            raise ValueError(f"--output {args.output} is a directory; name a file in it")
        if not args.output.parent.is_dir():
            raise ValueError(
                f"--output {args.output}: the directory {args.output.parent} does not exist; "
                "create it or name a file in an existing directory"
            )
        save_space(space, args.output, args.format)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from safs_smac.report import (
        format_table,
        plot_dnr,
        plot_trajectory,
        read_trials,
        trajectory_references,
    )
    from safs_smac.runs.results import load_summary, trusted_trials

    summary = load_summary(args.output_dir)
    # Checked against the run history: a truncated results.csv is rebuilt, never trusted.
    trials = (
        trusted_trials(args.output_dir)
        if (args.output_dir / "run.json").exists()
        else (read_trials(args.output_dir / "results.csv"))
    )
    print(format_table(summary))
    for name, stage in summary.get("stages", {}).items():  # --protocol paper
        final = stage["incumbent"]
        print(
            f"{name}: val {100 * final['val_accuracy']:.2f}%, test "
            f"{100 * final['test_accuracy']:.2f}% ({stage['n_trials']} trials)"
        )
    incumbent = summary["incumbent"]
    print()
    print("site | operator | alpha | beta | dead neuron rate")
    dnr = incumbent.get("dnr") or {}
    for site, op in incumbent["operators"].items():
        alpha, beta = incumbent["alpha"].get(site), incumbent["beta"].get(site)
        rate = dnr.get(site)
        print(
            f"{site} | {op} | {_fmt(alpha)} | {_fmt(beta)} | "
            f"{'' if rate is None else f'{100 * rate:.1f}%'}"
        )
    print()
    print(f"{len(trials)} trials, {trials['epochs'].sum():.0f} fine-tuning epochs")
    try:
        plot_trajectory(
            trials, args.output_dir / "trajectory.png", references=trajectory_references(summary)
        )
        if dnr:
            plot_dnr(dnr, args.output_dir / "dnr.png", title="incumbent: dead neuron rate per site")
    except OSError as err:  # a read-only run directory still reports
        print(
            f"safs-smac: note: plots not redrawn in {args.output_dir} ({err.strerror or err})",
            file=sys.stderr,
        )
        return 0
    print(f"plots in {args.output_dir}")
    return 0


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return f"[{len(value)} channels]"
    return "" if value is None else str(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
