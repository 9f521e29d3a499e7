"""The SAFS paper's results table for one model and data set, measured with safs_smac.

Rows (each mean ± std over seeds, validation and test accuracy):

* dense: the trained dense model;
* magnitude pruning: pruned, then fine-tuned with the default activation and the dense recipe;
* stage 1 only: LAHC's operators, default recipe, alpha = beta = 1 frozen (the paper protocol's
  stage-1 incumbent, retrained);
* stage 2 only: the default operators, scales + fine-tuning hyperparameters searched by SMAC-HPO
  with the trials of the protocol's stage 2;
* SAFS (stage 1 + 2): the paper protocol;
* joint multi-fidelity SMAC: one SMAC-MF run over the joint space, at the protocol's epoch budget.

The block is measured twice: on layer-wise magnitude pruning (the paper's setting) and on global
magnitude pruning, a stronger pruning baseline the paper did not use.

Seed ``s`` trains the dense model and seeds the searches, so the spread covers dense training,
pruning and search. Every run is a ``safs_smac.optimize`` run directory under ``--work-dir``,
shared with ``compare_optimizers.py``: the layer-wise protocol and SMAC-MF runs of a comparison
with the same settings are reused, not run again. Test accuracy is reported, never used to
select anything.

Examples::

    python benchmarks/paper_table.py                 # LeNet-5 / MNIST-5k / 99%, 5 seeds
    python benchmarks/paper_table.py --quick         # smoke test on tiny synthetic data
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _common as common
import pandas as pd

# A sibling script: its folder is on sys.path when this one runs as a script (and in the tests).
from compare_optimizers import QUICK, Setup, run_jobs, warm_caches

METHODS = ("paper", "stage2-only", "smac-mf")
SCOPES = ("layerwise", "global")
SCOPE_TITLES = {
    "layerwise": "layer-wise magnitude pruning (the paper's setting)",
    "global": "global magnitude pruning (not in the paper)",
}
# (row label, run whose results it reads, column prefix in that run's row)
ROWS = (
    ("dense", "paper", "dense_"),
    ("magnitude pruning + fine-tuning", "paper", "baseline_"),
    ("stage 1 only (LAHC operators)", "paper", "stage1_"),
    ("stage 2 only (SMAC-HPO scales + HPO, default operators)", "stage2-only", ""),
    ("SAFS (stage 1 + 2)", "paper", ""),
    ("joint multi-fidelity SMAC (ours)", "smac-mf", ""),
)
# The paper's Table (LeNet-5 on full MNIST, 80-epoch trials, 200-epoch retraining), top-1 %.
PAPER_LENET5 = "98.49 | 46.69 | 61.63 | 60.2 | 62.22"


def table_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (scope, row label, seed) with validation and test accuracy."""
    rows = []
    for _, run in runs.iterrows():
        for label, method, prefix in ROWS:
            if run["method"] != method:
                continue
            rows.append(
                {
                    "scope": run["scope"],
                    "row": label,
                    "seed": run["seed"],
                    "val_accuracy": run[f"{prefix}val_accuracy"],
                    "test_accuracy": run[f"{prefix}test_accuracy"],
                    "search_epochs": _search_epochs(run, prefix),
                    "run_dir": run["run_dir"],
                }
            )
    return pd.DataFrame(rows)


def _search_epochs(run: pd.Series, prefix: str) -> float:
    """Fine-tuning epochs the search behind a row spent (stage 1's alone for its row)."""
    if prefix in ("dense_", "baseline_"):
        return 0.0
    return float(run["stage1_epochs"] if prefix == "stage1_" else run["epochs"])


