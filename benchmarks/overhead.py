"""SMAC's own share of the default main job's search, with and without our surrogate patches.

Runs the default main job (``safs-smac run``'s settings, read from its own parser: LeNet-5 on
MNIST-5k, gradual pruning to 99%, staged SMAC-MF, 40 trials) side by side in one process against
one cache directory, so the dense and pruned checkpoints are built once (cold run first, not
compared). Then, interleaved, ``--repeats`` times each, three arms with the same seed:

1. SMAC as shipped: its random forest on joblib threads, trees sized for 2**20 leaves;
2. the forest in the calling thread (``smac_compat.surrogate_in_this_thread``);
3. also the trees bounded by their number of points (``smac_compat.bounded_forest_trees``);
   arms 2 and 3 together are ``smac_compat.fast_surrogate``, part of what ``optimize`` runs SMAC in.

The patches must not change what SMAC proposes: every run's trials (configuration, budget, cost)
are compared. For each run it reports the search's wall time (the stages' spans, as
``summary.json``'s ``work``), the time inside the target function, and the rest's share: SMAC's
ask/tell, surrogate fitting, acquisition optimisation, runhistory saves and our bookkeeping.
It also reads SMAC's own accounting (``optimization.json`` of each stage). Goal (issue 11):
overhead <= 5% of the search's wall time.

    nice python benchmarks/overhead.py --threads 1      # README figures, ~10 minutes on 2 cores
    python benchmarks/overhead.py --repeats 1           # quicker
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
from _common import RESULTS_DIR, pm, write_json, write_text

from safs_smac import smac_compat
from safs_smac.cli import build_parser, run_options, run_problem
from safs_smac.search import optimize, run_label

ARMS = {
    "SMAC as shipped": {"in_this_thread": False, "bounded_trees": False},
    "forest in this thread": {"in_this_thread": True, "bounded_trees": False},
    "this thread + bounded trees (default)": {"in_this_thread": True, "bounded_trees": True},
}


def measure(args: argparse.Namespace, cache_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Run the default main job once (surrogate patches as ``SURROGATE_PATCHES`` says)."""
    problem = run_problem(args, cache_dir=cache_dir)
    start = time.perf_counter()
    problem.pruned_checkpoint()
    checkpoint_seconds = time.perf_counter() - start
    result = optimize(
        problem, args.optimizer, **run_options(args, output_dir=output_dir, progress=False)
    )
    work = result.summary()["work"]
    smac_wall = smac_target = 0.0
    for stats_file in output_dir.glob("**/smac/*/optimization.json"):
        stats = json.loads(stats_file.read_text())
        smac_wall += float(stats["used_walltime"])
        smac_target += float(stats["used_target_function_walltime"])
    trials = result.trials
    columns = [c for c in trials.columns if ":" in c and not c.startswith("dnr:")]
    return {
        "checkpoint_seconds": checkpoint_seconds,
        "search_seconds": work["search_seconds"],
        "target_seconds": work["target_seconds"],
        "overhead_seconds": work["search_seconds"] - work["target_seconds"],
        "overhead_share": work["overhead_share"],
        "smac_overhead_share": 1.0 - smac_target / smac_wall,
        "trials": len(trials),
        "test_accuracy": result.final.test_accuracy,
        "proposals": [
            json.dumps({c: row[c] for c in [*columns, "budget", "cost"]}, default=str)
            for _, row in trials.iterrows()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per arm")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "overhead")
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    args = build_parser().parse_args(["run"])

    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in ARMS}
    with tempfile.TemporaryDirectory(prefix="safs-overhead-") as tmp:
        root = Path(tmp)
        cold = measure(args, root / "cache", root / "cold")
        for repeat in range(options.repeats):
            for index, (label, patches) in enumerate(ARMS.items()):
                with smac_compat.surrogate_patches(**patches):
                    out = root / f"arm{index}-{repeat}"
                    runs[label].append(measure(args, root / "cache", out))
    same = all(run["proposals"] == cold["proposals"] for arm in runs.values() for run in arm)

    label = run_label(args.optimizer, args.protocol)
    lines = [
        f"Default main job: {args.model} / {args.dataset}, {label}, "
        f"{args.n_trials} trials, budgets up to {args.max_budget:g} epochs, seed {args.seed}; "
        f"{options.repeats} warm run(s) per arm, interleaved.",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}.",
        "",
        "| arm | search wall (s) | in target (s) | overhead (s per trial) | overhead share "
        "| SMAC's own accounting |",
        "|---|---|---|---|---|---|",
    ]
    for label, arm in runs.items():
        lines.append(
            f"| {label} | {pm([r['search_seconds'] for r in arm], scale=1, digits=1)} | "
            f"{pm([r['target_seconds'] for r in arm], scale=1, digits=1)} | "
            f"{pm([r['overhead_seconds'] / r['trials'] for r in arm], scale=1, digits=3)} | "
            f"{pm([r['overhead_share'] for r in arm], digits=1)}% | "
            f"{pm([r['smac_overhead_share'] for r in arm], digits=1)}% |"
        )
    default = runs[list(ARMS)[-1]]
    share = sum(r["overhead_share"] for r in default) / len(default)
    lines += [
        "",
        f"Cold run (builds the checkpoints, not compared): pruned checkpoint "
        f"{cold['checkpoint_seconds']:.1f} s, search {cold['search_seconds']:.1f} s, overhead "
        f"{100 * cold['overhead_share']:.1f}%.",
        f"Identical trials (configuration, budget, cost) in every run: {'yes' if same else 'NO'}.",
        f"Goal <= 5% overhead with the default patches: {100 * share:.1f}% -> "
        f"{'met' if share <= 0.05 else 'MISSED'}.",
    ]
    report = "\n".join(lines)
    print(report)
    write_text(options.output / "overhead.md", report + "\n")
    for run in [cold, *(r for arm in runs.values() for r in arm)]:
        run.pop("proposals")
    write_json(options.output / "overhead.json", {"cold": cold, **runs, "identical": same})


if __name__ == "__main__":
    main()
