"""The default main job before and after issue 11: epochs run against budgeted, trials per minute.

For every seed the default main job (``safs-smac run``'s settings, read from its own parser:
LeNet-5 on MNIST-5k, gradual pruning to 99%, staged SMAC-MF) runs side by side in one process
through the public ``safs_smac.optimize`` API, once per arm:

* ``before``: the main job as it was when issue 11 was filed: 40 trials, Hyperband with eta 3
  (rungs 3 and 9 epochs), every trial fine-tuned from the pruned network
  (``continue_trials=False``), SMAC's surrogate as shipped (``smac_compat.surrogate_patches`` off);
* ``now``: today's defaults: 60 trials, successive halving with eta 2 (rungs 2.25, 4.5 and 9
  epochs), a promoted trial continuing from the state its lower rung left, SMAC's surrogate in
  this thread with bounded trees;
* ``now-off`` (only with ``--arms``): today's defaults without continuation; its trials must
  equal ``now``'s (continuation is bit for bit on CPU).

All arms share one cache directory, so the dense and pruned checkpoints are built once per seed;
the order of the arms rotates with the seed so that none always meets a warmer machine. Per run
it records the search's work (``summary.json``'s ``work``: epochs budgeted and run, search and
target seconds), trials per minute of search, and the incumbent's validation and test accuracy
after the final retraining. It prints a table per seed, mean ± std over seeds and paired
Wilcoxon signed-rank p-values (scipy) against ``before``, and writes ``runs.csv``, ``table.md``
and ``meta.json`` to ``--out``. Goals (issue 11): epochs run <= 0.75x epochs budgeted at the same
incumbent quality; trials per minute >= 2x.

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
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from _common import pm, wilcoxon_p, write_json, write_text

from safs_smac import smac_compat
from safs_smac.cli import DEFAULT_TRIALS, build_parser, run_options, run_problem
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

# arm -> (continue_trials, optimize() keywords, SMAC surrogate patches on)
ARMS: dict[str, tuple[bool, dict[str, Any], bool]] = {
    "before": (False, {"n_trials": 40, "intensifier": "hyperband", "eta": 3}, False),
    "now": (True, {}, True),
    "now-off": (False, {}, True),
}

COLUMNS = [
    "seed",
    "arm",
    "epochs_budgeted",
    "epochs_run",
    "ratio",
    "trials_continued",
    "epochs_continued",
    "search_seconds",
    "target_seconds",
    "overhead_share",
    "trials_per_minute",
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
    arm: str,
    *,
    work_dir: Path,
    dataset_kwargs: dict[str, Any] | None,
) -> dict[str, Any]:
    """One main job (``optimize`` with the CLI's and ``arm``'s settings); its ``runs.csv`` row."""
    continuation, keywords, patched = ARMS[arm]
    if args.n_trials != DEFAULT_TRIALS:  # --quick or --run-args chose the trials for every arm
        keywords = {k: v for k, v in keywords.items() if k != "n_trials"}
    problem = make_problem(
        args,
        seed,
        work_dir / "cache",
        continuation=continuation,
        dataset_kwargs=dataset_kwargs,
    )
    problem.pruned_checkpoint()  # built (or loaded) outside the timed search
    problem.release_continuations()  # states an interrupted earlier invocation left behind
    # A finished run in the directory would be read back, not measured: start from none.
    run_dir = work_dir / f"s{seed}_{arm}"
    shutil.rmtree(run_dir, ignore_errors=True)
    options = run_options(args, seed=seed, output_dir=run_dir, progress=False)
    start = time.perf_counter()
    with smac_compat.surrogate_patches(in_this_thread=patched, bounded_trees=patched):
        result = optimize(problem, args.optimizer, **{**options, **keywords})
    total = time.perf_counter() - start
    # What a search's end does: the states are only useful while the run searches.
    states_bytes = problem.continuation_bytes()
    problem.release_continuations()
    work = result.summary()["work"]
    trials = result.trials
    return {
        "seed": seed,
        "arm": arm,
        "epochs_budgeted": work["epochs_budgeted"],
        "epochs_run": work["epochs_run"],
        "ratio": work["epochs_run"] / work["epochs_budgeted"],
        "trials_continued": work.get("trials_continued", 0),
        "epochs_continued": work.get("epochs_continued", 0.0),
        "search_seconds": work["search_seconds"],
        "target_seconds": work["target_seconds"],
        "overhead_share": work["overhead_share"],
        "trials_per_minute": 60 * len(trials) / work["search_seconds"],
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


def _wilcoxon(new: pd.Series, old: pd.Series) -> str:
    diff = new.to_numpy(dtype=float) - old.to_numpy(dtype=float)
    if (diff == 0).all():
        return "identical in every seed"
    p = wilcoxon_p(diff)
    return "n/a (fewer than two differing seeds)" if math.isnan(p) else f"{p:.3f}"


# (label, column, scale, digits) of the mean ± std table
MEASURES = (
    ("epochs run / budgeted", "ratio", 1.0, 3),
    ("epochs budgeted", "epochs_budgeted", 1.0, 1),
    ("epochs run", "epochs_run", 1.0, 1),
    ("search seconds", "search_seconds", 1.0, 1),
    ("trials per minute of search", "trials_per_minute", 1.0, 1),
    ("overhead share of the search %", "overhead_share", 100.0, 1),
    ("incumbent val %", "val_accuracy", 100.0, 2),
    ("incumbent test %", "test_accuracy", 100.0, 2),
)


def summarise(runs: pd.DataFrame) -> str:
    """Markdown: one row per seed and arm, mean ± std over seeds, paired tests against before."""
    arms = [arm for arm in ARMS if arm in set(runs["arm"])]
    by_arm = {arm: runs[runs["arm"] == arm].set_index("seed").sort_index() for arm in arms}
    seeds = sorted(set.intersection(*(set(frame.index) for frame in by_arm.values())))
    by_arm = {arm: frame.loc[seeds] for arm, frame in by_arm.items()}
    lines = [
        f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}",
        "",
        "| seed | arm | epochs run / budgeted | ratio | search s | trials/min | overhead % "
        "| val % | test % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        for arm, frame in by_arm.items():
            row = frame.loc[seed]
            lines.append(
                f"| {seed} | {arm} | {row['epochs_run']:g} / {row['epochs_budgeted']:g} "
                f"| {row['ratio']:.3f} | {row['search_seconds']:.1f} "
                f"| {row['trials_per_minute']:.1f} | {100 * row['overhead_share']:.1f} "
                f"| {100 * row['val_accuracy']:.2f} | {100 * row['test_accuracy']:.2f} |"
            )
    others = [arm for arm in arms if arm != "before"]
    header = " | ".join(f"{arm} (mean ± std)" for arm in arms)
    others = others if "before" in by_arm else []
    tests = " | ".join(f"{arm} vs before: paired Wilcoxon p" for arm in others)
    lines += [
        "",
        f"| measure | {header} |" + (f" {tests} |" if tests else ""),
        "|---" * (1 + len(arms) + len(others)) + "|",
    ]
    for label, column, scale, digits in MEASURES:
        cells = [_mean_std(by_arm[arm][column], scale, digits) for arm in arms]
        cells += [_wilcoxon(by_arm[arm][column], by_arm["before"][column]) for arm in others]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    if "before" in by_arm and "now" in by_arm:
        speed = by_arm["now"]["trials_per_minute"] / by_arm["before"]["trials_per_minute"]
        epochs = by_arm["now"]["epochs_run"] / by_arm["before"]["epochs_run"]
        lines.append(
            f"Per seed, now / before: trials per minute {_mean_std(speed, digits=2)}x, epochs run "
            f"{_mean_std(epochs, digits=2)}x."
        )
    if "now" in by_arm and "now-off" in by_arm:
        same = (by_arm["now"]["trials_key"] == by_arm["now-off"]["trials_key"]).sum()
        lines.append(
            f"now and now-off ran the same trials with the same costs in {same} of "
            f"{len(seeds)} seed(s)."
        )
    if "now" in by_arm:
        now = by_arm["now"]
        lines.append(
            f"Trials continued per run (now): {_mean_std(now['trials_continued'], digits=1)}; "
            "largest continuation cache at a run's end: "
            f"{now['states_bytes_at_end'].max() / 1e6:.1f} MB."
        )
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
    parser.add_argument(
        "--arms",
        type=lambda text: [arm.strip() for arm in text.split(",") if arm.strip()],
        default=["before", "now"],
        help=f"comma-separated arms among {', '.join(ARMS)}",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--run-args",
        default="",
        help="extra `safs-smac run` options changing the main job, e.g. '--n-trials 20'",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("safs_runs/bench_continuation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/continuation"))
    args = parser.parse_args(argv)
    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown or not args.arms:
        parser.error(f"--arms takes names among {', '.join(ARMS)}, got {unknown or 'none'}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    extra = (QUICK_RUN_ARGS if args.quick else []) + shlex.split(args.run_args)
    job = main_job_args(extra)
    dataset_kwargs = dict(QUICK_DATASET) if args.quick else None
    started = time.perf_counter()
    rows = []
    arms = args.arms
    for index, seed in enumerate(range(args.first_seed, args.first_seed + args.seeds)):
        for arm in arms[index % len(arms) :] + arms[: index % len(arms)]:
            row = run_main_job(
                job, seed, arm, work_dir=args.work_dir, dataset_kwargs=dataset_kwargs
            )
            rows.append(row)
            print(
                f"seed {seed} {arm:>7}: {row['epochs_run']:g} of {row['epochs_budgeted']:g} "
                f"epochs ({row['ratio']:.3f}), search {row['search_seconds']:.1f} s, incumbent "
                f"val {100 * row['val_accuracy']:.2f}% test {100 * row['test_accuracy']:.2f}%",
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
