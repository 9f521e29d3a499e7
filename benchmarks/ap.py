"""AP (Activating-while-Pruning) on iterative global magnitude pruning, with and without SAFS.

LeNet-5 on mnist-5k (default). Everything runs through :class:`safs_smac.problem.SAFSProblem`
with a pruning schedule; only the final evaluation touches test data.

``imp``
    Iterative global magnitude pruning with lottery-ticket rewinding:
    ``SAFSProblem(pruning="global", prune_schedule=AP(ap_fraction=0, rewind=True, ...),
    dense_epochs=0)``. ``dense_epochs=0`` makes the seeded initial weights the problem's "dense"
    network, so rewinding goes back to the initialisation. Every cycle trains ``--cycle-epochs``
    epochs (the problem's fine-tuning between rounds: the zoo recipe, seed = the problem's seed),
    removes the fraction ``p`` (``--prune-fraction``) of the surviving weights by global magnitude
    and rewinds. ``ap_fraction=0`` makes it the control that differs from AP *only* in AP's rule.
``imp_ap``
    The same schedule with ``ap = share * p`` (``--ap-share``, default 0.1: the paper's 2 % of
    20 %): that part of each cycle's removals goes by AP's rule instead of by magnitude (among the
    surviving negative weights, those that moved least during the cycle).
``+ safs``
    At the ``--safs-sparsities`` levels, the ticket of that level (initial weights and the mask
    the schedule reached there) is the pruned network of a ``SAFSProblem`` (the target level's is
    the schedule's own checkpoint; earlier levels replay the recorded mask), and Late Acceptance
    Hill Climbing (:class:`safs_smac.optimizers.LAHC`, ``--safs-trials`` trials from all-ReLU,
    operators only) searches per-site operators with :meth:`SAFSProblem.train`, each trial
    training the ticket ``--safs-epochs`` epochs. The best *validation* accuracy is selected
    (ties go to the earlier trial, so all-ReLU wins a tie).

Validation only during the cycles and the searches; test data only in the final evaluation: at
each SAFS level, the ReLU ticket (the pipeline without SAFS) and the selected operators are
trained ``--final-repeats`` times with :meth:`SAFSProblem.final_evaluation` (seeds ``10000 + k``,
which no cycle or trial used, ``--cycle-epochs`` epochs) and the figure is their mean.

The dead neuron rate (DNR, :mod:`safs_smac.diagnostics`: fraction of zero activations, averaged
over the four ReLU sites, on ``--probe-size`` fixed validation images) is measured at the start
(the rewound ticket) and at the end of every cycle.

Outputs (written atomically) under ``--output-dir`` (default ``benchmarks/results/ap/``):
``cycles.csv`` (one row per method, seed and cycle), ``safs_trials.csv`` (one row per search
trial), ``final.csv`` (one row per final fine-tune), ``results.md``, ``dnr.png`` and
``accuracy_vs_sparsity.png``.

Example::

    python benchmarks/ap.py --seeds 3
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import (
    RESULTS_DIR,
    add_data_arguments,
    add_quick_argument,
    add_run_arguments,
    band,
    command_line,
    markdown_table,
    paired_differences,
    parse_list,
    parse_with_quick,
    pm,
    pyplot,
    require_positive,
    save_figure,
    write_csv,
    write_text,
)
from torch import nn

from safs_smac.data import Dataset, load_dataset
from safs_smac.diagnostics import dead_neuron_rate, probe_inputs
from safs_smac.models import create_model
from safs_smac.optimizers import LAHC, run_optimizer
from safs_smac.problem import SAFSProblem
from safs_smac.pruning import (
    Finetune,
    PruningSchedule,
    SparsityReport,
    apply_masks,
    get_masks,
    prunable_layers,
    sparsity_report,
)
from safs_smac.sparse_training import AP, ap_schedule
from safs_smac.training import evaluate

METHODS = ("imp", "imp_ap")
LABELS = {"imp": "IMP", "imp_ap": "IMP + AP"}
PIPELINES = ("relu", "safs")
PIPELINE_LABELS = {"relu": "", "safs": " + SAFS"}
COLOURS = {"imp": "tab:blue", "imp_ap": "tab:red"}
#: Seed of the ``k``-th final fine-tune: no cycle (seed = run seed) or trial used these.
FINAL_SEED = 10_000
#: Defaults of ``--quick`` (a smoke test in seconds, not a result).
QUICK = {
    "seeds": 1,
    "cycle_epochs": 1,
    "sparsity": 0.8,
    "prune_fraction": 0.5,
    "safs_sparsities": "0.8",
    "safs_trials": 2,
    "final_repeats": 1,
    "probe_size": 128,
}


# ------------------------------------------------------------------------------------------
# Sparsity levels
# ------------------------------------------------------------------------------------------


def pruned_layers(model: nn.Module, dense_head: bool) -> list[tuple[str, nn.Module]]:
    """The layers both methods prune: every Conv2d/Linear, or all but the classifier head."""
    return prunable_layers(model, skip_last=dense_head)


def mask_sparsity(model: nn.Module, dense_head: bool) -> float:
    """Fraction of masked-out weights over the pruned layers (0 for an unpruned model)."""
    masks = get_masks(model)
    total = zeros = 0
    for name, module in pruned_layers(model, dense_head):
        mask = masks.get(f"{name}.weight")
        total += module.weight.numel()
        zeros += 0 if mask is None else int((~mask).sum())
    return zeros / total


def layer_densities(model: nn.Module) -> dict[str, float]:
    """``{"density:<layer>": fraction of its weights kept}`` for every prunable layer."""
    masks = get_masks(model)
    out = {}
    for name, _ in prunable_layers(model):
        mask = masks.get(f"{name}.weight")
        out[f"density:{name}"] = 1.0 if mask is None else float(mask.float().mean())
    return out


def cycle_sparsities(model: nn.Module, rate: float, p: float, dense_head: bool) -> list[float]:
    """Sparsity the network is trained at in each cycle: 0 (dense) first, ``rate`` last."""
    total = sum(module.weight.numel() for _, module in pruned_layers(model, dense_head))
    steps = ap_schedule(total, total, rate, rounds=10_000, prune_fraction_per_round=p)
    return [0.0] + [1.0 - s / total for s in steps]


def nearest(levels: Sequence[float], targets: Sequence[float]) -> list[int]:
    """Index of the level closest to each target (duplicates removed, order kept)."""
    picked: list[int] = []
    for target in targets:
        index = int(np.argmin([abs(level - target) for level in levels]))
        if index not in picked:
            picked.append(index)
    return picked


def build_lenet(dataset: Dataset, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(
        "lenet5",
        num_classes=dataset.num_classes,
        in_channels=dataset.in_channels,
        input_size=dataset.input_size,
    )


# ------------------------------------------------------------------------------------------
# Schedules: the method, an observer of its cycles, and a recorded ticket
# ------------------------------------------------------------------------------------------


def method_schedule(method: str, args: argparse.Namespace, cycles: int) -> AP:
    """IMP (``ap_fraction=0``) or IMP + AP with lottery-ticket rewinding, as a pruning schedule."""
    p = args.prune_fraction
    return AP(
        rounds=cycles,
        epochs_per_round=args.cycle_epochs,
        ap_fraction=args.ap_share * p if method == "imp_ap" else 0.0,
        rewind=True,
        recipe={},  # the problem's own recipe: the zoo's LeNet-5 recipe
        prune_fraction=p,
        skip_last=args.dense_head,
    )


class Observed(PruningSchedule):
    """``inner`` unchanged, but every fine-tuning cycle is measured (validation data only).

    Each call of the ``finetune`` the problem hands the schedule is one cycle: the network is
    the rewound ticket of that cycle's sparsity before the call and the trained network after.
    """

    def __init__(
        self, inner: PruningSchedule, dataset: Dataset, probe: torch.Tensor, dense_head: bool
    ):
        self.inner = inner
        self.name, self.label, self.scopes = inner.name, inner.label, inner.scopes
        self.dataset, self.probe, self.dense_head = dataset, probe, dense_head
        self.rows: list[dict[str, Any]] = []
        self.masks: list[dict[str, torch.Tensor]] = []  # the mask each cycle trained with

    @property
    def epochs(self) -> int:
        return self.inner.epochs

    def settings(self) -> dict[str, object]:
        return self.inner.settings()

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        if finetune is None:
            raise ValueError("Observed needs the problem's finetune")

        def observed(net: nn.Module, epochs: int, overrides: Any) -> None:
            start = time.perf_counter()
            self.masks.append(get_masks(net))
            row = {
                "cycle": len(self.rows) + 1,
                "sparsity": mask_sparsity(net, self.dense_head),
                "dnr_start": dead_neuron_rate(net, self.probe).mean,
            }
            finetune(net, epochs, overrides)
            row["val_accuracy"] = evaluate(
                net, self.dataset.val, self.dataset, device="cpu"
            ).accuracy
            row["dnr_mean"] = dead_neuron_rate(net, self.probe).mean
            row["seconds"] = time.perf_counter() - start
            # Where the two methods put their weights: AP's rule is global, not per layer.
            row.update(layer_densities(net))
            self.rows.append(row)

        return self.inner.prune(model, rate, scope=scope, finetune=observed)


class Ticket(PruningSchedule):
    """The initial weights with a recorded mask: a level an :class:`Observed` run passed through."""

    name = "ticket"
    label = "recorded lottery ticket"

    def __init__(self, masks: dict[str, torch.Tensor], source: dict[str, object], cycle: int):
        self.masks, self.source, self.cycle = masks, source, cycle
        digest = hashlib.sha256()
        for key in sorted(masks):
            digest.update(key.encode() + masks[key].numpy().tobytes())
        self.digest = digest.hexdigest()

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        apply_masks(model, self.masks)
        return sparsity_report(model)

    def settings(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "cycle": self.cycle, "masks": self.digest}


# ------------------------------------------------------------------------------------------
# One method and seed
# ------------------------------------------------------------------------------------------


def make_problem(
    args: argparse.Namespace, dataset: Dataset, seed: int, rate: float, schedule: PruningSchedule
) -> SAFSProblem:
    return SAFSProblem(
        "lenet5",
        dataset,
        pruning_rate=rate,
        pruning="global",
        prune_schedule=schedule,
        device="cpu",
        cache_dir=args.cache_dir,
        seed=seed,
        dense_epochs=0,  # the seeded initialisation is the network the tickets rewind to
        max_budget=args.cycle_epochs,
        stage="operators",
        dnr_probe_size=args.probe_size,
        num_threads=args.threads,
    )


def run_method(
    method: str,
    seed: int,
    args: argparse.Namespace,
    dataset: Dataset,
    probe: torch.Tensor,
    levels: list[float],
    safs_levels: list[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Cycle rows, search-trial rows and final-evaluation rows of one method and seed."""
    schedule = Observed(
        method_schedule(method, args, len(levels) - 1), dataset, probe, args.dense_head
    )
    problem = make_problem(args, dataset, seed, levels[-1], schedule)
    problem.pruned_checkpoint()  # runs the cycles (observed); the last level is not trained yet
    # The last level: the target network, trained as every trial of the problem is.
    ticket = problem.pruned_model()
    start = time.perf_counter()
    dnr_start = dead_neuron_rate(ticket, probe).mean
    _, info = problem.finetune(problem.baseline_spec(), seed=seed, epochs=args.cycle_epochs)
    schedule.rows.append(
        {
            "cycle": len(levels),
            "sparsity": mask_sparsity(ticket, args.dense_head),
            "dnr_start": dnr_start,
            "val_accuracy": info["val_accuracy"],
            "dnr_mean": info["dnr_mean"],
            "seconds": time.perf_counter() - start,
            **layer_densities(ticket),
        }
    )
    cycles = [{"method": method, "seed": seed, **row} for row in schedule.rows]
    for row in cycles:
        print(
            f"{LABELS[method]:>8} seed {seed} cycle {row['cycle']:2d} sparsity "
            f"{row['sparsity']:.4f}: val {row['val_accuracy']:.4f} DNR {row['dnr_mean']:.3f}",
            flush=True,
        )

    trials: list[dict[str, Any]] = []
    finals: list[dict[str, Any]] = []
    for level in safs_levels:
        if level == len(levels) - 1:
            at_level = problem
        else:
            recorded = Ticket(schedule.masks[level], schedule.settings(), level)
            at_level = make_problem(args, dataset, seed, levels[level], recorded)
        tag = {"method": method, "seed": seed, "cycle": level + 1, "sparsity": levels[level]}
        found = search_operators(at_level, seed, args)
        trials += [{**tag, **row} for row in found]
        finals += final_evaluations(at_level, found, args, tag)
    return cycles, trials, finals


