"""Budget continuation in the default main job: fine-tuning epochs run against epochs budgeted.

For every seed the default main job (``safs-smac run``'s defaults, read from its own parser:
LeNet-5 on MNIST-5k, gradual pruning to 99%, staged SMAC-MF with 40 trials, rungs of 3 and 9
epochs) runs twice side by side in one process through the public ``safs_smac.optimize`` API:
once with ``SAFSProblem(continue_trials=False)`` (every trial fine-tunes from the pruned network)
and once with continuation on (a promoted trial continues from the state its lower rung left). Both
share one cache directory, so the dense and pruned checkpoints are built once per seed; the order of
the two runs alternates with the seed so that neither always meets a warmer machine.

Per run it records the search's work (``summary.json``'s ``work``: epochs budgeted and run, search
seconds), the incumbent's validation and test accuracy after the final retraining, and whether the
two runs made the same trials with the same costs (continuation is bit-for-bit on CPU, so SMAC
should propose exactly the same configurations). It prints a table per seed, mean ± std over seeds
and paired Wilcoxon signed-rank p-values (scipy), and writes ``runs.csv``, ``table.md`` and
``meta.json`` to ``--out``. Goal (issue 11): epochs run <= 0.75x epochs budgeted at the same
incumbent quality.

    nice python benchmarks/continuation.py --threads 1            # 5 seeds, the README's figures
    python benchmarks/continuation.py --quick --out /tmp/cont     # smoke test: synthetic data
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from _common import pm, wilcoxon_p, write_json, write_text

from safs_smac.cli import build_parser, run_options, run_problem
from safs_smac.problem import SAFSProblem
from safs_smac.search import optimize

# --quick: a tiny synthetic problem with the main job's optimizer and protocol (rungs 1 and 3).
QUICK_RUN_ARGS = [
    "--dataset",
    "synthetic",
    "--dense-epochs",
    "1",
    "--prune-schedule",
    "one-shot",
    "--pruning-rate",
    "0.5",
    "--n-trials",
    "8",
    "--max-budget",
    "3",
]
QUICK_DATASET = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4, "channels": 1}

COLUMNS = [
    "seed",
    "continuation",
    "epochs_budgeted",
    "epochs_run",
    "ratio",
    "trials_continued",
    "epochs_continued",
    "search_seconds",
    "target_seconds",
    "total_seconds",
    "n_trials",
    "incumbent_cost",
    "val_accuracy",
    "test_accuracy",
    "states_bytes_at_end",
    "trials_key",
]


def main_job_args(extra: list[str]) -> argparse.Namespace:
    """``safs-smac run``'s settings: its parser's defaults, plus ``extra`` command-line words."""
    return build_parser().parse_args(["run", *extra])


def make_problem(
    args: argparse.Namespace,
    seed: int,
    cache_dir: Path,
    *,
    continuation: bool,
    dataset_kwargs: dict[str, Any] | None,
) -> SAFSProblem:
    """The problem ``safs-smac run`` builds from ``args``, with this benchmark's seed and cache."""
    overrides: dict[str, Any] = {"seed": seed, "cache_dir": cache_dir}
    if dataset_kwargs is not None:
        overrides["dataset_kwargs"] = dataset_kwargs
    return run_problem(args, **overrides, continue_trials=continuation)


