"""The ``safs-smac`` command line's arguments: the parser and the argument types.

Every type turns a bad value into an ``argparse`` error that names the option and the fix.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from safs_smac._version import __version__

__all__ = [
    "DEFAULT_MAX_BUDGET",
    "DEFAULT_MIN_BUDGET",
    "DEFAULT_TRIALS",
    "EXIT_BAD_INPUT",
    "build_parser",
]

EXIT_BAD_INPUT = 2

# Defaults of the main job: LeNet-5 on the embedded MNIST-5k subset at 99% layer-wise sparsity,
# sized to finish in about five minutes on two CPU cores.
DEFAULT_TRIALS = 60
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
    from safs_smac.search import names

    fmt = _HelpFormatter
    parser = _Parser(
        prog="safs-smac",
        description="Sparse Activation Function Search (SAFS) for pruned networks, "
        "driven by SMAC3.",
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"safs-smac {__version__}")
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
        choices=list(names.PROTOCOLS),
        help="staged (default with a SMAC optimizer): one operator for the whole network + "
        "fine-tuning hyperparameters first, then per layer warm-started from it (the better on "
        "validation wins); joint (default with an ask/tell optimizer or smac-random/hyperband): "
        "one search over operators, scales and fine-tuning hyperparameters; paper: "
        "the SAFS paper's stage 1 (operators, alpha = beta = 1, default recipe) then stage 2 "
        "(scales + hyperparameters with the stage-1 operators), then the final retraining "
        "(default: staged with smac-mf, smac-hpo or smac-bb, joint with the others)",
    )
    run.add_argument(
        "--optimizer",
        default=None,
        choices=list(names.OPTIMIZER_NAMES),
        help=f"search algorithm: SMAC facades {', '.join(names.SMAC_OPTIMIZERS)}; ask/tell "
        f"optimizers {', '.join(names.ASK_TELL_OPTIMIZERS)} (every trial at --max-budget, one at a "
        "time; random = i.i.d. random search, greedy = the reference's 'RS', sa = simulated "
        "annealing). With --protocol paper an ask/tell name replaces "
        f"{names.DEFAULT_STAGE1_OPTIMIZER} in stage 1 and a SMAC name replaces "
        f"{names.DEFAULT_STAGE2_OPTIMIZER} in stage 2 (default: {names.DEFAULT_JOINT_OPTIMIZER}; "
        f"with --protocol paper {names.DEFAULT_STAGE1_OPTIMIZER} then "
        f"{names.DEFAULT_STAGE2_OPTIMIZER})",
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
    run.add_argument(
        "--eta",
        type=_eta,
        default=None,
        help="successive-halving reduction factor of smac-mf and hyperband (default: 2 for the "
        "staged protocol, 3 otherwise)",
    )
    run.add_argument(
        "--intensifier",
        choices=names.INTENSIFIERS,
        default=None,
        help="how smac-mf and hyperband promote trials (default: successive-halving for the "
        "staged protocol, hyperband otherwise)",
    )
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
        "threads per worker = cores / workers); ask/tell optimizers such as LAHC evaluate this "
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
    _add_space_arguments(space)
    space.add_argument("--flat", action="store_true", help="condition-free variant")
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


def _add_space_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the search space, the same for ``run`` and ``space``."""
    parser.add_argument(
        "--stage",
        default="joint",
        choices=["joint", "operators", "scales_hpo"],
        help="space variant",
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


def _add_directory(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """An optional directory option (``None`` unless given)."""
    parser.add_argument(flag, type=Path, default=None, help=help)


def _add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet5", help="zoo model name")
    parser.add_argument("--dataset", default="mnist-5k", help="data set name")
    _add_directory(
        parser,
        "--data-root",
        "directory with on-disk data sets (default: none; mnist-5k and synthetic need none)",
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
    _add_space_arguments(parser)
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
    _add_directory(
        parser, "--cache-dir", "checkpoint cache (default: $SAFS_SMAC_CACHE or ~/.cache/safs-smac)"
    )
