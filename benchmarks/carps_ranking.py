"""Does a SAFS CARP-S task rank optimizers? Best cost per optimizer and seed, through `carps.run`.

Runs ``python -m carps.run +optimizer/<opt> +task/SAFS=<task> seed=<s>`` for every task, optimizer
and seed (one CPU thread, one cache shared by every run so dense training and pruning happen once
per task), reads each run's ``trial_logs.jsonl`` and prints, per task and optimizer, the best cost
(1 - validation accuracy, with the loss tie-break) of every seed and their mean. A task that ranks
optimizers shows different best costs; a saturated task shows 0.0 everywhere.

Examples::

    python benchmarks/carps_ranking.py                     # the README's figures
    python benchmarks/carps_ranking.py --tasks lenet5_synthetic --seeds 1 --n-trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTIMIZERS = {
    "random": ("randomsearch=config", "RandomSearch"),
    "smac-hpo": ("smac20=hpo", "SMAC3-HPOFacade"),
    "lahc": ("safs=lahc", "SAFS-LAHC"),
}


def best_cost(run_dir: Path) -> tuple[float, int]:
    """Lowest cost in a CARP-S run directory and its number of trials."""
    lines = (run_dir / "trial_logs.jsonl").read_text().splitlines()
    costs = [json.loads(line)["trial_value"]["cost"] for line in lines]
    return min(costs), len(costs)


def run(task: str, optimizer: str, seed: int, n_trials: int | None, work: Path) -> Path:
    group, optimizer_id = OPTIMIZERS[optimizer]
    command = [
        sys.executable,
        "-m",
        "carps.run",
        f"+optimizer/{group}",
        f"+task/SAFS={task}",
        f"seed={seed}",
        "task.objective_function.device=cpu",
        f"task.objective_function.cache_dir={work / 'cache'}",
    ]
    if n_trials is not None:
        command.append(f"task.optimization_resources.n_trials={n_trials}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return work / "runs" / optimizer_id / "SAFS" / task / str(seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["lenet5_synthetic", "lenet5_synthetic_hard"])
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--n-trials", type=int, default=None, help="default: the task's")
    parser.add_argument("--work-dir", default=None, help="default: a temporary directory")
    args = parser.parse_args()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="carps_ranking_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work}")
    print("| task | optimizer | trials | best cost per seed | mean | seconds |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for optimizer in args.optimizers:
            bests, trials, start = [], set(), time.time()
            for seed in args.seeds:
                cost, n = best_cost(run(task, optimizer, seed, args.n_trials, work))
                bests.append(cost)
                trials.add(n)
            per_seed = ", ".join(f"{c:.4f}" for c in bests)
            print(
                f"| {task} | {optimizer} | {'/'.join(map(str, sorted(trials)))} | {per_seed} | "
                f"{statistics.mean(bests):.4f} | {time.time() - start:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
