"""Batched trials against sequential ones: trials per second of ``SAFSProblem.train_batch``.

The same ``N`` configurations are evaluated twice per repeat, side by side in one process: one by
one with ``problem.train`` (``sequential``) and all at once with ``problem.train_batch``
(``batched``, one batched model of ``N`` members). The order alternates between repeats, each
thread count runs its own repeats, and a warm-up call of each mode (data, checkpoints) is not
timed. Both modes run with budget continuation off, so neither reads or writes states and both
fine-tune every epoch from the pruned checkpoint; their costs are compared too (they are equal,
the batched engine reproduces sequential trials bit for bit on the CPU).

Cases:

* ``lenet5-sampled``: the default main job's problem (LeNet-5 on mnist-5k, 99% layer-wise
  pruning, the joint space) and ``N`` configurations sampled from its space with a fixed seed;
* ``lenet5-shared-optimizer``: the same configurations with one ``ft:optimizer`` (Adam, the
  model's default) for all; the batch size is the recipe's for every configuration anyway;
* ``<large model>``: a larger network (ResNet-18 by default) at CIFAR shape on synthetic data,
  to show where batching stops paying on the CPU.

Example::

    python benchmarks/batched.py --threads 1,2 --repeats 3
    python benchmarks/batched.py --device cuda --threads 1 --repeats 3   # on a GPU (not run yet)

Results are printed and written (atomically) to ``benchmarks/results/batched/`` (``table.md``,
``timings.csv``, ``meta.json``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from _common import (
    RESULTS_DIR,
    add_quick_argument,
    command_line,
    machine_description,
    markdown_table,
    parse_list,
    parse_with_quick,
    utc_now,
    write_timing_results,
)

from safs_smac.problem import SAFSProblem
from safs_smac.training import resolve_device

SYNTHETIC_MNIST = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4}
QUICK = {
    "trials": 3,
    "repeats": 1,
    "threads": "1",
    "large_trials": 2,
    "large_train": 16,
    "out": Path("safs_runs/bench_batched_quick"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="configurations per batch (LeNet-5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each mode")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--budget", type=float, default=1.0, help="epochs per trial")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda[:N] (both modes run there; default: cpu)"
    )
    parser.add_argument("--config-seed", type=int, default=0, help="seed of the sampled configs")
    parser.add_argument(
        "--large-model", default="resnet18", help="zoo model at CIFAR shape; 'none' to skip"
    )
    parser.add_argument("--large-trials", type=int, default=4, help="configurations (large)")
    parser.add_argument(
        "--large-train", type=int, default=256, help="synthetic training images (large model)"
    )
    parser.add_argument("--cache-dir", default=None, help="default: $SAFS_SMAC_CACHE or ~/.cache")
    parser.add_argument("--data-root", default=None, help="directory of on-disk data sets")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "batched", help="where the results go"
    )
    add_quick_argument(parser, QUICK)
    return parser


def _configs(problem: SAFSProblem, n: int, seed: int, **fixed: Any) -> list[Any]:
    """``n`` configurations sampled from the problem's space with ``seed``; ``fixed`` values set
    in all of them (``ft:momentum`` goes when the optimizer is not SGD)."""
    from ConfigSpace import Configuration

    space = problem.configspace
    space.seed(seed)
    sampled = space.sample_configuration(n)
    sampled = sampled if isinstance(sampled, list) else [sampled]
    if not fixed:
        return sampled
    configs = []
    for config in sampled:
        values = {**dict(config), **fixed}
        if values.get("ft:optimizer") != "sgd":
            values.pop("ft:momentum", None)
        configs.append(Configuration(space, values=values))
    return configs


def _cases(args: argparse.Namespace) -> list[tuple[str, SAFSProblem, list[Any]]]:
    common = {"device": args.device, "continue_trials": False, "cache_dir": args.cache_dir}
    if args.quick:
        lenet = SAFSProblem(
            "lenet5",
            "synthetic",
            dataset_kwargs=SYNTHETIC_MNIST,
            dense_epochs=1,
            pruning_rate=0.9,
            **common,
        )
    else:
        lenet = SAFSProblem("lenet5", "mnist-5k", data_root=args.data_root, **common)
    cases = [
        ("lenet5-sampled", lenet, _configs(lenet, args.trials, args.config_seed)),
        (
            "lenet5-shared-optimizer",
            lenet,
            _configs(lenet, args.trials, args.config_seed, **{"ft:optimizer": "adam"}),
        ),
    ]
    if args.large_model != "none":
        large = SAFSProblem(
            args.large_model,
            "synthetic",
            dataset_kwargs={
                "n_train": args.large_train,
                "n_val": 64,
                "n_test": 64,
                "num_classes": 10,
                "channels": 3,
                "size": 32,
            },
            dense_epochs=0,
            pruning_rate=0.9,
            dnr_probe_size=64,
            **common,
        )
        cases.append(
            (
                f"{args.large_model}-cifar-shape",
                large,
                _configs(large, args.large_trials, args.config_seed),
            )
        )
    return cases


def _run(
    mode: str, problem: SAFSProblem, configs: Sequence[Any], budget: float
) -> tuple[float, list[float]]:
    seeds = list(range(len(configs)))
    start = time.perf_counter()
    if mode == "sequential":
        costs = [problem.train(c, s, budget)[0] for c, s in zip(configs, seeds, strict=True)]
    else:
        results = problem.train_batch(configs, seeds, budget, max_members=len(configs))
        costs = [cost for cost, _ in results]
    return time.perf_counter() - start, costs


def measure(args: argparse.Namespace) -> pd.DataFrame:
    """Alternating timed repeats of both modes for every case and thread count."""
    rows = []
    for case, problem, configs in _cases(args):
        for threads in parse_list(args.threads, int):
            torch.set_num_threads(threads)
            problem.num_threads = threads
            for mode in ("sequential", "batched"):  # warm-up: data, checkpoints, first calls
                _run(mode, problem, configs[:2], args.budget)
            for repeat in range(args.repeats):
                modes = ("sequential", "batched") if repeat % 2 == 0 else ("batched", "sequential")
                costs: dict[str, list[float]] = {}
                for mode in modes:
                    load = os.getloadavg()[0]  # other jobs on the machine, for the record
                    seconds, costs[mode] = _run(mode, problem, configs, args.budget)
                    rows.append(
                        {
                            "load_before": load,
                            "load_after": os.getloadavg()[0],
                            "case": case,
                            "threads": threads,
                            "repeat": repeat,
                            "mode": mode,
                            "trials": len(configs),
                            "seconds": seconds,
                            "trials_per_s": len(configs) / seconds,
                        }
                    )
                    print(
                        f"{case:28s} threads={threads} repeat={repeat} {mode:10s} "
                        f"{seconds:7.2f} s  {len(configs) / seconds:6.2f} trials/s",
                        flush=True,
                    )
                diff = max(
                    abs(a - b) for a, b in zip(costs["sequential"], costs["batched"], strict=True)
                )
                for row in rows[-2:]:
                    row["max_cost_difference"] = diff
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> str:
    """One row per case and thread count: median trials/s of each mode and the paired ratio."""
    lines = []
    for (case, threads), group in frame.groupby(["case", "threads"], sort=False):
        wide = group.pivot_table(index="repeat", columns="mode", values="trials_per_s")
        ratios = (wide["batched"] / wide["sequential"]).tolist()
        lines.append(
            [
                case,
                threads,
                int(group["trials"].iloc[0]),
                len(wide),
                f"{statistics.median(wide['sequential']):.2f}",
                f"{statistics.median(wide['batched']):.2f}",
                f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                f"{group['max_cost_difference'].max():.1e}",
                f"{group['load_before'].min():.1f}-{group['load_after'].max():.1f}",
            ]
        )
    header = [
        "case",
        "threads",
        "trials",
        "repeats",
        "sequential trials/s",
        "batched trials/s",
        "batched / sequential (median, min-max)",
        "max |cost difference|",
        "load average (1 min)",
    ]
    return markdown_table(header, lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parse_with_quick(parser, argv, QUICK)
    try:
        resolve_device(args.device)
    except ValueError as err:  # e.g. cuda on a machine without it: one line, exit 2
        parser.error(str(err))
    started = utc_now()
    start = time.perf_counter()
    frame = measure(args)
    table = summarise(frame)
    meta = {
        "command": command_line("batched.py", argv),
        "machine": machine_description(),
        "started": started,
        "wall_seconds": time.perf_counter() - start,
        "budget": args.budget,
        "config_seed": args.config_seed,
        "device": args.device,
    }
    note = (
        f"Device {args.device}. Budget {args.budget:g} epoch(s) per trial, continuation off in "
        "both modes. "
        "Trials/s is the median over the repeats; the ratio is the median of the per-repeat "
        "ratios (the modes alternate within a repeat)."
    )
    write_timing_results(args.out, "Batched trials vs sequential trials", table, note, meta, frame)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
