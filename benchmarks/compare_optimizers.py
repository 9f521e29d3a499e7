"""LAHC against Bayesian optimisation (and random search) at the same fine-tuning-epoch budget.

For one problem (default: LeNet-5 on MNIST-5k at 99% layer-wise magnitude pruning) every method
searches over the same seeds with the same total number of fine-tuning epochs per run:

* ``lahc``: late acceptance hill climbing over the joint space, every trial at the max budget;
* ``random``: i.i.d. random search (the SAFS reference's "RS" was a greedy walk; ``greedy`` and
  ``sa`` can be added with ``--methods``);
* ``smac-hpo`` (random-forest BO), ``smac-bb`` (Gaussian-process BO): every trial at the max budget;
* ``smac-mf``: Hyperband + random-forest BO over budgets min..max epochs, as many trials as fit
  in the epoch budget (``smac.intensifier.hyperband_utils``);
* ``paper``: the SAFS protocol, LAHC over operators then SMAC-HPO over scales + hyperparameters,
  half of the trials each.

Seed ``s`` is both the dense-training seed (so the pruned network differs between seeds) and the
search seed; the comparison is paired by seed. Every run is a ``safs_smac.optimize`` run directory
under ``--work-dir``: an interrupted benchmark resumes, and a finished run is reused (by
``paper_table.py`` too). Test accuracy is reported only, never used to select anything.

Outputs in ``--out/<problem>/``: ``trials.csv`` (every trial of every run), ``runs.csv`` (one row
per method and seed), ``table.md``, ``anytime.png`` (the incumbent's validation accuracy against
cumulative fine-tuning epochs, mean and +- one standard deviation over seeds), ``wilcoxon.json``
(paired signed-rank test of LAHC against the best BO variant) and ``meta.json`` (command, machine,
times).

Examples::

    python benchmarks/compare_optimizers.py                  # the README's figures
    python benchmarks/compare_optimizers.py --quick          # smoke test: tiny data, checks files
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import (
    add_search_arguments,
    meta_footer,
    pm,
    problem_from_args,
    pyplot,
    save_figure,
    search_meta,
    search_setup,
    show_results,
    utc_now,
    write_csv,
    write_json,
    write_text,
)

DEFAULT_METHODS = ("lahc", "random", "smac-hpo", "smac-bb", "smac-mf", "paper")
EXTRA_METHODS = ("greedy", "sa", "hyperband", "smac-random")
BO_METHODS = ("smac-hpo", "smac-bb", "smac-mf")
LABELS = {
    "lahc": "LAHC",
    "random": "random search (i.i.d.)",
    "greedy": "greedy walk (reference 'RS')",
    "sa": "simulated annealing",
    "smac-hpo": "SMAC-HPO (random forest)",
    "smac-bb": "SMAC-BB (Gaussian process)",
    "smac-mf": "SMAC-MF (Hyperband + BO)",
    "hyperband": "Hyperband",
    "smac-random": "SMAC random facade",
    "paper": "paper protocol (LAHC, then SMAC-HPO)",
    "stage2-only": "stage 2 only (SMAC-HPO, default operators)",
}
MULTI_FIDELITY = ("smac-mf", "hyperband")
TARGET_FRACTION = 0.95
# Trial columns kept in trials.csv; absolute start/end times are machine noise.
TRIAL_COLUMNS = (
    "method",
    "seed",
    "stage",
    "trial",
    "budget",
    "epochs",
    "cost",
    "status",
    "val_accuracy",
    "diverged",
    "seconds",
    "dnr_mean",
    "cumulative_epochs",
    "elapsed",
    "incumbent_budget",
    "incumbent_val_accuracy",
)
QUICK_DATA = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4, "channels": 1}


@dataclasses.dataclass(frozen=True)
class Setup:
    """The problem and the budget every method gets (picklable: sent to worker processes)."""

    model: str = "lenet5"
    dataset: str = "mnist-5k"
    pruning_rate: float = 0.99
    pruning: str = "layerwise"
    epoch_budget: int = 198
    max_budget: int = 9
    min_budget: int = 1
    eta: int = 3
    dense_epochs: int | None = None
    dataset_kwargs: tuple[tuple[str, Any], ...] = ()
    device: str = "auto"
    cache_dir: str | None = None
    work_dir: str = "safs_runs/benchmarks"

    @property
    def problem_id(self) -> str:
        return f"{self.model}_{self.dataset}_{self.pruning}{self.pruning_rate:g}"

    def problem(self, seed: int, **overrides: Any) -> Any:
        """The SAFS problem of seed ``seed`` (``seed`` trains the dense model)."""
        # The fields are named like SAFSProblem's keywords: one keyword list for every script.
        return problem_from_args(
            self, seed=seed, dataset_kwargs=dict(self.dataset_kwargs), **overrides
        )

    def full_budget_trials(self) -> int:
        """Trials at the max budget that fit in the epoch budget."""
        return max(2, self.epoch_budget // self.max_budget)

    def run_dir(self, method: str, seed: int) -> Path:
        return Path(self.work_dir) / self.problem_id / method / f"s{seed}"

    def optimize_kwargs(self, method: str) -> dict[str, Any]:
        """The arguments of ``safs_smac.optimize`` that give ``method`` the epoch budget."""
        # One search over the joint space per optimizer: the comparison of search algorithms.
        kwargs: dict[str, Any] = {
            "max_budget": self.max_budget,
            "min_budget": self.min_budget,
            "protocol": "joint",
        }
        n_trials = self.full_budget_trials()
        if method == "paper":
            return {**kwargs, "protocol": "paper", "n_trials": n_trials}  # replaces "joint"
        if method == "stage2-only":
            # The paper's stage 2 alone: as many trials as the protocol's stage 2 gets.
            return {**kwargs, "optimizer": "smac-hpo", "n_trials": n_trials - n_trials // 2}
        if method in MULTI_FIDELITY:
            from smac.intensifier.hyperband_utils import get_n_trials_for_hyperband_multifidelity

            n_trials = get_n_trials_for_hyperband_multifidelity(
                self.epoch_budget, self.min_budget, self.max_budget, self.eta, print_summary=False
            )
            return {**kwargs, "optimizer": method, "n_trials": int(n_trials), "eta": self.eta}
        return {**kwargs, "optimizer": method, "n_trials": n_trials}

    def problem_overrides(self, method: str) -> dict[str, Any]:
        """SAFSProblem settings a method changes (stage 2 alone searches scales + HPO only)."""
        return {"stage": "scales_hpo"} if method == "stage2-only" else {}


QUICK = Setup(
    model="lenet5",
    dataset="synthetic",
    epoch_budget=6,
    max_budget=2,
    min_budget=1,
    eta=2,
    dense_epochs=1,
    dataset_kwargs=tuple(QUICK_DATA.items()),
    device="cpu",
)


# ---------------------------------------------------------------------------------------- runs
def run_one(setup: Setup, method: str, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Run (or load, when finished) one method on one seed; returns its summary row and trials."""
    from safs_smac.report import with_incumbent_columns
    from safs_smac.search import optimize

    problem = setup.problem(seed, **setup.problem_overrides(method))
    run_dir = setup.run_dir(method, seed)
    reused = (run_dir / "summary.json").exists()
    start = time.perf_counter()
    result = optimize(
        problem,
        seed=seed,
        output_dir=run_dir,
        progress=False,
        **setup.optimize_kwargs(method),
    )
    # "seed" is the run's seed here; the seed SMAC passed to each trial is kept as trial_seed.
    trials = result.trials.rename(columns={"seed": "trial_seed"})
    if "stage" not in trials:
        trials["stage"] = 1
    # The incumbent curve, recomputed: a reused run may predate it (see report.incumbent_curve).
    trials = with_incumbent_columns(trials)
    trials.insert(0, "method", method)
    trials.insert(1, "seed", seed)
    row = {
        "method": method,
        "seed": seed,
        "val_accuracy": result.final.val_accuracy,
        "test_accuracy": result.final.test_accuracy,
        "incumbent_search_val_accuracy": 1.0 - result.incumbent_cost,
        "n_trials": len(trials),
        "epochs": float(pd.to_numeric(trials["epochs"], errors="coerce").sum()),
        "search_seconds": float(trials["elapsed"].max()) if len(trials) else 0.0,
        "call_seconds": time.perf_counter() - start,
        "reused": reused,  # a finished run found in --work-dir: loaded, not run again
        "baseline_val_accuracy": result.baseline.val_accuracy,
        "baseline_test_accuracy": result.baseline.test_accuracy,
        "dense_val_accuracy": result.dense["val_accuracy"],
        "dense_test_accuracy": result.dense["test_accuracy"],
        "operators": json.dumps(result.final.operators),
        "run_dir": str(result.output_dir),
    }
    if result.stages:
        stage1 = result.stages["stage1"].final
        row["stage1_val_accuracy"] = stage1.val_accuracy
        row["stage1_test_accuracy"] = stage1.test_accuracy
        stage1_trials = result.stages["stage1"].trials
        row["stage1_epochs"] = float(pd.to_numeric(stage1_trials["epochs"], errors="coerce").sum())
    return row, trials


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=UserWarning)


