"""Trials per minute with 1 and 2 (or more) workers on the same problem, side by side.

The same fixed configurations (random configurations of the problem's space, fixed seed) are
evaluated at a fixed budget by the machinery ``optimize`` uses (:mod:`safs_smac.parallel`'s
runners, driven by :func:`safs_smac.optimizers.run_optimizer` with random search). All trials are
submitted at once, so a worker takes the next trial as soon as it is free, as under SMAC's
facades (LAHC's batches wait for their slowest trial; that is the algorithm's cost, not the
engine's):

* ``1 worker``: trials run one after the other in this process, torch on every core (what
  ``--n-workers 1`` does), and also with one torch thread: on a busy machine intra-op threads
  can be much slower than one, so the speed-up is reported against the *faster* serial setting;
* ``N workers``: a local Dask cluster of ``N`` processes, torch threads per worker =
  cores // N, ``N`` trials at a time (what ``--n-workers N`` does).

Cluster start-up is timed separately; each worker is warmed up (imports, data set, pruned
checkpoint) before the clock starts, as the serial process is. The settings are interleaved over
``--repeats`` rounds; the median wall time per setting gives trials per minute and the
speed-up against the faster 1-worker setting. The machine's load average is recorded before and
after every measurement: on a shared machine the figure depends on it.

Example::

    python benchmarks/scaling.py                 # LeNet-5 on MNIST-5k, 16 trials of 1 epoch
    python benchmarks/scaling.py --quick         # synthetic data, a few seconds

Results are printed and written (atomically) as Markdown and JSON to
``benchmarks/results/scaling/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from _common import RESULTS_DIR, command_line, problem_from_args, write_json, write_text
from smac import Scenario

from safs_smac import parallel
from safs_smac.optimizers import RandomSearch, run_optimizer
from safs_smac.problem import SAFSProblem
from safs_smac.workers import available_cores, threads_per_worker

QUICK_DATA = {"n_train": 256, "n_val": 128, "n_test": 64, "num_classes": 4, "channels": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--pruning-rate", type=float, default=0.99)
    parser.add_argument("--trials", type=int, default=16, help="configurations per setting")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per trial")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--serial-threads",
        default="all,1",
        help="torch threads of the 1-worker runs ('all' = every core)",
    )
    parser.add_argument("--dense-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR / "scaling")
    parser.add_argument(
        "--quick", action="store_true", help="synthetic data and 6 trials: a smoke test"
    )
    args = parser.parse_args(argv)
    args.worker_counts = [int(n) for n in args.workers.split(",")]
    args.serial_threads = [
        available_cores() if t.strip() == "all" else int(t) for t in args.serial_threads.split(",")
    ]
    if args.quick:
        args.dataset, args.trials, args.epochs = "synthetic", 6, 1
        args.dense_epochs, args.repeats = 1, 1
    return args


def build_problem(args: argparse.Namespace) -> SAFSProblem:
    return problem_from_args(
        args,
        max_budget=args.epochs,
        device="cpu",
        dataset_kwargs=QUICK_DATA if args.dataset == "synthetic" else None,
    )


def _warm_up(problem: SAFSProblem) -> None:
    """Load what a trial needs (imports, data, pruned checkpoint) in this worker process."""
    problem.train(problem.configspace.get_default_configuration(), seed=0, budget=1)


def measure(
    problem: SAFSProblem, n_workers: int, threads: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Evaluate the fixed configurations with ``n_workers`` of ``threads`` torch threads each."""
    scenario = Scenario(problem.configspace, deterministic=True, seed=args.seed, crash_cost=1.0)
    worker_problem = problem.with_space()
    worker_problem.num_threads = threads
    load_before = os.getloadavg()
    start = time.perf_counter()
    with parallel.dask_client(n_workers) as client:
        startup = time.perf_counter() - start
        if client is not None:
            client.wait_for_workers(n_workers)
            client.run(_warm_up, worker_problem)
        else:
            _warm_up(worker_problem)
        runner = parallel.make_runner(scenario, worker_problem.train, ["seed", "budget"], client)
        optimizer = RandomSearch(problem.configspace, seed=args.seed, budget=args.epochs)
        busy_before, ours_before = _machine_busy(), _our_cpu()
        start = time.perf_counter()
        # One batch of every trial: the runner hands each free worker the next one.
        history = run_optimizer(optimizer, runner, n_trials=args.trials, batch_size=args.trials)
        seconds = time.perf_counter() - start
        others = (_machine_busy() - busy_before) - (_our_cpu() - ours_before)
    return {
        "workers": n_workers,
        "torch_threads": threads,
        "trials": len(history),
        "statuses": sorted({value.status.name for value in history.values()}),
        "seconds": seconds,
        "trials_per_minute": 60.0 * len(history) / seconds,
        "startup_seconds": startup,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        # Cores the machine's other processes kept busy, on average, during the measurement.
        "other_cores": max(0.0, others / seconds),
    }


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (all processes)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _our_cpu() -> float:
    """CPU seconds of this process and its children (the Dask workers) so far."""
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def settings(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(workers, torch threads per worker) to measure."""
    serial = [(1, threads) for threads in dict.fromkeys(args.serial_threads)]
    return serial + [(n, threads_per_worker(n)) for n in args.worker_counts if n > 1]


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def median_seconds(setting: tuple[int, int]) -> float:
        return statistics.median(
            r["seconds"] for r in rows if (r["workers"], r["torch_threads"]) == setting
        )

    groups = list(dict.fromkeys((r["workers"], r["torch_threads"]) for r in rows))
    base = min(median_seconds(g) for g in groups if g[0] == 1)
    lines = [
        f"# Scaling: {meta['problem']}",
        "",
        f"{meta['trials']} trials of {meta['epochs']} epoch(s) per setting, {meta['cores']} cores,"
        f" torch {meta['torch']}, {meta['date']}; command `{meta['command']}`.",
        "",
        "| workers | torch threads each | wall s: median (every run) | trials / min | speed-up vs "
        "best 1-worker | cores used by other jobs (every run) | load avg (1 min) before -> after "
        "|",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        runs = [r for r in rows if (r["workers"], r["torch_threads"]) == group]
        seconds = median_seconds(group)
        loads = ", ".join(f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}" for r in runs)
        every = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        others = ", ".join(f"{r.get('other_cores', math.nan):.2f}" for r in runs)
        lines.append(
            f"| {group[0]} | {group[1]} | {seconds:.1f} ({every}) | "
            f"{60.0 * meta['trials'] / seconds:.1f} | {base / seconds:.2f}x | {others} | {loads} |"
        )
    startups = [r["startup_seconds"] for r in rows if r["workers"] > 1]
    if startups:
        lines += ["", f"Local cluster start-up (not in the wall times): {max(startups):.1f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if 1 not in args.worker_counts:
        raise SystemExit("--workers must include 1 (the baseline of the speed-up)")
    cache = args.cache_dir or Path(tempfile.gettempdir()) / "safs-smac-scaling-cache"
    args.cache_dir = cache
    problem = build_problem(args)
    problem.pruned_checkpoint()  # dense training and pruning once, before any clock
    rows = []
    for round_ in range(args.repeats):
        order = settings(args) if round_ % 2 == 0 else settings(args)[::-1]
        for n, threads in order:
            row = measure(problem, n, threads, args)
            rows.append(row)
            print(
                f"round {round_ + 1}: {n} worker(s) x {threads} thread(s): {row['seconds']:.1f} s,"
                f" {row['trials_per_minute']:.1f} trials/min, other jobs {row['other_cores']:.2f}"
                f" cores, load {row['load_before'][0]:.1f}",
                flush=True,
            )
    meta = {
        "problem": f"{args.model} / {args.dataset}, {100 * args.pruning_rate:g}% pruned",
        "trials": args.trials,
        "epochs": args.epochs,
        "worker_counts": args.worker_counts,
        "cores": available_cores(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now().isoformat(timespec="minutes"),
        "command": command_line("scaling.py", argv),
    }
    report = render(rows, meta)
    print(report)
    out = args.output_dir
    write_text(out / "scaling.md", report)
    write_json(out / "scaling.json", {"meta": meta, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
