"""SMAC's own share of the main job's wall time, and what the checkpoint cache saves.

Runs the main job's search (``safs-smac run``'s settings unless overridden, one joint SMAC-MF
run) against one fresh cache directory, side by side in one process:

1. cold: the cache is empty, so the dense model is trained and pruned first;
2. warm, twice each, interleaved: with SMAC's random forest on joblib's threads (SMAC's default)
   and in the calling thread (``safs_smac.smac_compat.surrogate_in_this_thread``, what
   ``optimize`` does), same seed; the proposals must be identical.

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
from typing import Any

import torch
from _common import RESULTS_DIR, problem_from_args, write_json, write_text

from safs_smac import smac_compat
from safs_smac.cli import DEFAULT_MAX_BUDGET, DEFAULT_MIN_BUDGET, DEFAULT_TRIALS
from safs_smac.search import optimize


def measure(
    cache_dir: Path, output_dir: Path, args: argparse.Namespace, *, in_this_thread: bool = True
) -> dict[str, float]:
    """Run the main job once; return its timings."""
    smac_compat.SURROGATE_IN_THIS_THREAD = in_this_thread
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
        "proposals": _proposals(result.trials),
    }


def _proposals(trials: Any) -> list[str]:
    """Each trial's configuration and budget, to check that two runs proposed the same."""
    columns = [c for c in trials.columns if ":" in c and not c.startswith("dnr:")]
    return [
        json.dumps({c: row[c] for c in columns} | {"budget": row["budget"]}, default=str)
        for _, row in trials.iterrows()
    ]


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
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per arm")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "overhead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="safs-overhead-") as tmp:
        root = Path(tmp)
        cold = measure(root / "cache", root / "cold", args)
        arms: dict[str, list[dict[str, Any]]] = {"joblib threads": [], "this thread": []}
        for repeat in range(args.repeats):
            for label, in_this_thread in (("joblib threads", False), ("this thread", True)):
                out = root / f"warm-{int(in_this_thread)}-{repeat}"
                arms[label].append(
                    measure(root / "cache", out, args, in_this_thread=in_this_thread)
                )
    smac_compat.SURROGATE_IN_THIS_THREAD = True
    warm = arms["this thread"][0]
    same = all(
        run["proposals"] == arms["joblib threads"][0]["proposals"]
        for runs in arms.values()
        for run in runs
    )

    rows = [("cold cache (surrogate in this thread)", cold)] + [
        (f"warm cache, surrogate on {label} ({i + 1})", run)
        for label, runs in arms.items()
        for i, run in enumerate(runs)
    ]
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
        "SMAC overhead share (goal <= 5%), warm cache, mean of the repeats: "
        + ", ".join(
            f"surrogate on {label} {100 * _mean(runs, 'smac_overhead_share'):.1f}% "
            f"({_mean(runs, 'smac_overhead_seconds') / args.n_trials:.3f} s per trial)"
            for label, runs in arms.items()
        )
        + f"; identical proposals in every run: {'yes' if same else 'NO'}.",
    ]
    report = "\n".join(lines)
    print(report)
    write_text(args.output / "overhead.md", report + "\n")
    for run in [cold, *arms["joblib threads"], *arms["this thread"]]:
        run.pop("proposals")
    write_json(args.output / "overhead.json", {"cold": cold, **arms, "identical_proposals": same})


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return sum(run[key] for run in runs) / len(runs)


if __name__ == "__main__":
    main()