def run_main_job(
    args: argparse.Namespace,
    seed: int,
    *,
    continuation: bool,
    work_dir: Path,
    dataset_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    """One main job (``optimize`` with the CLI's settings); returns its row of ``runs.csv``."""
    problem = make_problem(
        args,
        seed,
        work_dir / "cache",
        continuation=continuation,
        dataset_kwargs=dataset_kwargs,
    )
    problem.pruned_checkpoint()  # built (or loaded) outside the timed search
    problem.release_continuations()  # states an interrupted earlier invocation left behind
    label = "on" if continuation else "off"
    start = time.perf_counter()
    options = run_options(
        args, seed=seed, output_dir=work_dir / f"s{seed}_{label}", progress=False, overwrite=True
    )
    result = optimize(problem, args.optimizer, **options)
    total = time.perf_counter() - start
    # What search.py's run end will do: the states are only useful while the run searches.
    states_bytes = problem.continuation_bytes()
    problem.release_continuations()
    work = result.summary()["work"]
    trials = result.trials
    return {
        "seed": seed,
        "continuation": label,
        "epochs_budgeted": work["epochs_budgeted"],
        "epochs_run": work["epochs_run"],
        "ratio": work["epochs_run"] / work["epochs_budgeted"],
        "trials_continued": work.get("trials_continued", 0),
        "epochs_continued": work.get("epochs_continued", 0.0),
        "search_seconds": work["search_seconds"],
        "target_seconds": work["target_seconds"],
        "total_seconds": total,
        "n_trials": len(trials),
        "incumbent_cost": result.incumbent_cost,
        "val_accuracy": result.final.val_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "states_bytes_at_end": states_bytes,
        # Which trials ran and what they cost, in order: equal keys = the same search.
        "trials_key": json.dumps(
            [[float(b), repr(float(c))] for b, c in zip(trials["budget"], trials["cost"])]
        ),
    }


def _mean_std(values: pd.Series, scale: float = 1.0, digits: int = 2) -> str:
    return pm(values.astype(float), scale=scale, digits=digits)


def _wilcoxon(on: pd.Series, off: pd.Series) -> str:
    diff = on.to_numpy(dtype=float) - off.to_numpy(dtype=float)
    if (diff == 0).all():
        return "identical in every seed"
    p = wilcoxon_p(diff)
    return "n/a (fewer than two differing seeds)" if math.isnan(p) else f"{p:.3f}"


def summarise(runs: pd.DataFrame) -> str:
    """Markdown: one row per seed, mean ± std over seeds, paired tests (on against off)."""
    off = runs[runs["continuation"] == "off"].set_index("seed").sort_index()
    on = runs[runs["continuation"] == "on"].set_index("seed").sort_index()
    seeds = [s for s in off.index if s in on.index]
    off, on = off.loc[seeds], on.loc[seeds]
    lines = [
        f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}",
        "",
        "| seed | epochs budgeted | epochs run, off | epochs run, on | ratio on | search s off "
        "| search s on | val % off | val % on | same trials and costs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        a, b = off.loc[seed], on.loc[seed]
        lines.append(
            f"| {seed} | {b['epochs_budgeted']:g} | {a['epochs_run']:g} | {b['epochs_run']:g} "
            f"| {b['ratio']:.3f} | {a['search_seconds']:.1f} | {b['search_seconds']:.1f} "
            f"| {100 * a['val_accuracy']:.2f} | {100 * b['val_accuracy']:.2f} "
            f"| {'yes' if a['trials_key'] == b['trials_key'] else 'no'} |"
        )
    lines += [
        "",
        "| measure | off (mean ± std) | on (mean ± std) | paired Wilcoxon p |",
        "|---|---|---|---|",
        f"| epochs run / budgeted | {_mean_std(off['ratio'], digits=3)} "
        f"| {_mean_std(on['ratio'], digits=3)} | {_wilcoxon(on['ratio'], off['ratio'])} |",
        f"| epochs run | {_mean_std(off['epochs_run'], digits=1)} "
        f"| {_mean_std(on['epochs_run'], digits=1)} "
        f"| {_wilcoxon(on['epochs_run'], off['epochs_run'])} |",
        f"| search seconds | {_mean_std(off['search_seconds'], digits=1)} "
        f"| {_mean_std(on['search_seconds'], digits=1)} "
        f"| {_wilcoxon(on['search_seconds'], off['search_seconds'])} |",
        f"| incumbent val % | {_mean_std(off['val_accuracy'], 100)} "
        f"| {_mean_std(on['val_accuracy'], 100)} "
        f"| {_wilcoxon(on['val_accuracy'], off['val_accuracy'])} |",
        f"| incumbent test % | {_mean_std(off['test_accuracy'], 100)} "
        f"| {_mean_std(on['test_accuracy'], 100)} "
        f"| {_wilcoxon(on['test_accuracy'], off['test_accuracy'])} |",
        "",
        f"Trials continued per run (on): {_mean_std(on['trials_continued'], digits=1)}; "
        "largest continuation cache at a run's end: "
        f"{on['states_bytes_at_end'].max() / 1e6:.1f} MB.",
    ]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value) if isinstance(value, Path) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny synthetic smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--run-args",
        default="",
        help="extra `safs-smac run` options changing the main job, e.g. '--n-trials 20'",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("safs_runs/bench_continuation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/continuation"))
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    extra = (QUICK_RUN_ARGS if args.quick else []) + shlex.split(args.run_args)
    job = main_job_args(extra)
    dataset_kwargs = dict(QUICK_DATASET) if args.quick else None
    started = time.perf_counter()
    rows = []
    for index, seed in enumerate(range(args.first_seed, args.first_seed + args.seeds)):
        order = (False, True) if index % 2 == 0 else (True, False)
        for continuation in order:
            row = run_main_job(
                job,
                seed,
                continuation=continuation,
                work_dir=args.work_dir,
                dataset_kwargs=dataset_kwargs,
            )
            rows.append(row)
            print(
                f"seed {seed} continuation {row['continuation']:>3}: {row['epochs_run']:g} of "
                f"{row['epochs_budgeted']:g} epochs ({row['ratio']:.3f}), search "
                f"{row['search_seconds']:.1f} s, incumbent val {100 * row['val_accuracy']:.2f}%",
                flush=True,
            )
    runs = pd.DataFrame(rows, columns=COLUMNS)
    table = summarise(runs)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "runs.csv", runs.to_csv(index=False))
    write_text(args.out / "table.md", table + "\n")
    write_json(
        args.out / "meta.json",
        {
            "command": " ".join(["python", "benchmarks/continuation.py", *(argv or sys.argv[1:])]),
            "main_job": {k: _plain(v) for k, v in vars(job).items() if k != "func"},
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - started,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
