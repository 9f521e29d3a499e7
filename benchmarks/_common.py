"""Pieces every benchmark script shares: arguments, ``--quick``, statistics, tables, plots, files.

The scripts in ``benchmarks/`` are run as scripts (``python benchmarks/ap.py``), so Python puts
this directory first on ``sys.path`` and ``from _common import ...`` finds this module; the tests
load them the same way (``pythonpath`` in pyproject.toml). Nothing here is part of the
``safs_smac`` package and nothing here imports its private modules.

Files are written atomically (a temporary file in the target's directory, then :func:`os.replace`),
so an interrupted benchmark never leaves a half-written table behind.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: ``benchmarks/results``: where every script writes its committed results by default.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` that replaces ``path`` once the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy scalars and paths as plain values) atomically."""
    write_text(path, json.dumps(obj, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_csv(frame: pd.DataFrame, path: str | Path, *, float_format: str | None = None) -> None:
    """Write ``frame`` as CSV without its index, atomically."""
    write_text(path, frame.to_csv(index=False, float_format=float_format))


def save_figure(fig: Any, path: str | Path, *, dpi: int = 90) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    seeds: int | None = 3,
    output_dir: Path | None = None,
    output_flag: str = "--output-dir",
    threads: int = 1,
) -> None:
    """``--seeds`` (0..N-1), ``--threads`` (torch CPU threads) and the output folder flag."""
    parser.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..N-1)")
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    parser.add_argument(
        output_flag,
        dest="output_dir",
        type=Path,
        default=output_dir,
        help=f"where the results go (default {output_dir})",
    )


def add_data_arguments(
    parser: argparse.ArgumentParser, *, default: str = "mnist-5k", help: str = "data set"
) -> None:
    """``--dataset`` and ``--data-root`` (the directory of on-disk data sets)."""
    parser.add_argument("--dataset", default=default, help=help)
    parser.add_argument("--data-root", default=None, help="directory of on-disk data sets")


def add_quick_argument(parser: argparse.ArgumentParser, quick: Mapping[str, Any]) -> None:
    """``--quick``: small defaults for a smoke test; flags given explicitly still win."""
    shown = ", ".join(f"{key}={value}" for key, value in quick.items())
    parser.add_argument("--quick", action="store_true", help=f"tiny smoke-test defaults: {shown}")


def parse_with_quick(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, quick: Mapping[str, Any]
) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick`` parse again over the ``quick`` defaults.

    The namespace also gets ``argv``, the arguments as given (for the command in the report).
    """
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    args.argv = given_arguments(argv)
    return args


def given_arguments(argv: Sequence[str] | None) -> list[str]:
    """The command-line arguments: ``argv`` when called from code, else ``sys.argv[1:]``."""
    return list(sys.argv[1:] if argv is None else argv)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """The shell command that reruns ``benchmarks/<script>`` with these arguments."""
    return shlex.join(["python", f"benchmarks/{script}", *given_arguments(argv)])


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Iterable[str]
) -> None:
    """``parser.error`` unless every named argument is >= 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def parse_list(text: str, kind: Callable[[str], Any] = float) -> list[Any]:
    """``"a,b,c"`` -> ``[kind(a), kind(b), kind(c)]`` (blank items skipped)."""
    return [kind(item.strip()) for item in str(text).split(",") if item.strip()]


def machine_description() -> str:
    """Where a benchmark ran, in one line: platform, CPUs, Python and library versions."""
    from importlib.metadata import version

    return (
        f"{platform.platform()}, {os.cpu_count()} logical CPUs ({platform.processor() or 'cpu'}), "
        f"Python {platform.python_version()}, torch {version('torch')}, smac {version('smac')}"
    )