def _run_job(job: tuple[Setup, str, int]) -> tuple[dict[str, Any], pd.DataFrame]:
    setup, method, seed = job
    row, trials = run_one(setup, method, seed)
    took = "reused" if row["reused"] else f"{row['call_seconds']:.0f} s"
    print(
        f"  {method:<10} seed {seed}: val {100 * row['val_accuracy']:.2f}% test "
        f"{100 * row['test_accuracy']:.2f}% ({row['n_trials']} trials, {row['epochs']:.0f} "
        f"epochs, {took})",
        flush=True,
    )
    return row, trials


def run_jobs(
    jobs: Sequence[tuple[Setup, str, int]], *, n_workers: int, threads: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``(setup, method, seed)`` jobs, ``n_workers`` processes at a time; rows in job order."""
    if n_workers <= 1:
        _init_worker(threads)
        outputs = [_run_job(job) for job in jobs]
    else:
        # spawn: a fresh interpreter per worker, no inherited torch thread pools or locks.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            n_workers, mp_context=context, initializer=_init_worker, initargs=(threads,)
        ) as pool:
            outputs = list(pool.map(_run_job, jobs))
    runs = pd.DataFrame([row for row, _ in outputs])
    trials = pd.concat([frame for _, frame in outputs], ignore_index=True, sort=False)
    return runs, trials


def warm_caches(setup: Setup, seeds: Sequence[int]) -> None:
    """Train and prune each seed's dense model once, before workers race for it."""
    for seed in seeds:
        setup.problem(seed).pruned_checkpoint()


# ------------------------------------------------------------------------------------ analysis
def anytime_curves(trials: pd.DataFrame, grid: np.ndarray) -> dict[str, np.ndarray]:
    """The incumbent curve at each cumulative-epoch grid point: method -> seeds x grid.

    The incumbent's validation accuracy at the highest budget evaluated so far
    (``incumbent_val_accuracy``, see ``safs_smac.report.incumbent_curve``), not the best accuracy
    of any trial: a multi-fidelity run's low-budget trials do not set it. NaN before a run's first
    trial has finished.
    """
    curves: dict[str, np.ndarray] = {}
    for method, frame in trials.groupby("method", sort=False):
        rows = []
        for _, run in frame.groupby("seed", sort=True):
            run = run.sort_values("cumulative_epochs", kind="stable")
            done = np.searchsorted(run["cumulative_epochs"].to_numpy(float), grid, side="right")
            best = run["incumbent_val_accuracy"].to_numpy(float)
            rows.append(np.where(done > 0, best[np.maximum(done - 1, 0)], np.nan))
        curves[str(method)] = np.vstack(rows)
    return curves


def time_to_target(trials: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Epochs and wall time until each run's incumbent curve reaches the seed's target.

    The target of a seed is ``TARGET_FRACTION`` times the best *final* validation accuracy of any
    method on that seed (validation, so nothing here looks at the test set).
    """
    targets = TARGET_FRACTION * runs.groupby("seed")["val_accuracy"].max()
    rows = []
    for (method, seed), run in trials.groupby(["method", "seed"], sort=False):
        run = run.sort_values("cumulative_epochs", kind="stable")
        hit = run[run["incumbent_val_accuracy"] >= targets[seed]]
        rows.append(
            {
                "method": method,
                "seed": seed,
                "target": targets[seed],
                "epochs_to_target": hit["cumulative_epochs"].iloc[0] if len(hit) else math.nan,
                "seconds_to_target": hit["elapsed"].iloc[0] if len(hit) else math.nan,
            }
        )
    return pd.DataFrame(rows)


def wins(runs: pd.DataFrame, column: str) -> pd.Series:
    """Seeds on which each method has the best ``column`` (ties count for every tied method)."""
    best = runs.groupby("seed")[column].transform("max")
    return (runs[column] >= best - 1e-12).groupby(runs["method"], sort=False).sum()


def summary_table(runs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per method: the figures of ``table.md``."""
    reach = time_to_target(trials, runs)
    win_val, win_test = wins(runs, "val_accuracy"), wins(runs, "test_accuracy")
    rows = []
    for method, frame in runs.groupby("method", sort=False):
        hit = reach[reach["method"] == method]
        rows.append(
            {
                "method": method,
                "seeds": len(frame),
                "trials": frame["n_trials"].mean(),
                "epochs": frame["epochs"].mean(),
                "val_mean": 100 * frame["val_accuracy"].mean(),
                "val_std": 100 * frame["val_accuracy"].std(ddof=1) if len(frame) > 1 else 0.0,
                "test_mean": 100 * frame["test_accuracy"].mean(),
                "test_std": 100 * frame["test_accuracy"].std(ddof=1) if len(frame) > 1 else 0.0,
                "reached": int(hit["epochs_to_target"].notna().sum()),
                "epochs_to_target": hit["epochs_to_target"].mean(),
                "seconds_to_target": hit["seconds_to_target"].mean(),
                "search_seconds": frame["search_seconds"].mean(),
                "wins_val": int(win_val[method]),
                "wins_test": int(win_test[method]),
            }
        )
    return pd.DataFrame(rows)


def paired_test(runs: pd.DataFrame, a: str = "lahc", candidates: Sequence[str] = BO_METHODS):
    """Wilcoxon signed-rank test of ``a`` against the best of ``candidates``, paired by seed.

    The best candidate is the one with the highest mean final *validation* accuracy. Returns a
    JSON-able dict (``None`` when ``a`` or every candidate is missing).
    """
    from scipy.stats import wilcoxon

    present = [m for m in candidates if m in set(runs["method"])]
    if a not in set(runs["method"]) or not present:
        return None
    means = runs[runs["method"].isin(present)].groupby("method")["val_accuracy"].mean()
    best = str(means.idxmax())
    pivot = {
        column: runs.pivot(index="seed", columns="method", values=column)[[a, best]].dropna()
        for column in ("val_accuracy", "test_accuracy")
    }
    out: dict[str, Any] = {"a": a, "b": best, "selected_by": "mean final validation accuracy"}
    for column, pairs in pivot.items():
        diff = pairs[a] - pairs[best]
        entry: dict[str, Any] = {
            "n": len(pairs),
            "mean_difference_points": 100 * float(diff.mean()) if len(diff) else None,
            f"{a}_better": int((diff > 0).sum()),
            f"{best}_better": int((diff < 0).sum()),
            "ties": int((diff == 0).sum()),
        }
        if len(pairs) == 0 or bool((diff == 0).all()):
            entry.update(statistic=None, p_value=1.0 if len(pairs) else None)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small-sample and tie warnings: reported below
                test = wilcoxon(pairs[a], pairs[best], zero_method="zsplit")
            entry.update(statistic=float(test.statistic), p_value=float(test.pvalue))
        # The exact two-sided p of n pairs cannot go below 2 / 2**n.
        entry["smallest_possible_p"] = min(1.0, 2.0 / 2 ** len(pairs)) if len(pairs) else None
        out[column] = entry
    return out


# ------------------------------------------------------------------------------------- outputs
def plot_anytime(curves: dict[str, np.ndarray], grid: np.ndarray, path: Path, title: str) -> None:
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(7.5, 4.5), constrained_layout=True)
    for method, values in curves.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before 1st trial
            mean = 100 * np.nanmean(values, axis=0)
            std = 100 * np.nanstd(values, axis=0)
        (line,) = axis.step(grid, mean, where="post", label=LABELS.get(method, method))
        axis.fill_between(
            grid, mean - std, mean + std, step="post", alpha=0.15, lw=0, color=line.get_color()
        )
    axis.set_xlabel("cumulative fine-tuning epochs")
    axis.set_ylabel("incumbent validation accuracy (%)")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    save_figure(fig, path, dpi=110)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def _maybe(value: float, fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def render_table(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    test: dict[str, Any] | None,
    setup: Setup,
    seeds: Sequence[int],
    meta: dict[str, Any],
) -> str:
    """``table.md``."""
    n = len(seeds)
    lines = [
        f"# LAHC vs Bayesian optimisation: {setup.model} / {setup.dataset} / "
        f"{setup.pruning} magnitude pruning at {100 * setup.pruning_rate:g}%",
        "",
        f"Budget per run: {setup.epoch_budget} fine-tuning epochs ({setup.full_budget_trials()} "
        f"trials of {setup.max_budget} epochs; SMAC-MF: budgets {setup.min_budget}..."
        f"{setup.max_budget} epochs, eta {setup.eta}). Seeds {', '.join(map(str, seeds))} "
        "(seed = dense-training seed = search seed; paired by seed). Final = the incumbent "
        f"fine-tuned again for {setup.max_budget} epochs from the pruned checkpoint. "
        "Selection uses validation accuracy only; test accuracy is reported, never used.",
        "",
        f"| method | trials | epochs | final val % | final test % | epochs to "
        f"{100 * TARGET_FRACTION:g}% | wall s to {100 * TARGET_FRACTION:g}% | search wall s | "
        "wins (val) | wins (test) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in summary.iterrows():
        reached = "" if row["reached"] == n else f" ({row['reached']}/{n} reached)"
        lines.append(
            f"| {LABELS.get(row['method'], row['method'])} | {row['trials']:.0f} | "
            f"{row['epochs']:.0f} | {_pm(row['val_mean'], row['val_std'])} | "
            f"{_pm(row['test_mean'], row['test_std'])} | "
            f"{_maybe(row['epochs_to_target'], '.0f')}{reached} | "
            f"{_maybe(row['seconds_to_target'], '.0f')} | {row['search_seconds']:.0f} | "
            f"{row['wins_val']} | {row['wins_test']} |"
        )
    per_seed = runs.groupby("seed").first()
    lines += [
        "",
        "For reference, mean ± std over the seeds: dense "
        f"{pm(per_seed['dense_val_accuracy'])} val / "
        f"{pm(per_seed['dense_test_accuracy'])} test; magnitude pruning + fine-tuning "
        f"(default activation, dense recipe) {pm(per_seed['baseline_val_accuracy'])} val"
        f" / {pm(per_seed['baseline_test_accuracy'])} test.",
        "",
        f"Epochs/wall s to {100 * TARGET_FRACTION:g}%: cumulative fine-tuning epochs (and seconds "
        "since the run's first trial started) until the validation accuracy of the run's incumbent "
        "(the best trial at the highest budget evaluated so far) reached "
        f"{100 * TARGET_FRACTION:g}% of the best final validation accuracy of any method on that "
        "seed; mean over the seeds that reached it. Wins: seeds on which the method's final "
        "accuracy is the highest (ties count for each tied method).",
    ]
    if test is not None:
        lines += [
            "",
            f"Paired Wilcoxon signed-rank test, {LABELS[test['a']]} vs {LABELS[test['b']]} (the "
            "BO variant with the best mean final validation accuracy):",
            "",
        ]
        for column, name in (("val_accuracy", "validation"), ("test_accuracy", "test")):
            entry = test[column]
            p_value = "n/a" if entry["p_value"] is None else f"{entry['p_value']:.3g}"
            stat = "n/a" if entry["statistic"] is None else f"{entry['statistic']:g}"
            lines.append(
                f"- {name}: mean difference {entry['mean_difference_points']:+.2f} points, "
                f"{test['a']} better on {entry[test['a'] + '_better']}, {test['b']} better on "
                f"{entry[test['b'] + '_better']}, ties {entry['ties']} of {entry['n']} seeds; "
                f"W = {stat}, p = {p_value} (smallest p attainable with {entry['n']} pairs: "
                f"{entry['smallest_possible_p']:.3g})"
            )
    workers = f" with {meta['n_workers']} worker process(es) x {meta['threads']} torch thread(s)"
    lines += meta_footer(meta, workers)
    return "\n".join(lines)


def write_outputs(
    out_dir: Path,
    runs: pd.DataFrame,
    trials: pd.DataFrame,
    setup: Setup,
    seeds: Sequence[int],
    meta: dict[str, Any],
) -> None:
    """Every output file of the comparison."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [c for c in TRIAL_COLUMNS if c in trials]
    columns += [c for c in trials if ":" in c]  # the configuration's hyperparameters
    write_csv(trials[columns], out_dir / "trials.csv", float_format="%.6g")
    write_csv(runs, out_dir / "runs.csv", float_format="%.6g")
    summary = summary_table(runs, trials)
    test = paired_test(runs)
    write_json(out_dir / "wilcoxon.json", test or {})
    grid = np.arange(0, int(np.ceil(trials["cumulative_epochs"].max())) + 1)
    plot_anytime(
        anytime_curves(trials, grid),
        grid,
        out_dir / "anytime.png",
        f"{setup.model} / {setup.dataset} / {setup.pruning} {100 * setup.pruning_rate:g}%: "
        f"mean ± std over {len(seeds)} seeds",
    )
    write_json(out_dir / "meta.json", {**meta, "setup": dataclasses.asdict(setup)})
    write_text(out_dir / "table.md", render_table(summary, runs, test, setup, seeds, meta))


def check_outputs(out_dir: Path, methods: Sequence[str], seeds: Sequence[int]) -> None:
    """Fail with a clear message unless every output file exists and is well formed."""
    out_dir = Path(out_dir)
    for name in ("trials.csv", "runs.csv", "table.md", "anytime.png", "wilcoxon.json", "meta.json"):
        if not (out_dir / name).is_file() or (out_dir / name).stat().st_size == 0:
            raise ValueError(f"{out_dir / name} is missing or empty; rerun the comparison")
    from safs_smac.report import incumbent_curve

    trials = pd.read_csv(out_dir / "trials.csv")
    runs = pd.read_csv(out_dir / "runs.csv")
    expected = {(m, s) for m in methods for s in seeds}
    for frame, name in ((trials, "trials.csv"), (runs, "runs.csv")):
        found = set(zip(frame["method"], frame["seed"]))
        if found != expected:
            raise ValueError(f"{name} covers {sorted(found)}, expected {sorted(expected)}")
    for column in ("val_accuracy", "test_accuracy"):
        if not runs[column].between(0, 1).all():
            raise ValueError(f"runs.csv: {column} outside [0, 1]")
    for (method, seed), run in trials.groupby(["method", "seed"]):
        if not run["cumulative_epochs"].is_monotonic_increasing:
            raise ValueError(f"trials.csv: cumulative_epochs of {method} seed {seed} decrease")
        # Not monotonic in a multi-fidelity run: it may drop when a higher budget is reached.
        expected_curve = incumbent_curve(run.sort_values("trial", kind="stable"))
        for column in ("incumbent_budget", "incumbent_val_accuracy"):
            found_curve = run[column].loc[expected_curve.index].to_numpy(float)
            if not np.allclose(found_curve, expected_curve[column], atol=1e-6, equal_nan=True):
                raise ValueError(
                    f"trials.csv: {column} of {method} seed {seed} is not the incumbent curve"
                )
    table = (out_dir / "table.md").read_text()
    for method in methods:
        if f"| {LABELS.get(method, method)} |" not in table:
            raise ValueError(f"table.md has no row for {method}")
    if (out_dir / "anytime.png").read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{out_dir / 'anytime.png'} is not a PNG file")
    test = json.loads((out_dir / "wilcoxon.json").read_text())
    wanted = "lahc" in methods and bool(set(BO_METHODS) & set(methods))
    if wanted and not {"a", "b", "val_accuracy", "test_accuracy"} <= set(test):
        raise ValueError("wilcoxon.json lacks the LAHC vs BO test")


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    default = Setup()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pruning", default=default.pruning, choices=["layerwise", "global"])
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated; also available: {', '.join(EXTRA_METHODS)}",
    )
    add_search_arguments(parser, default, out_help="default: benchmarks/results/compare")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(LABELS))
    if unknown:
        print(f"error: unknown methods {unknown}; valid: {', '.join(LABELS)}", file=sys.stderr)
        return 2
    setup, seeds, out_root = search_setup(
        args, Setup(), QUICK, results="compare", quick_out="compare-quick"
    )
    out_dir = out_root / setup.problem_id
    started, wall = utc_now(), time.perf_counter()
    print(f"{setup.problem_id}: {', '.join(methods)} x seeds {seeds}", flush=True)
    warm_caches(setup, seeds)
    jobs = [(setup, method, seed) for seed in seeds for method in methods]
    runs, trials = run_jobs(jobs, n_workers=args.n_workers, threads=args.threads)
    meta = search_meta(
        "compare_optimizers.py",
        argv,
        runs,
        started=started,
        wall_seconds=time.perf_counter() - wall,
        n_workers=args.n_workers,
        threads=args.threads,
        methods=methods,
        seeds=seeds,
    )
    write_outputs(out_dir, runs, trials, setup, seeds, meta)
    check_outputs(out_dir, methods, seeds)
    return show_results(out_dir)


if __name__ == "__main__":
    sys.exit(main())