def search_operators(
    problem: SAFSProblem, seed: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """LAHC over per-site operators on the problem's ticket; one row per trial (validation)."""
    trials: list[dict[str, Any]] = []

    def target(config: Any, seed: int = 0) -> tuple[float, dict[str, Any]]:
        cost, info = problem.train(config, seed=seed, budget=args.safs_epochs)
        spec = problem.decode(config)
        trials.append(
            {
                "trial": len(trials),
                "operators": ";".join(spec.operators[s] for s in problem.sites),
                "default": all(op == "relu" for op in spec.operators.values()),
                "diverged": info["diverged"],
                "val_accuracy": info["val_accuracy"],
                "dnr_mean": info.get("dnr_mean", np.nan),
                "config": dict(config),
            }
        )
        return cost, info

    optimizer = LAHC(problem.configspace, seed=seed, initial="default", min_steps=args.safs_trials)
    run_optimizer(optimizer, target, n_trials=args.safs_trials)
    best = min(range(len(trials)), key=lambda i: (-trials[i]["val_accuracy"], i))
    for i, row in enumerate(trials):
        row["selected"] = i == best
    return trials


def final_evaluations(
    problem: SAFSProblem, trials: list[dict[str, Any]], args: argparse.Namespace, tag: dict
) -> list[dict[str, Any]]:
    """The only test evaluations: ReLU and the selected operators, ``--final-repeats`` each."""
    chosen = next(t for t in trials if t["selected"])
    specs = {"relu": problem.baseline_spec(), "safs": problem.decode(chosen["config"])}
    rows: list[dict[str, Any]] = []
    for k in range(args.final_repeats):
        done: dict[str, Any] = {}
        for pipeline, spec in specs.items():
            if pipeline == "safs" and chosen["default"]:
                result = done["relu"]  # SAFS kept ReLU: the same network, not trained twice
            else:
                result = problem.final_evaluation(
                    spec, seed=FINAL_SEED + k, epochs=args.cycle_epochs
                )
            done[pipeline] = result
            rows.append(
                {
                    **tag,
                    "pipeline": pipeline,
                    "repeat": k,
                    "operators": "relu;relu;relu;relu"
                    if pipeline == "relu"
                    else chosen["operators"],
                    "val_accuracy": result.val_accuracy,
                    "test_accuracy": result.test_accuracy,
                    "diverged": result.diverged,
                    "dnr_mean": result.extra.get("dnr_mean"),
                }
            )
    best = rows[-1]
    print(
        f"  final {LABELS[tag['method']]} seed {tag['seed']} at {tag['sparsity']:.4f}: SAFS "
        f"{chosen['operators']}, test {best['test_accuracy']:.4f}",
        flush=True,
    )
    return rows


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def paired_gain(frame: pd.DataFrame, column: str, treatment: str, control: str, value: str) -> str:
    """``value`` of ``treatment`` minus ``control`` (rows told apart by ``column``), paired by
    seed, as ``mean ± std`` points."""
    differences = paired_differences(
        frame, by="seed", column=column, value=value, treatment=treatment, control=control
    )
    return pm(differences, signed=True)


def cycle_table(cycles: pd.DataFrame) -> str:
    rows = []
    for _, part in cycles.groupby("cycle"):
        imp, ap = part[part.method == "imp"], part[part.method == "imp_ap"]
        gain = paired_gain(part, "method", "imp_ap", "imp", "val_accuracy")
        rows.append(
            [
                f"{100 * part['sparsity'].mean():.1f}%",
                pm(imp["val_accuracy"]),
                pm(ap["val_accuracy"]),
                gain,
                f"{100 * imp['dnr_mean'].mean():.1f}%",
                f"{100 * ap['dnr_mean'].mean():.1f}%",
            ]
        )
    header = ["sparsity", "IMP val", "IMP + AP val", "val gain of AP", "DNR IMP", "DNR IMP + AP"]
    return markdown_table(header, rows)


def density_table(cycles: pd.DataFrame, levels: Sequence[int]) -> str:
    """Per-layer kept fraction (mean over seeds) of both methods at the given cycles."""
    columns = [c for c in cycles.columns if c.startswith("density:")]
    stats = cycles.groupby(["cycle", "method"])[["sparsity", *columns]].mean()
    rows = []
    for cycle in levels:
        for method in METHODS:
            row = stats.loc[(cycle, method)]
            rows.append(
                [f"{100 * row['sparsity']:.1f}%", LABELS[method]]
                + [f"{100 * row[c]:.2f}%" for c in columns]
            )
    return markdown_table(
        ["sparsity", "method", *(c.removeprefix("density:") for c in columns)], rows
    )


def final_table(finals: pd.DataFrame) -> str:
    """Test accuracy of the final fine-tunes (mean over repeats, then mean ± std over seeds)."""
    per_seed = finals.groupby(["cycle", "method", "pipeline", "seed"], as_index=False).agg(
        sparsity=("sparsity", "mean"),
        val_accuracy=("val_accuracy", "mean"),
        test_accuracy=("test_accuracy", "mean"),
        dnr_mean=("dnr_mean", "mean"),
        operators=("operators", "first"),
    )
    rows = []
    for (_, method), part in per_seed.groupby(["cycle", "method"]):
        for pipeline in PIPELINES:
            sub = part[part.pipeline == pipeline]
            gain = paired_gain(part, "pipeline", "safs", "relu", "test_accuracy")
            rows.append(
                [
                    f"{100 * sub['sparsity'].mean():.1f}%",
                    LABELS[method] + PIPELINE_LABELS[pipeline],
                    pm(sub["val_accuracy"]),
                    pm(sub["test_accuracy"]),
                    gain if pipeline == "safs" else "",
                    f"{100 * sub['dnr_mean'].mean():.1f}%",
                    ", ".join(sub["operators"]) if pipeline == "safs" else "",
                ]
            )
    header = [
        "sparsity",
        "pipeline",
        "val",
        "test",
        "test gain of SAFS",
        "DNR",
        "operators (seeds)",
    ]
    return markdown_table(header, rows)


def ap_gain_table(finals: pd.DataFrame) -> str:
    """Paired (by seed) test gain of IMP + AP over IMP at each SAFS level, without and with SAFS."""
    per_seed = finals.groupby(["cycle", "method", "pipeline", "seed"], as_index=False).agg(
        sparsity=("sparsity", "mean"), test_accuracy=("test_accuracy", "mean")
    )
    rows = []
    for _, part in per_seed.groupby("cycle"):
        cells = [f"{100 * part['sparsity'].mean():.1f}%"]
        for pipeline in PIPELINES:
            sub = part[part.pipeline == pipeline]
            gain = paired_gain(sub, "method", "imp_ap", "imp", "test_accuracy")
            cells.append(gain)
        rows.append(cells)
    return markdown_table(["sparsity", "test gain of AP (ReLU)", "test gain of AP (+ SAFS)"], rows)


# ------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------


def plot_dnr(cycles: pd.DataFrame, path: Path, title: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for method in METHODS:
        part = cycles[cycles.method == method]
        for ax, column, what in ((axes[0], "dnr_start", "start"), (axes[1], "dnr_mean", "end")):
            wide = part.pivot_table(index="sparsity", columns="seed", values=column)
            band(ax, 100 * wide.index, wide, label=LABELS[method], colour=COLOURS[method])
            ax.set_title(f"DNR at the {what} of each cycle")
    for ax in axes:
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("dead neuron rate (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_accuracy(cycles: pd.DataFrame, finals: pd.DataFrame, path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = {"relu": "s", "safs": "*"}
    for method in METHODS:
        wide = cycles[cycles.method == method].pivot_table(
            index="sparsity", columns="seed", values="val_accuracy"
        )
        band(
            ax,
            100 * (1 - wide.index),
            wide,
            label=f"{LABELS[method]} (val)",
            colour=COLOURS[method],
        )
        for pipeline in PIPELINES:
            sub = finals[(finals.method == method) & (finals.pipeline == pipeline)]
            per_seed = sub.groupby(["cycle", "seed"]).mean(numeric_only=True)
            stats = per_seed.groupby("cycle").agg(
                s=("sparsity", "mean"), m=("test_accuracy", "mean"), e=("test_accuracy", "std")
            )
            ax.errorbar(
                100 * (1 - stats.s),
                100 * stats.m,
                yerr=100 * stats.e.fillna(0),
                ls="none",
                marker=markers[pipeline],
                ms=9,
                capsize=3,
                color=COLOURS[method],
                mfc="none" if pipeline == "relu" else COLOURS[method],
                label=f"{LABELS[method]}{PIPELINE_LABELS[pipeline]} (test, final)",
            )
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_root)
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    probe = probe_inputs(dataset, n=args.probe_size)
    levels = cycle_sparsities(
        build_lenet(dataset, 0), args.sparsity, args.prune_fraction, args.dense_head
    )
    safs_levels = nearest(levels, args.safs_sparsities)
    print(
        f"{len(levels)} cycles at sparsities {[round(s, 4) for s in levels]}; SAFS at "
        f"{[round(levels[i], 4) for i in safs_levels]}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="safs-ap-") as scratch:
        # A fresh checkpoint cache: the cycles are observed only when the schedule really runs.
        args.cache_dir = Path(scratch)
        cycle_rows: list[dict[str, Any]] = []
        trial_rows: list[dict[str, Any]] = []
        final_rows: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            for method in METHODS:
                cycles, trials, finals = run_method(
                    method, seed, args, dataset, probe, levels, safs_levels
                )
                cycle_rows += cycles
                trial_rows += trials
                final_rows += finals
                # Rewrite the CSVs after every run so that partial results survive an interruption.
                write_csv(pd.DataFrame(cycle_rows), out / "cycles.csv")
                trials_df = pd.DataFrame(trial_rows).drop(columns="config")
                write_csv(trials_df, out / "safs_trials.csv")
                write_csv(pd.DataFrame(final_rows), out / "final.csv")
    cycles_df, finals_df = pd.DataFrame(cycle_rows), pd.DataFrame(final_rows)
    title = (
        f"LeNet-5 on {args.dataset}: iterative global magnitude pruning\n(p={args.prune_fraction}"
        f", {args.cycle_epochs} epochs/cycle, rewinding), {args.seeds} seed(s)"
    )
    plot_dnr(cycles_df, out / "dnr.png", title)
    plot_accuracy(cycles_df, finals_df, out / "accuracy_vs_sparsity.png", title)
    report = markdown_report(args, cycles_df, finals_df, time.perf_counter() - started)
    write_text(out / "results.md", report)
    print(report)
    return 0


def markdown_report(
    args: argparse.Namespace, cycles: pd.DataFrame, finals: pd.DataFrame, seconds: float
) -> str:
    p = args.prune_fraction
    return "\n".join(
        [
            f"# AP: Activating-while-Pruning, LeNet-5 on {args.dataset}",
            "",
            f"Command: `{command_line('ap.py', args.argv)}`",
            "",
            f"{args.seeds} seed(s), every run a `SAFSProblem` with a pruning schedule. Each cycle "
            f"trains {args.cycle_epochs} epochs (Adam lr 1e-3, weight decay 5e-4, batch 128), "
            f"prunes {100 * p:.0f}% of the surviving weights globally "
            f"({'all layers but the dense classifier head' if args.dense_head else 'all layers'}; "
            "sparsity is counted over the pruned layers) and rewinds to the initial weights; "
            f"IMP + AP removes {100 * args.ap_share * p:.1f}% of them by AP's negative-weight rule "
            "instead of by magnitude. During the cycles only validation data is used: accuracy "
            "(%) is the validation accuracy of the network trained at the given sparsity, mean ± "
            "std over seeds; the AP gain is paired by seed. DNR: mean over the four ReLU sites "
            f"of the fraction of zero activations on {args.probe_size} validation images, after "
            f"training. Wall time {seconds / 60:.1f} min.",
            "",
            "## Iterative pruning with and without AP (validation)",
            "",
            cycle_table(cycles),
            "",
            "Weights kept per layer (mean over seeds); AP's rule is global, so it also moves "
            "weights between layers:",
            "",
            density_table(cycles, sorted(cycles["cycle"].unique())[-3:]),
            "",
            "## Final evaluation (test), with and without SAFS",
            "",
            f"At each level the ticket (initial weights, that level's mask) is trained "
            f"{args.cycle_epochs} epochs with ReLU or with the operators a LAHC search selected "
            f"on validation ({args.safs_trials} trials from all-ReLU, operators only, "
            f"{args.safs_epochs} epochs each). Each is trained {args.final_repeats} time(s) with "
            f"seeds {FINAL_SEED}+k, which no cycle or trial used; a seed's figure is the mean of "
            "those, the table shows mean ± std over seeds. Test data is used here only. "
            "Operators per seed in site order (conv1, conv2, fc1, fc2).",
            "",
            final_table(finals),
            "",
            "Paired (by seed) test gain of IMP + AP over IMP:",
            "",
            ap_gain_table(finals),
            "",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--sparsity", type=float, default=0.98, help="final sparsity")
    parser.add_argument(
        "--prune-fraction", type=float, default=0.4, help="survivors pruned per cycle (paper: 0.2)"
    )
    parser.add_argument(
        "--ap-share", type=float, default=0.1, help="AP's share of a cycle's removals (paper: 2/20)"
    )
    parser.add_argument("--cycle-epochs", type=int, default=5, help="training epochs per cycle")
    parser.add_argument(
        "--safs-sparsities",
        default="0.87,0.95,0.98",
        help="levels (nearest cycle) at which the final evaluation and + SAFS run",
    )
    parser.add_argument("--safs-trials", type=int, default=6, help="LAHC trials per search")
    parser.add_argument(
        "--safs-epochs", type=int, default=None, help="epochs per trial (default: --cycle-epochs)"
    )
    parser.add_argument(
        "--final-repeats", type=int, default=2, help="final fine-tunes per network (test data)"
    )
    parser.add_argument("--probe-size", type=int, default=512, help="images the DNR is measured on")
    parser.add_argument(
        "--dense-head", action="store_true", help="leave the head (fc3) dense; sparsity excludes it"
    )
    add_run_arguments(parser, output_dir=RESULTS_DIR / "ap")
    add_quick_argument(parser, QUICK)
    args = parse_with_quick(parser, argv, QUICK)
    args.safs_sparsities = parse_list(args.safs_sparsities)
    if args.safs_epochs is None:
        args.safs_epochs = args.cycle_epochs
    require_positive(
        parser,
        args,
        (
            "seeds",
            "cycle_epochs",
            "safs_trials",
            "safs_epochs",
            "final_repeats",
            "probe_size",
            "threads",
        ),
    )
    if not 0 < args.sparsity < 1 or not 0 < args.prune_fraction < 1:
        parser.error("--sparsity and --prune-fraction must be in (0, 1), e.g. 0.98 and 0.4")
    if not 0 <= args.ap_share <= 1:
        parser.error(f"--ap-share must be in [0, 1], got {args.ap_share}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