def utc_now() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_timing_results(
    out: Path,
    title: str,
    table: str,
    note: str,
    meta: Mapping[str, Any],
    timings: pd.DataFrame,
) -> None:
    """Write a timing benchmark's ``table.md`` (title, table, ``note``, then the command, machine,
    start and wall time from ``meta``), ``timings.csv`` and ``meta.json`` to ``out``; print the
    table. ``meta`` holds at least ``command``, ``machine``, ``started`` and ``wall_seconds``."""
    text = "\n".join(
        [
            f"# {title}",
            "",
            table,
            "",
            f"{note}  ",
            f"Command: `{meta['command']}`  ",
            f"Machine: {meta['machine']}; started {meta['started']}, "
            f"{meta['wall_seconds'] / 60:.1f} min.",
            "",
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "table.md", text)
    write_csv(timings, out / "timings.csv", float_format="%.6g")
    write_json(out / "meta.json", meta)
    print(text)
    print(f"results in {out}")


# ------------------------------------------------------------------------------------------
# Problems
# ------------------------------------------------------------------------------------------

#: ``SAFSProblem`` keywords that a benchmark flag of the same name sets (``--pruning-rate`` ->
#: ``args.pruning_rate``); see :func:`problem_from_args`.
PROBLEM_FLAGS = (
    "data_root",
    "pruning_rate",
    "pruning",
    "prune_schedule",
    "dense_epochs",
    "max_budget",
    "seed",
    "device",
    "cache_dir",
    "dataset_kwargs",
)


def problem_from_args(args: Any, **overrides: Any) -> Any:
    """The ``SAFSProblem`` of ``args.model`` on ``args.dataset`` that a script's flags describe.

    ``args`` is an ``argparse.Namespace`` or any object with such attributes (a settings
    dataclass).

    Every flag named like a keyword in :data:`PROBLEM_FLAGS` that the script has (and that is not
    None) is passed on; ``overrides`` win over the flags (e.g. ``seed=0`` where ``--seed`` seeds
    something else). Keywords neither gives keep ``SAFSProblem``'s defaults.
    """
    from safs_smac.problem import SAFSProblem

    kwargs = {name: getattr(args, name, None) for name in PROBLEM_FLAGS}
    kwargs = {name: value for name, value in kwargs.items() if value is not None}
    return SAFSProblem(args.model, args.dataset, **{**kwargs, **overrides})


# ------------------------------------------------------------------------------------------
# Search runs (compare_optimizers.py, paper_table.py): flags, output folder, meta data
# ------------------------------------------------------------------------------------------


def add_search_arguments(parser: argparse.ArgumentParser, default: Any, *, out_help: str) -> None:
    """The problem, budget and execution flags of a benchmark of ``safs_smac.optimize`` runs.

    ``default`` holds the defaults (``compare_optimizers.Setup()``); ``--pruning`` and
    ``--methods`` or ``--scopes`` are the caller's, they differ between the scripts.
    """
    parser.add_argument("--model", default=default.model, help="zoo model")
    parser.add_argument("--dataset", default=default.dataset, help="data set")
    parser.add_argument("--pruning-rate", type=float, default=default.pruning_rate)
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds 0..S-1 (default: 5; 2 with --quick)"
    )
    parser.add_argument(
        "--epoch-budget",
        type=int,
        default=default.epoch_budget,
        help="fine-tuning epochs per run (method x seed), final retraining not included",
    )
    parser.add_argument("--max-budget", type=int, default=default.max_budget, help="epochs/trial")
    parser.add_argument("--min-budget", type=int, default=default.min_budget, help="MF lowest")
    parser.add_argument("--eta", type=int, default=default.eta, help="MF reduction factor")
    parser.add_argument("--dense-epochs", type=int, default=None, help="default: per model")
    parser.add_argument("--device", default=default.device)
    parser.add_argument("--cache-dir", default=None, help="default: $SAFS_SMAC_CACHE or ~/.cache")
    parser.add_argument("--work-dir", default=default.work_dir, help="run directories (shared)")
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--n-workers", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny synthetic data, 2 seeds, a few epochs; checks the files",
    )


