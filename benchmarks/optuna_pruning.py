"""Does Optuna's pruning save fine-tuning work on SAFS? The same study with and without pruning.

For each seed, two Optuna studies with the same TPE sampler seed and the same number of trials
search the same SAFS problem (``run_optuna``):

* ``none``: no pruner; every trial is one ``problem.train`` call at ``--max-budget`` epochs;
* ``median``: ``optuna.pruners.MedianPruner()`` (Optuna's defaults: 5 start-up trials, no warm-up);
  a trial reports its validation cost after each of ``--rungs`` (``problem.train`` at each
  budget) and is stopped when its cost is worse than the median of earlier trials at that rung.

Printed and written per seed and study: trials (completed, pruned); fine-tuning epochs ``run``
(what ``problem.train`` reported running: without budget continuation in the problem, every rung
retrains from scratch) and ``with continuation`` (the highest budget each trial reached: the cost
when every rung continues the previous rung's state); the best validation accuracy among
completed trials and the wall time.

Example::

    python benchmarks/optuna_pruning.py --n-trials 12 --seeds 0,1,2 --rungs 1,3,9
    python benchmarks/optuna_pruning.py --quick   # synthetic data, seconds

Writes ``runs.csv``, ``table.md`` and ``meta.json`` to ``--results-dir``; the studies' run
directories go to ``--work-dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pandas as pd

from safs_smac.integrations.optuna import fine_tuning_epochs, run_optuna

MODES = ("none", "median")
COLUMNS = [
    "seed",
    "pruner",
    "n_trials",
    "completed",
    "pruned",
    "failed",
    "epochs_run",
    "epochs_with_continuation",
    "best_val_accuracy",
    "seconds",
]
# --quick: a tiny synthetic problem, so the test suite runs the whole script in seconds.
QUICK_DATA = {
    "n_train": 128,
    "n_val": 64,
    "n_test": 64,
    "num_classes": 4,
    "channels": 1,
    "size": 28,
}


def _sibling(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` (not a package), imported by path."""
    path = Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tpe = _sibling("optuna_tpe")  # the problem options and helpers, shared with optuna_tpe.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    tpe.add_problem_arguments(parser)
    parser.add_argument("--n-trials", type=int, default=12, help="trials per study (default: 12)")
    parser.add_argument("--seeds", default="0,1,2", help="sampler and fine-tuning seeds")
    parser.add_argument("--rungs", default="1,3,9", help="reporting budgets of the pruned study")
    parser.add_argument("--work-dir", default="safs_runs/optuna_pruning", help="run directories")
    parser.add_argument(
        "--results-dir", default="benchmarks/results/optuna", help="runs.csv, table.md, meta.json"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny synthetic problem, 1 seed (a smoke test)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.dataset, args.dense_epochs, args.max_budget = "synthetic", 1, 3
        args.n_trials, args.seeds, args.rungs, args.device = 6, "0", "1,2,3", "cpu"
    return args


def run_study(
    problem: Any, *, pruner: str, seed: int, n_trials: int, rungs: list[int], work_dir: Path
) -> dict[str, Any]:
    """One study; its row of ``runs.csv``."""
    start = time.perf_counter()
    study = run_optuna(
        problem,
        n_trials=n_trials,
        seed=seed,
        output_dir=work_dir / pruner,
        pruner=tpe.make_pruner(pruner),
        rungs=None if pruner == "none" else rungs,
    )
    states = [t.state for t in study.trials]
    best = tpe.best_trial(study)
    epochs = fine_tuning_epochs(study)
    return {
        "seed": seed,
        "pruner": pruner,
        "n_trials": len(states),
        "completed": states.count(optuna.trial.TrialState.COMPLETE),
        "pruned": states.count(optuna.trial.TrialState.PRUNED),
        "failed": states.count(optuna.trial.TrialState.FAIL),
        "epochs_run": epochs["run"],
        "epochs_with_continuation": epochs["with_continuation"],
        "best_val_accuracy": None if best is None else tpe.val_accuracy(best),
        "seconds": round(time.perf_counter() - start, 1),
    }


def table(runs: pd.DataFrame) -> str:
    """Markdown: one row per seed and pruner, then the mean over seeds per pruner."""
    lines = [
        "| seed | pruner | trials (completed / pruned) | epochs run | epochs with "
        "continuation | best val % | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in runs.itertuples():
        lines.append(
            f"| {row.seed} | {row.pruner} | {row.n_trials} ({row.completed} / {row.pruned}) | "
            f"{row.epochs_run} | {row.epochs_with_continuation} | "
            f"{100 * row.best_val_accuracy:.1f} | {row.seconds:.0f} |"
        )
    means = runs.groupby("pruner", sort=False)[
        ["epochs_run", "epochs_with_continuation", "best_val_accuracy", "seconds"]
    ].mean()
    for pruner, row in means.iterrows():
        lines.append(
            f"| mean | {pruner} | | {row.epochs_run:.1f} | {row.epochs_with_continuation:.1f} | "
            f"{100 * row.best_val_accuracy:.1f} | {row.seconds:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {"dataset_kwargs": dict(QUICK_DATA)} if args.quick else {}
    problem = tpe.build_problem(args, **overrides)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rungs = tpe.parse_rungs(args.rungs)
    work_dir, results_dir = Path(args.work_dir), Path(args.results_dir)
    rows = []
    for seed in seeds:
        for pruner in MODES:
            row = run_study(
                problem,
                pruner=pruner,
                seed=seed,
                n_trials=args.n_trials,
                rungs=rungs,
                work_dir=work_dir / f"seed{seed}",
            )
            print(json.dumps(row))
            rows.append(row)
    runs = pd.DataFrame(rows, columns=COLUMNS)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(results_dir / "runs.csv", index=False)
    text = table(runs)
    (results_dir / "table.md").write_text(text)
    meta = {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "settings": {k: v for k, v in vars(args).items()},
        "problem": problem.settings(),
        "rungs": rungs,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
    }
    (results_dir / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
