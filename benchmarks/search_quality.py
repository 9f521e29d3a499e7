"""Does the search earn its keep? SAFS against the strongest simple baselines, paired by seed.

For one problem (default: LeNet-5 on MNIST-5k at 99% sparsity), in both pruning scopes
(layer-wise and global) and for every seed, every row starts from the same dense network (trained
with that seed) and is scored the same way: the chosen configuration is fine-tuned
``--final-repeats`` times at the max budget with the seeds ``10000 + k`` (no trial used them) and
the row's figure is the mean of those fine-tunes. Selection uses validation data only; test
accuracy is computed once per final fine-tune and never read by any selection.

Rows (``selection epochs`` = fine-tuning epochs spent choosing the configuration; ``prune epochs``
= epochs gradual pruning spent before any row):

* ``oneshot_mp``: one-shot magnitude pruning + fine-tuning (dense recipe, default activation).
* ``oneshot_tuned_ft``: one-shot, the main job with the default activation as the only operator
  (fine-tuning hyperparameters and the scales searched, same stages, rungs and trials): tuned
  fine-tuning at SAFS's budget, and the ablation of the operator search.
* ``oneshot_single_op``: one-shot, a grid of one operator for the whole network (every SAFS
  operator x Adam with cosine decay at lr 0.01 and 0.03, learned scales), each at the max budget.
* ``oneshot_safs``: one-shot, the main job (``safs-smac run``'s search: staged SMAC-MF with its
  default rungs and intensifier, ``--n-trials``, default the CLI's).
* ``gradual_mp``: gradual magnitude pruning (6 rounds, 3 epochs of Adam lr 0.01 cosine in between),
  then the same fine-tuning for the max budget, default activation, no search.
* ``gradual_tuned_ft``, ``gradual_safs``: as the one-shot rows, starting from the gradual network.
* ``oneshot_safs_3x`` (with ``--rows``): the main job with three times the trials.
* ``*_safs_stage1``: the network-level stage of the same SAFS run, finished on its own (its
  selection epochs are that stage's): what the per-layer stage adds.

Outputs in ``--out``: ``runs.csv`` (one row per scope, seed and method), ``table.md`` (mean +- std
over seeds, selection epochs, paired Wilcoxon signed-rank tests and wins per seed), ``meta.json``
(command, machine, seconds). Jobs are cached per (scope, seed) in ``--work-dir``, so an interrupted
benchmark resumes.

Examples::

    python benchmarks/search_quality.py                 # the README's figures (5 seeds)
    python benchmarks/search_quality.py --quick         # smoke test: synthetic data, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import (
    RESULTS_DIR,
    command_line,
    machine_description,
    problem_from_args,
    utc_now,
    wilcoxon_p,
    write_csv,
    write_json,
    write_text,
)

from safs_smac.cli import DEFAULT_TRIALS

DEFAULT_ROWS = (
    "oneshot_mp",
    "oneshot_tuned_ft",
    "oneshot_single_op",
    "oneshot_safs",
    "gradual_mp",
    "gradual_tuned_ft",
    "gradual_safs",
)
EXTRA_ROWS = ("oneshot_safs_3x",)
LABELS = {
    "oneshot_mp": "one-shot magnitude pruning + fine-tuning (dense recipe)",
    "oneshot_tuned_ft": "one-shot + tuned fine-tuning, default activation",
    "oneshot_single_op": "one-shot + best single operator (grid)",
    "oneshot_safs_stage1": "one-shot + SAFS stage 1 only (network level)",
    "oneshot_safs": "one-shot + SAFS (main job)",
    "oneshot_safs_3x": "one-shot + SAFS, 3x trials",
    "gradual_mp": "gradual magnitude pruning + fine-tuning",
    "gradual_tuned_ft": "gradual + tuned fine-tuning, default activation",
    "gradual_safs_stage1": "gradual + SAFS stage 1 only (network level)",
    "gradual_safs": "gradual + SAFS",
}
# (row, baseline) pairs compared seed by seed.
COMPARISONS = (
    ("oneshot_safs", "oneshot_single_op"),
    ("oneshot_safs", "oneshot_tuned_ft"),
    ("oneshot_safs", "oneshot_mp"),
    ("gradual_safs", "gradual_tuned_ft"),
    ("gradual_safs", "gradual_mp"),
    ("oneshot_safs", "oneshot_safs_stage1"),
    ("gradual_safs", "gradual_safs_stage1"),
    ("oneshot_safs_3x", "oneshot_safs"),
)
GRID_LRS = (0.01, 0.03)
FINAL_SEED = 10_000


def _problem(args: argparse.Namespace, scope: str, seed: int, schedule: str, **kwargs: Any) -> Any:
    return problem_from_args(
        args,
        pruning_rate=args.rate,
        pruning=scope,
        prune_schedule=schedule,
        device="cpu",
        cache_dir=Path(args.work_dir) / "cache",
        seed=seed,
        **kwargs,
    )


def _finals(problem: Any, spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Mean of ``final_repeats`` fine-tunes of ``spec`` at the max budget (the row's figure)."""
    from safs_smac.report import is_collapsed

    evals = [
        problem.final_evaluation(spec, seed=FINAL_SEED + k, epochs=args.max_budget)
        for k in range(args.final_repeats)
    ]
    chance = 1.0 / problem.dataset.num_classes
    return {
        "val_accuracy": float(np.mean([e.val_accuracy for e in evals])),
        "test_accuracy": float(np.mean([e.test_accuracy for e in evals])),
        "test_accuracies": [e.test_accuracy for e in evals],
        "collapsed": sum(is_collapsed(e.to_dict(), chance) for e in evals),
        "finals": len(evals),
        "operators": sorted(set(evals[0].operators.values())),
    }