def search_setup(
    args: argparse.Namespace, default: Any, quick: Any, *, results: str, quick_out: str
) -> tuple[Any, list[int], Path]:
    """The setup, seeds and output root the flags ask for.

    ``--quick`` takes ``quick`` (runs under ``<work-dir>/quick``, never mixed with full-size
    runs, output under ``<work-dir>/<quick_out>``); otherwise the flags replace the fields of
    ``default`` (``dataclasses.replace``), output under ``benchmarks/results/<results>``.
    """
    import dataclasses

    if args.quick:
        work_dir = str(Path(args.work_dir) / "quick")
        setup = dataclasses.replace(quick, cache_dir=args.cache_dir, work_dir=work_dir)
        return setup, list(range(args.seeds or 2)), args.out or Path(args.work_dir) / quick_out
    fields = {
        name: getattr(args, name)
        for name in (
            "model",
            "dataset",
            "pruning_rate",
            "epoch_budget",
            "max_budget",
            "min_budget",
            "eta",
            "dense_epochs",
            "device",
            "cache_dir",
            "work_dir",
        )
    }
    if isinstance(getattr(args, "pruning", None), str):
        fields["pruning"] = args.pruning
    setup = dataclasses.replace(default, **fields)
    return setup, list(range(args.seeds or 5)), args.out or RESULTS_DIR / results


def search_meta(
    script: str,
    argv: Sequence[str] | None,
    runs: pd.DataFrame,
    *,
    started: str,
    wall_seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """``meta.json`` of a benchmark of search runs: command, machine, times, reused runs."""
    return {
        "command": command_line(script, argv),
        "machine": machine_description(),
        "started": started,
        "wall_seconds": wall_seconds,
        "runs_reused": int(runs["reused"].sum()),
        "runs_total": len(runs),
        "search_seconds": float(runs["search_seconds"].sum()),
        **extra,
    }


def show_results(out_dir: Path, table: str = "table.md") -> int:
    """Print the table a benchmark wrote and where its files are; the exit status 0."""
    print((out_dir / table).read_text())
    print(f"results in {out_dir}")
    return 0


def meta_footer(meta: Mapping[str, Any], invocation: str) -> list[str]:
    """The closing lines of a search benchmark's ``table.md``: command, machine and times.

    ``invocation`` says how this call ran (workers, threads, where reused runs came from).
    """
    return [
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}  ",
        f"Search time summed over the {meta['runs_total']} runs (from the trials' timestamps): "
        f"{meta['search_seconds'] / 60:.1f} min. This invocation: {meta['wall_seconds'] / 60:.1f}"
        f" min{invocation}, {meta['runs_reused']} finished runs reused; started {meta['started']}",
        "",
    ]


# ------------------------------------------------------------------------------------------
# Statistics and table cells
# ------------------------------------------------------------------------------------------


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN std for fewer than two values)."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    data = data[~np.isnan(data)]
    if not len(data):
        return math.nan, math.nan
    return float(data.mean()), float(data.std(ddof=1)) if len(data) > 1 else math.nan


def pm(
    values: Iterable[float], *, scale: float = 100.0, digits: int = 2, signed: bool = False
) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (just the mean for one value)."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "n/a"
    text = f"{scale * mean:{'+' if signed else ''}.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"


def paired_differences(
    frame: pd.DataFrame, *, by: str, column: str, value: str, treatment: Any, control: Any
) -> pd.Series:
    """Per ``by`` (e.g. seed), ``value`` of the ``treatment`` rows minus that of the ``control``
    rows, where ``column`` tells the two apart; pairs missing a side are dropped."""
    wide = frame.pivot_table(index=by, columns=column, values=value, aggfunc="mean")
    if treatment not in wide or control not in wide:
        return pd.Series(dtype=float)
    return (wide[treatment] - wide[control]).dropna()


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (NaN when undefined)."""
    diffs = [d for d in differences if not math.isnan(d) and d != 0]
    if len(diffs) < 2:
        return math.nan
    from scipy.stats import wilcoxon

    return float(wilcoxon(diffs).pvalue)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def band(
    ax: Any, x: Any, wide: pd.DataFrame, *, label: str, colour: Any, scale: float = 100
) -> None:
    """Mean over the columns of ``wide`` (one per seed) as a line, ± one std as a band."""
    mean, std = wide.mean(axis=1), wide.std(axis=1).fillna(0.0)
    ax.plot(x, scale * mean, label=label, color=colour, marker=".")
    ax.fill_between(x, scale * (mean - std), scale * (mean + std), color=colour, alpha=0.2)