def render(rows: pd.DataFrame, setup: Setup, seeds: Sequence[int], meta: dict[str, Any]) -> str:
    """``table.md``."""
    lines = [
        f"# SAFS paper table: {setup.model} / {setup.dataset}, {100 * setup.pruning_rate:g}% "
        "sparsity",
        "",
        f"Mean ± std over seeds {', '.join(map(str, seeds))} (seed = dense-training seed = "
        f"search seed). Every trial and every final retraining fine-tunes {setup.max_budget} "
        f"epochs from the pruned checkpoint; SAFS and SMAC-MF get {setup.epoch_budget} search "
        f"epochs each ({setup.full_budget_trials()} full trials; the protocol splits them "
        "evenly between its stages), stage 2 alone gets the protocol's stage-2 trials. "
        "Accuracies in %; Δ test = test accuracy minus magnitude pruning's.",
    ]
    for scope, block in rows.groupby("scope", sort=False):
        base = block[block["row"] == ROWS[1][0]].set_index("seed")["test_accuracy"]
        lines += [
            "",
            f"## {SCOPE_TITLES.get(str(scope), str(scope))}",
            "",
            "| row | val % | test % | Δ test (points) | search epochs |",
            "|---|---|---|---|---|",
        ]
        for label, _, _ in ROWS:
            entry = block[block["row"] == label]
            if entry.empty:
                continue
            gain = entry.set_index("seed")["test_accuracy"] - base
            delta = "" if label == ROWS[0][0] else f"{100 * gain.mean():+.2f}"  # not for dense
            lines.append(
                f"| {label} | {common.pm(entry['val_accuracy'])} | "
                f"{common.pm(entry['test_accuracy'])} | {delta} | "
                f"{entry['search_epochs'].mean():.0f} |"
            )
    if setup.model == "lenet5":
        lines += [
            "",
            "The paper (LeNet-5 on full MNIST, 80-epoch trials, 200-epoch retraining; dense | "
            f"magnitude pruning | stage 1 | stage 2 | SAFS, test %): {PAPER_LENET5}.",
        ]
    reuse = " (finished runs are reused, e.g. from compare_optimizers.py)"
    lines += common.meta_footer(meta, reuse)
    return "\n".join(lines)


def check_outputs(out_dir: Path, scopes: Sequence[str], seeds: Sequence[int]) -> None:
    """Fail with a clear message unless the table files exist and are well formed."""
    for name in ("table.md", "rows.csv", "meta.json"):
        if not (out_dir / name).is_file() or (out_dir / name).stat().st_size == 0:
            raise ValueError(f"{out_dir / name} is missing or empty; rerun the table")
    rows = pd.read_csv(out_dir / "rows.csv")
    expected = {(scope, label, seed) for scope in scopes for label, _, _ in ROWS for seed in seeds}
    found = set(zip(rows["scope"], rows["row"], rows["seed"]))
    if found != expected:
        raise ValueError(f"rows.csv misses {sorted(expected - found)}")
    if not rows[["val_accuracy", "test_accuracy"]].stack().between(0, 1).all():
        raise ValueError("rows.csv: accuracies outside [0, 1]")
    table = (out_dir / "table.md").read_text()
    for label, _, _ in ROWS:
        if table.count(f"| {label} |") != len(scopes):
            raise ValueError(f"table.md lacks the row {label!r} in some block")


def build_parser() -> argparse.ArgumentParser:
    default = Setup()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--scopes", default=",".join(SCOPES), help="pruning scopes, one block each")
    common.add_search_arguments(parser, default, out_help="default: benchmarks/results/paper_table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes or set(scopes) - set(SCOPES):
        print(f"error: --scopes takes {', '.join(SCOPES)}, got {args.scopes!r}", file=sys.stderr)
        return 2
    # The quick runs share compare_optimizers.py's folder, so they are reused here too.
    base, seeds, out_root = common.search_setup(
        args, Setup(), QUICK, results="paper_table", quick_out="paper-table-quick"
    )
    out_dir = out_root / f"{base.model}_{base.dataset}_{base.pruning_rate:g}"
    started, wall = common.utc_now(), time.perf_counter()
    setups = [dataclasses.replace(base, pruning=scope) for scope in scopes]
    for setup in setups:
        warm_caches(setup, seeds)
    jobs = [(setup, method, seed) for setup in setups for seed in seeds for method in METHODS]
    runs, _ = run_jobs(jobs, n_workers=args.n_workers, threads=args.threads)
    runs.insert(0, "scope", [setup.pruning for setup, _, _ in jobs])
    rows = table_rows(runs)
    meta = common.search_meta(
        "paper_table.py",
        argv,
        runs,
        started=started,
        wall_seconds=time.perf_counter() - wall,
        seeds=seeds,
        scopes=scopes,
        setup=dataclasses.asdict(base),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    common.write_csv(rows, out_dir / "rows.csv", float_format="%.6g")
    common.write_json(out_dir / "meta.json", meta)
    common.write_text(out_dir / "table.md", render(rows, base, seeds, meta))
    check_outputs(out_dir, scopes, seeds)
    return common.show_results(out_dir)


if __name__ == "__main__":
    sys.exit(main())
