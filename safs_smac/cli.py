"""The ``safs-smac`` command: ``run`` (the main job), ``space`` and ``report``.

Bad input (unknown names, out-of-range values, missing data, a directory holding another run) ends
with one line on stderr naming the problem and the fix, and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

__all__ = ["build_parser", "main"]

EXIT_BAD_INPUT = 2

# Defaults of the main job: LeNet-5 on the embedded MNIST-5k subset at 99% layer-wise sparsity,
# sized to finish in about five minutes on two CPU cores.
DEFAULT_TRIALS = 40
DEFAULT_MIN_BUDGET = 1.0
DEFAULT_MAX_BUDGET = 9.0


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _operator_list(text: str) -> list[str]:
    operators = _csv_list(text)
    if not operators:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated operator names, got {text!r}; e.g. relu,swish,elu "
            "(`safs-smac run --help` lists the defaults)"
        )
    return operators


def _rate_range(text: str) -> tuple[float, float]:
    parts = _csv_list(text)
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("expected MIN,MAX, e.g. 0.9,0.99")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError("expected two numbers MIN,MAX, e.g. 0.9,0.99") from None
    return low, high


def _positive_number(what: str, *, allow_inf: bool) -> Callable[[str], float]:
    """An argparse type: a number > 0 (``nan`` refused, ``inf`` only where it means no limit)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if math.isnan(value) or value <= 0 or (math.isinf(value) and not allow_inf):
            limit = " (or inf for no limit)" if allow_inf else ", finite"
            raise argparse.ArgumentTypeError(f"expected {what} > 0{limit}, got {text}")
        return value

    return parse


_epochs = _positive_number("a number of epochs", allow_inf=False)
_seconds = _positive_number("seconds", allow_inf=True)


def _non_negative_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def _output_dir(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "expected a directory, got an empty name (a run never writes into the current "
            "directory); e.g. --output-dir safs_runs/run1"
        )
    return Path(text)