def _search(
    problem: Any, args: argparse.Namespace, out: Path, n_trials: int, protocol: str
) -> tuple[Any, float]:
    from safs_smac import optimize

    result = optimize(
        problem,
        "smac-mf",
        protocol=protocol,
        n_trials=n_trials,
        # The main job's rungs and intensifier (the staged protocol's defaults) for every
        # search, so that searches with the same trials spend about the same epochs.
        seed=problem.seed,
        output_dir=out,
        progress=False,
    )
    return result, float(result.summary()["total_epochs"])


def _grid(problem: Any, args: argparse.Namespace) -> tuple[Any, float]:
    """Every operator x lr for the whole network at the max budget; best by validation cost."""
    from safs_smac.space import TrialSpec

    best: tuple[float, Any] | None = None
    epochs = 0.0
    for op in problem.configspace["act:all"].choices:
        for lr in GRID_LRS:
            config = {
                "act:all": op,
                "alpha:all": 1.0,
                "beta:all": 1.0,
                "ft:optimizer": "adam",
                "ft:lr": lr,
                "ft:scheduler": "cosine",
                "ft:learn_scales": True,
            }
            cost, info = problem.train(config, seed=problem.seed, budget=args.max_budget)
            epochs += info.get("epochs") or 0
            if best is None or cost < best[0]:
                best = (cost, config)
    assert best is not None
    spec: TrialSpec = problem.decode(best[1])
    return spec, epochs


def run_job(args: argparse.Namespace, scope: str, seed: int) -> list[dict[str, Any]]:
    """All rows of one scope and seed (cached as JSON in the work dir)."""
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    cache = Path(args.work_dir) / "jobs" / f"{scope}_s{seed}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    runs = Path(args.work_dir) / "runs" / f"{scope}_s{seed}"
    gradual_recipe = {"optimizer": "adam", "lr": 0.01, "scheduler": "cosine"}
    rows = []

    def add_row(method: str, problem: Any, spec: Any, selection: float, start: float) -> None:
        finals = _finals(problem, spec, args)
        rows.append(
            {
                "scope": scope,
                "seed": seed,
                "method": method,
                "selection_epochs": selection,
                "prune_epochs": problem.prune_epochs,
                "final_epochs": args.max_budget,
                **finals,
                "seconds": time.perf_counter() - start,
            }
        )
        print(
            f"{scope} seed {seed} {method}: test {100 * finals['test_accuracy']:.1f} "
            f"(val {100 * finals['val_accuracy']:.1f}, {selection:g} selection epochs)",
            flush=True,
        )

    for method in args.rows:
        start = time.perf_counter()
        schedule = "gradual" if method.startswith("gradual") else "one-shot"
        selection = 0.0
        if method.endswith("_mp"):
            problem = _problem(args, scope, seed, schedule)
            spec = problem.baseline_spec()
            if schedule == "gradual":  # the recipe: fine-tune as between the rounds
                spec = _with_recipe(spec, gradual_recipe)
        elif method.endswith("_tuned_ft"):
            # The main job with one candidate operator: the same stages, warm starts, rungs and
            # trials, so the difference to SAFS is what searching operators adds.
            problem = _problem(args, scope, seed, schedule, operators=[_default_op(args)])
            result, selection = _search(problem, args, runs / method, args.n_trials, "staged")
            spec = problem.decode(result.incumbent)
        elif method.endswith("_single_op"):
            problem = _problem(args, scope, seed, schedule, granularity="network")
            spec, selection = _grid(problem, args)
        else:  # SAFS
            problem = _problem(args, scope, seed, schedule)
            n_trials = args.n_trials * (3 if method.endswith("_3x") else 1)
            result, selection = _search(problem, args, runs / method, n_trials, "staged")
            spec = problem.decode(result.incumbent)
            if not method.endswith("_3x"):
                # The same run stopped after its network-level stage: what the per-layer stage adds.
                stage1 = result.stages["stage1"]
                add_row(
                    f"{method}_stage1",
                    problem,
                    problem.decode(stage1.incumbent),
                    float(stage1.summary()["total_epochs"]),
                    time.perf_counter(),
                )
        add_row(method, problem, spec, selection, start)
    write_json(cache, rows)
    return rows


