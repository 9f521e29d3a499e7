"""SMAC's own share of the main job's wall time, and what the checkpoint cache saves.

Runs the default main job (``safs-smac run``'s settings unless overridden) twice against one fresh
cache directory, side by side in one process:

1. cold: the cache is empty, so the dense model is trained and pruned first;
2. warm: a second run (new output directory, same problem) that finds both checkpoints cached.

For each run it reports the search's wall time, the time spent inside the target function (from
SMAC's ``optimization.json``), SMAC's overhead (ask/tell, surrogate fitting, bookkeeping) as a share
of the search's wall time, and the time to get the pruned checkpoint. Goal: overhead <= 5%.

    python benchmarks/overhead.py                  # default main job, ~10 minutes on 2 cores
    python benchmarks/overhead.py --n-trials 10    # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from _common import RESULTS_DIR, problem_from_args, write_json, write_text

from safs_smac.cli import DEFAULT_MAX_BUDGET, DEFAULT_MIN_BUDGET, DEFAULT_TRIALS
from safs_smac.search import optimize


def measure(cache_dir: Path, output_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Run the main job once; return its timings."""
    start = time.perf_counter()
    problem = problem_from_args(args, cache_dir=cache_dir, max_budget=round(args.max_budget))
    problem.pruned_checkpoint()
    checkpoint_seconds = time.perf_counter() - start
    result = optimize(
        problem,
        args.optimizer,
        protocol="joint",
        n_trials=args.n_trials,
        min_budget=args.min_budget,
        max_budget=args.max_budget,
        output_dir=output_dir,
        progress=False,
    )
    total_seconds = time.perf_counter() - start
    stats = json.loads((output_dir / "smac" / "0" / "optimization.json").read_text())
    search = float(stats["used_walltime"])
    target = float(stats["used_target_function_walltime"])
    return {
        "checkpoint_seconds": checkpoint_seconds,
        "search_seconds": search,
        "target_seconds": target,
        "smac_overhead_seconds": search - target,
        "smac_overhead_share": (search - target) / search,
        "total_seconds": total_seconds,
        "trials": len(result.trials),
        "test_accuracy": result.final.test_accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--optimizer", default="smac-mf")
    parser.add_argument("--n-trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--min-budget", type=float, default=DEFAULT_MIN_BUDGET)
    parser.add_argument("--max-budget", type=float, default=DEFAULT_MAX_BUDGET)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "overhead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="safs-overhead-") as tmp:
        root = Path(tmp)
        cold = measure(root / "cache", root / "cold", args)
        warm = measure(root / "cache", root / "warm", args)

    rows = [("cold cache", cold), ("warm cache", warm)]
    lines = [
        f"Main job: {args.model} / {args.dataset}, {args.optimizer}, {args.n_trials} trials, "
        f"budgets {args.min_budget:g}-{args.max_budget:g} epochs.",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}.",
        "",
        "| run | dense+pruned checkpoint (s) | search wall (s) | in target (s) | SMAC overhead (s) "
        "| SMAC overhead share | whole run (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in rows:
        lines.append(
            f"| {label} | {row['checkpoint_seconds']:.1f} | {row['search_seconds']:.1f} | "
            f"{row['target_seconds']:.1f} | {row['smac_overhead_seconds']:.1f} | "
            f"{100 * row['smac_overhead_share']:.1f}% | {row['total_seconds']:.1f} |"
        )
    speedup = cold["checkpoint_seconds"] / max(warm["checkpoint_seconds"], 1e-9)
    lines += [
        "",
        f"Cache: the warm run gets its pruned checkpoint {speedup:.0f}x faster "
        f"({cold['checkpoint_seconds']:.1f} s -> {warm['checkpoint_seconds']:.2f} s); whole run "
        f"{cold['total_seconds']:.0f} s -> {warm['total_seconds']:.0f} s.",
        f"SMAC overhead share (goal <= 5%): cold {100 * cold['smac_overhead_share']:.1f}%, "
        f"warm {100 * warm['smac_overhead_share']:.1f}%.",
    ]
    report = "\n".join(lines)
    print(report)
    write_text(args.output / "overhead.md", report + "\n")
    write_json(args.output / "overhead.json", {"cold": cold, "warm": warm})


if __name__ == "__main__":
    main()