def _eta(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"successive halving keeps 1/eta of the configurations per rung, so eta must be an "
            f"integer >= 2, got {value}; the usual value is 3"
        )
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the problem and the fix (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; an option whose help states its default gets no "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None and "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option shows its default in ``--help``)."""
    from safs_smac.search.names import (
        ASK_TELL_OPTIMIZERS,
        DEFAULT_JOINT_OPTIMIZER,
        DEFAULT_STAGE1_OPTIMIZER,
        DEFAULT_STAGE2_OPTIMIZER,
        OPTIMIZER_NAMES,
        PROTOCOLS,
        SMAC_OPTIMIZERS,
    )

    fmt = _HelpFormatter
    parser = _Parser(
        prog="safs-smac",
        description="Sparse Activation Function Search (SAFS) for pruned networks, "
        "driven by SMAC3.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="prune a model and search activations + fine-tuning hyperparameters (the main job)",
        description="Train (or load from cache) the dense model, prune it, search the SAFS space "
        "with SMAC or LAHC, retrain the incumbent and print the paper-shaped table.",
        formatter_class=fmt,
    )
    _add_problem_arguments(run)
    run.add_argument(
        "--protocol",
        default=None,
        choices=list(PROTOCOLS),
        help="staged (default with a SMAC optimizer): one operator for the whole network + "
        "fine-tuning hyperparameters first, then per layer warm-started from it (the better on "
        "validation wins); joint (default with an ask/tell optimiser or smac-random/hyperband): "
        "one search over operators, scales and fine-tuning hyperparameters; paper: "
        "the SAFS paper's stage 1 (operators, alpha = beta = 1, default recipe) then stage 2 "
        "(scales + hyperparameters with the stage-1 operators), then the final retraining "
        "(default: staged with smac-mf, smac-hpo or smac-bb, joint with the others)",
    )
    run.add_argument(
        "--optimizer",
        default=None,
        choices=list(OPTIMIZER_NAMES),
        help=f"search algorithm: SMAC facades {', '.join(SMAC_OPTIMIZERS)}; ask/tell optimisers "
        f"{', '.join(ASK_TELL_OPTIMIZERS)} (every trial at --max-budget, one at a time; random = "
        "i.i.d. random search, greedy = the reference's 'RS', sa = simulated annealing). With "
        f"--protocol paper an ask/tell name replaces {DEFAULT_STAGE1_OPTIMIZER} in stage 1 and a "
        f"SMAC name replaces {DEFAULT_STAGE2_OPTIMIZER} in stage 2 "
        f"(default: {DEFAULT_JOINT_OPTIMIZER}; with --protocol paper {DEFAULT_STAGE1_OPTIMIZER} "
        f"then {DEFAULT_STAGE2_OPTIMIZER})",
    )
    run.add_argument(
        "--n-trials",
        type=int,
        default=DEFAULT_TRIALS,
        help="number of trials (--protocol paper: both stages together)",
    )
    run.add_argument(
        "--stage1-trials",
        type=int,
        default=None,
        help="--protocol paper or staged: stage-1 trials (default: half of --n-trials)",
    )
    run.add_argument(
        "--stage2-trials",
        type=int,
        default=None,
        help="--protocol paper or staged: stage-2 trials (default: the rest of --n-trials)",
    )
    run.add_argument(
        "--stage1-epochs",
        type=int,
        default=None,
        help="--protocol paper: fine-tuning epochs of a stage-1 trial (default: --max-budget)",
    )
    run.add_argument(
        "--stage2-epochs",
        type=int,
        default=None,
        help="--protocol paper: fine-tuning epochs of a stage-2 trial (default: --max-budget)",
    )
    run.add_argument(
        "--walltime",
        type=_seconds,
        default=math.inf,
        help="search wall-clock limit in seconds (--protocol paper: of each stage)",
    )
    run.add_argument(
        "--min-budget", type=_epochs, default=DEFAULT_MIN_BUDGET, help="fewest fine-tuning epochs"
    )
    run.add_argument(
        "--max-budget",
        type=_epochs,
        default=DEFAULT_MAX_BUDGET,
        help="most fine-tuning epochs (also used to retrain the incumbent and the baseline)",
    )
    run.add_argument("--eta", type=_eta, default=3, help="successive-halving reduction factor")
    run.add_argument(
        "--output-dir",
        type=_output_dir,
        default=None,
        help="run directory (default: "
        "safs_runs/<model>_<dataset>_<pruning><rate>_<optimizer or paper-...>_s<seed>)",
    )
    run.add_argument(
        "--n-workers",
        type=int,
        default=1,
        help="trials at a time: > 1 starts a local Dask cluster of this many processes (torch "
        "threads per worker = cores / workers); ask/tell optimisers such as LAHC evaluate this "
        "many neighbours per step",
    )
    run.add_argument(
        "--scheduler-file",
        type=Path,
        default=None,
        help="run the trials on the running Dask cluster of this scheduler file (`dask scheduler "
        "--scheduler-file F`, dask-jobqueue) instead of a local one (default: none)",
    )
    run.add_argument(
        "--trial-walltime",
        type=float,
        default=None,
        help="seconds one trial may run; longer trials are stopped and recorded as TIMEOUT "
        "(default: no limit)",
    )
    run.add_argument(
        "--trial-memory",
        type=float,
        default=None,
        help="megabytes of virtual memory one trial may map; more is recorded as MEMORYOUT "
        "(default: no limit)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different run in --output-dir (only the files a run writes are removed; "
        "a directory holding anything else is refused)",
    )
    run.add_argument(
        "--wait",
        type=_non_negative_number,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another process using --output-dir to finish (default: refuse "
        "at once)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument("-v", "--verbose", action="store_true", help="log cache hits and SMAC info")

    space = commands.add_parser(
        "space",
        help="print or write the ConfigSpace of a zoo model",
        description="Build the SAFS search space of a zoo model and print it as JSON or YAML.",
        formatter_class=fmt,
    )
    space.add_argument("--model", default="lenet5", help="zoo model (see `safs-smac run --help`)")
    space.add_argument(
        "--stage",
        default="joint",
        choices=["joint", "operators", "scales_hpo"],
        help="space variant",
    )
    space.add_argument(
        "--granularity", default="layer", choices=["layer", "network"], help="per-site or shared"
    )
    space.add_argument("--flat", action="store_true", help="condition-free variant")
    space.add_argument(
        "--operators",
        type=_operator_list,
        default=None,
        help="comma-separated operator set (default: the SAFS set + the model's default)",
    )
    space.add_argument("--format", default="json", choices=["json", "yaml"], help="output format")
    space.add_argument("--output", type=Path, default=None, help="file to write (default: stdout)")

    report = commands.add_parser(
        "report",
        help="tables and plots of a finished run",
        description="Print the summary table of a finished run and redraw its plots.",
        formatter_class=fmt,
    )
    report.add_argument("output_dir", type=Path, help="run directory of `safs-smac run`")
    return parser


def _add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet5", help="zoo model name")
    parser.add_argument("--dataset", default="mnist-5k", help="data set name")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="directory with on-disk data sets (default: none; mnist-5k and synthetic need none)",
    )
    parser.add_argument(
        "--pruning-rate", type=float, default=0.99, help="fraction of weights pruned, 0 <= r < 1"
    )
    parser.add_argument(
        "--pruning", default="layerwise", choices=["layerwise", "global"], help="pruning scope"
    )
    parser.add_argument(
        "--prune-schedule",
        default="gradual",
        choices=["one-shot", "gradual", "ap"],
        help="gradual magnitude pruning (6 rounds, 3 fine-tuning epochs between rounds; about "
        "twice the accuracy of one-shot at 99%%, see the README), one-shot (the paper's "
        "protocol) or ap (Activating-while-Pruning, 6 cycles, --pruning global only); the "
        "search starts from the pruned network",
    )
    parser.add_argument(
        "--objective",
        default="accuracy",
        choices=["accuracy", "error"],
        help="trial cost: accuracy (1 - val accuracy, ties broken by val loss) or error "
        "(plain 1 - val accuracy, as in the paper)",
    )
    parser.add_argument(
        "--stage", default="joint", choices=["joint", "operators", "scales_hpo"], help="space"
    )
    parser.add_argument(
        "--granularity", default="layer", choices=["layer", "network"], help="per-site or shared"
    )
    parser.add_argument(
        "--operators",
        type=_operator_list,
        default=None,
        help="comma-separated operator set (default: the SAFS set + the model's default)",
    )
    parser.add_argument(
        "--search-rate",
        type=_rate_range,
        default=None,
        help="also search the pruning rate in MIN,MAX (default: the rate stays fixed)",
    )
    parser.add_argument(
        "--dense-epochs",
        type=int,
        default=None,
        help="dense training epochs (default: per model)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of training and search")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="checkpoint cache (default: $SAFS_SMAC_CACHE or ~/.cache/safs-smac)",
    )


def _version() -> str:
    from safs_smac._version import __version__

    return f"safs-smac {__version__}"


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


def _cmd_run(args: argparse.Namespace) -> int:
    from safs_smac.problem import SAFSProblem
    from safs_smac.search import optimize, run_label

    problem = SAFSProblem(
        args.model,
        args.dataset,
        pruning_rate=args.pruning_rate,
        pruning=args.pruning,
        prune_schedule=args.prune_schedule,
        objective=args.objective,
        data_root=args.data_root,
        device=args.device,
        cache_dir=args.cache_dir,
        seed=args.seed,
        dense_epochs=args.dense_epochs,
        max_budget=max(1, round(args.max_budget)),
        stage=args.stage,
        granularity=args.granularity,
        operators=args.operators,
        search_rate=args.search_rate,
    )
    problem.dataset  # noqa: B018 - load now: a missing data directory must fail before any write
    label = run_label(args.optimizer, args.protocol)
    output_dir = args.output_dir or Path("safs_runs") / (
        f"{problem.model_name}_{problem.dataset_name}_{problem.pruning}{problem.pruning_rate:g}"
        f"{'' if args.prune_schedule == 'one-shot' else '-' + args.prune_schedule}"
        f"_{label}_s{args.seed}"
    )
    result = optimize(
        problem,
        args.optimizer,
        protocol=args.protocol,
        stage1_trials=args.stage1_trials,
        stage1_epochs=args.stage1_epochs,
        stage2_trials=args.stage2_trials,
        stage2_epochs=args.stage2_epochs,
        n_trials=args.n_trials,
        walltime=args.walltime,
        min_budget=args.min_budget,
        max_budget=args.max_budget,
        seed=args.seed,
        output_dir=output_dir,
        n_workers=args.n_workers,
        scheduler_file=args.scheduler_file,
        trial_walltime_limit=args.trial_walltime,
        trial_memory_limit=args.trial_memory,
        overwrite=args.overwrite,
        wait=args.wait,
        eta=args.eta,
        progress=not args.no_progress,
    )
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
        load_summary,
        plot_dnr,
        plot_trajectory,
        read_trials,
        trajectory_references,
    )
    from safs_smac.runs.results import trusted_trials

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