def _default_op(args: argparse.Namespace) -> str:
    from safs_smac.models import model_info

    return model_info(args.model).default_activation


def _with_recipe(spec: Any, overrides: dict[str, Any]) -> Any:
    import dataclasses

    return dataclasses.replace(spec, recipe_overrides={**spec.recipe_overrides, **overrides})


def summarise(runs: pd.DataFrame) -> str:
    """Markdown: mean +- std per scope and method, then paired comparisons."""
    lines = []
    for scope, frame in runs.groupby("scope", sort=False):
        seeds = sorted(frame["seed"].unique())
        lines += [
            f"### {scope} ({len(seeds)} seeds: {', '.join(map(str, seeds))})",
            "",
            "| row | test % (mean ± std) | val % | selection epochs | prune epochs "
            "| collapsed finals |",
            "|---|---|---|---|---|---|",
        ]
        for method, rows in frame.groupby("method", sort=False):
            test = 100 * rows["test_accuracy"]
            lines.append(
                f"| {LABELS.get(method, method)} | {test.mean():.1f} ± {test.std(ddof=1):.1f} "
                f"| {100 * rows['val_accuracy'].mean():.1f} "
                f"| {rows['selection_epochs'].mean():.0f} | {rows['prune_epochs'].mean():.0f} "
                f"| {int(rows['collapsed'].sum())}/{int(rows['finals'].sum())} |"
            )
        lines += [
            "",
            "| comparison | mean gain (test points) | wins | Wilcoxon p |",
            "|---|---|---|---|",
        ]
        table = frame.pivot(index="seed", columns="method", values="test_accuracy")
        for row, base in COMPARISONS:
            if row not in table or base not in table:
                continue
            pair = table[[row, base]].dropna()
            diff = 100 * (pair[row] - pair[base])
            p = wilcoxon_p(diff.tolist())
            lines.append(
                f"| {LABELS[row]} vs {LABELS[base]} | {diff.mean():+.1f} "
                f"| {int((diff > 0).sum())}/{len(diff)} | {p:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--rate", type=float, default=0.99)
    parser.add_argument("--scopes", default="layerwise,global")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument(
        "--n-trials", type=int, default=DEFAULT_TRIALS, help="trials of the main job (as `run`)"
    )
    parser.add_argument("--max-budget", type=int, default=9)
    parser.add_argument("--dense-epochs", type=int, default=None)
    parser.add_argument("--final-repeats", type=int, default=3)
    parser.add_argument(
        "--rows",
        default=",".join(DEFAULT_ROWS),
        help=f"comma-separated rows; also available: {', '.join(EXTRA_ROWS)}",
    )
    parser.add_argument("--workers", type=int, default=2, help="jobs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--work-dir", type=Path, default=Path("safs_runs/search_quality"))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "search_quality")
    parser.add_argument("--quick", action="store_true", help="synthetic data, tiny budgets")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="build runs.csv and table.md from the finished jobs in --work-dir, run nothing",
    )
    args = parser.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(args.rows) - set(DEFAULT_ROWS) - set(EXTRA_ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {', '.join(DEFAULT_ROWS + EXTRA_ROWS)}")
    args.dataset_kwargs = {}
    if args.quick:
        args.dataset, args.dense_epochs, args.max_budget = "synthetic", 1, 2
        args.n_trials, args.final_repeats, args.seeds = 4, 1, "0,1"
        args.dataset_kwargs = {"n_train": 96, "n_val": 32, "n_test": 32}
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    jobs = [(scope, seed) for scope in scopes for seed in seeds]
    start = time.perf_counter()
    if args.report_only:
        finished = sorted((Path(args.work_dir) / "jobs").glob("*.json"))
        results = [json.loads(path.read_text()) for path in finished]
    elif args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(run_job, [args] * len(jobs), *zip(*jobs, strict=True)))
    else:
        results = [run_job(args, scope, seed) for scope, seed in jobs]
    runs = pd.DataFrame([row for rows in results for row in rows])
    write_csv(runs, args.out / "runs.csv")
    table = summarise(runs)
    write_text(args.out / "table.md", table)
    meta = {
        "command": command_line("search_quality.py", argv),
        "date": utc_now(),
        "machine": machine_description(),
        "workers": args.workers,
        "threads_per_job": args.threads,
        "wall_seconds": time.perf_counter() - start,
    }
    if not args.report_only:  # keep the meta of the run that computed the jobs
        write_json(args.out / "meta.json", meta)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
