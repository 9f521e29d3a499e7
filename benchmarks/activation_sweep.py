"""Accuracy against sparsity for each activation, under SET and under one-shot magnitude pruning.

A small reproduction of the SET activation study (Dubowski, arXiv 2010.05943), which trained a
SET-MLP 3072-4000-1000-4000-10 on CIFAR-10 for 500 epochs with ReLU, Sigmoid, Tanh, SELU,
Softsign, Softplus and SReLU at Erdos-Renyi sparsity levels ``eps`` in {10, 20, 50, 100, 500} and
dense, plus one line the study did not have: the per-site operators found by a SAFS search.

For every activation and seed:

``dense``
    The MLP trained dense for ``--epochs`` epochs (the study's "dense" column).
``set``
    Sparse Evolutionary Training (:class:`safs_smac.sparse_training.SETPruning`, zeta 0.3, grown
    weights start at zero) at each ``eps``: every hidden layer starts from an Erdos-Renyi mask of
    density ``eps * (n_in + n_out) / (n_in * n_out)`` (the 1000 x 10 head has density >= 1 and
    stays dense, as in SET-MLP) and is rewired after every epoch but the last, for ``--epochs``
    epochs. It runs through :class:`~safs_smac.problem.SAFSProblem` (``dense_epochs=0``: the seeded
    initialisation is the checkpoint) and its ``final_evaluation``, which alone reads test data.
``oneshot``
    The dense model above, pruned once by layer-wise magnitude (L1) pruning to *the same per-layer
    densities* as SET at that ``eps``, then fine-tuned for ``--finetune-epochs`` epochs.

Activations are set when the model is created. Plain operators have no parameters. ``srelu`` is a
:class:`~safs_smac.activations.SearchableActivation` whose scales stay frozen at 1 but whose own
parameters (thresholds and slopes, one set per layer, not per neuron as in the study) are trained
with the weights, since a trainable SReLU is what the study compared. ``safs`` is the per-site
assignment of a SAFS stage-1 search (:func:`safs_smac.search.optimize` on a
:class:`~safs_smac.problem.SAFSProblem`, operators only, scales frozen at 1, operator parameters
frozen at their published initial values): the search runs once, on seed 0, on the dense MLP
pruned layer-wise to the hidden-layer sparsity of ``--safs-eps`` and fine-tuned for
``--finetune-epochs`` epochs per trial, selecting on validation accuracy; its operators are then
reused for every regime, level and seed.

Outputs (written atomically) under ``--output-dir`` (default
``benchmarks/results/activation_sweep/<dataset>/``): ``runs.csv`` (one row per training run),
``results.md`` (mean +- std tables, the published table and Spearman rank correlations),
``accuracy_vs_sparsity.png`` and ``safs_search_trials.csv``. Runs already in ``runs.csv`` with
the same settings are not repeated, so an interrupted sweep resumes.

Example::

    python benchmarks/activation_sweep.py --seeds 3 --epochs 8 --finetune-epochs 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import itertools
import json
import math
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
    command_line,
    parse_list,
    parse_with_quick,
    pyplot,
    require_positive,
    save_figure,
    write_csv,
    write_text,
)
from torch import nn

from safs_smac.activations import resolve_operator
from safs_smac.cache import default_cache_dir
from safs_smac.data import Dataset, load_dataset
from safs_smac.models import create_model
from safs_smac.problem import SAFSProblem
from safs_smac.pruning import get_masks, magnitude_prune, prunable_layers
from safs_smac.sites import searchable_activations, set_activations
from safs_smac.sparse_training import SETPruning, erdos_renyi_density
from safs_smac.training import Recipe, evaluate, fit

RESULTS_ROOT = RESULTS_DIR / "activation_sweep"
#: The study's activations, in the order of its table, plus the SAFS-searched assignment.
ACTIVATIONS = ("srelu", "relu", "softsign", "selu", "tanh", "softplus", "sigmoid", "safs")
STUDY_ACTIVATIONS = ACTIVATIONS[:-1]
LABELS = {
    "srelu": "SReLU",
    "relu": "ReLU",
    "softsign": "Softsign",
    "selu": "SELU",
    "tanh": "Tanh",
    "softplus": "Softplus",
    "sigmoid": "Sigmoid",
    "safs": "SAFS (searched)",
}
REGIMES = ("set", "oneshot")
REGIME_TITLES = {"set": "SET (sparse from scratch)", "oneshot": "one-shot magnitude + fine-tune"}
DENSE = "dense"

#: Final test accuracy (%) of the SET study (CIFAR-10, SET-MLP 3072-4000-1000-4000-10, 500
#: epochs, single runs); None = diverged. Columns: eps 10, 20, 50, 100, 500, dense.
PUBLISHED_LEVELS = ("10", "20", "50", "100", "500", DENSE)
PUBLISHED: dict[str, tuple[float | None, ...]] = {
    "srelu": (66.64, 69.44, 72.22, 73.14, 70.38, 68.86),
    "relu": (64.91, 66.89, 70.55, 71.60, 69.20, 63.21),
    "softsign": (58.02, 60.38, 62.84, 64.19, 65.27, 64.08),
    "selu": (57.72, 58.98, 56.75, 55.84, None, None),
    "tanh": (57.33, 59.86, 62.19, 63.88, 64.39, 49.69),
    "softplus": (54.30, 57.80, 61.83, 64.60, 65.84, 63.27),
    "sigmoid": (45.66, 48.81, 51.91, 54.95, 59.11, 63.80),
}
STUDY_HIDDEN = (4000, 1000, 4000)
#: Defaults of ``--quick`` (a smoke test in seconds, not a result).
QUICK = {
    "seeds": 1,
    "epochs": 1,
    "finetune_epochs": 1,
    "eps_list": "20",
    "activations": "relu,srelu,safs",
    "hidden": "64,64",
    "safs_trials": 2,
    "safs_optimizer": "random",
}
STUDY_INPUTS = 3072

RUN_COLUMNS = [
    "activation",
    "regime",
    "level",
    "eps",
    "seed",
    "sparsity",
    "hidden_sparsity",
    "epochs",
    "val_accuracy",
    "test_accuracy",
    "pruned_test_accuracy",
    "diverged",
    "reason",
    "seconds",
    "operators",
    "settings",
]


# ------------------------------------------------------------------------------------------
# Sparsity levels
# ------------------------------------------------------------------------------------------


def layer_densities(model: nn.Module, eps: float) -> dict[str, float]:
    """SET's Erdos-Renyi density of every Linear layer of ``model`` at ``eps`` (1 = dense)."""
    densities = {}
    for name, module in prunable_layers(model, layer_types=(nn.Linear,)):
        n_out, n_in = module.weight.shape
        densities[name] = erdos_renyi_density(n_in, n_out, eps)
    return densities


def level_sparsity(shapes: Sequence[tuple[int, int]], eps: float | None) -> tuple[float, float]:
    """(overall, hidden-layer) sparsity of Linear layers ``(n_out, n_in)`` at ``eps`` (None=dense).

    "hidden-layer" counts only the layers SET makes sparse (density < 1).
    """
    if eps is None:
        return 0.0, 0.0
    kept = total = sparse_kept = sparse_total = 0.0
    for n_out, n_in in shapes:
        density = erdos_renyi_density(n_in, n_out, eps)
        numel = n_in * n_out
        kept += density * numel
        total += numel
        if density < 1.0:
            sparse_kept += density * numel
            sparse_total += numel
    hidden = 1.0 - sparse_kept / sparse_total if sparse_total else 0.0
    return 1.0 - kept / total, hidden


def mlp_shapes(n_inputs: int, hidden: Sequence[int], n_classes: int) -> list[tuple[int, int]]:
    widths = [n_inputs, *hidden, n_classes]
    return [(n_out, n_in) for n_in, n_out in itertools.pairwise(widths)]


def mask_sparsity(model: nn.Module) -> float:
    """Fraction of masked-out weights over all Linear layers (0 for an unpruned model)."""
    masks = get_masks(model)
    total = zeros = 0
    for name, module in prunable_layers(model, layer_types=(nn.Linear,)):
        mask = masks.get(f"{name}.weight")
        numel = module.weight.numel()
        total += numel
        zeros += 0 if mask is None else int((~mask).sum())
    return zeros / total if total else 0.0


def prune_to_densities(model: nn.Module, densities: dict[str, float]) -> None:
    """One-shot layer-wise L1 pruning of each layer to its own density."""
    modules = dict(model.named_modules())
    for name, density in densities.items():
        if density < 1.0:
            magnitude_prune(model, 1.0 - density, scope="layerwise", layers=[(name, modules[name])])


# ------------------------------------------------------------------------------------------
# Models and training runs
# ------------------------------------------------------------------------------------------


def build_model(
    activation: str,
    *,
    dataset: Dataset,
    hidden: Sequence[int],
    dropout: float,
    seed: int,
    safs_operators: dict[str, str] | None,
) -> nn.Module:
    """The MLP with ``activation`` at every site (or the SAFS assignment), initialised by seed."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "num_classes": dataset.num_classes,
        "in_channels": dataset.in_channels,
        "input_size": dataset.input_size,
        "hidden": tuple(hidden),
        "dropout": dropout,
    }
    if activation == "safs":
        if safs_operators is None:
            raise ValueError("the 'safs' activation needs the search's operators; run the search")
        model = create_model("mlp", **kwargs)
        return set_activations(model, safs_operators)
    model = create_model("mlp", activation=activation, **kwargs)
    # A trainable SReLU is what the study compared: learn the op's own thresholds and slopes
    # (create_model wraps it in a SearchableActivation with everything frozen); alpha and beta
    # stay frozen at 1, so the unit is exactly SReLU.
    for act in searchable_activations(model).values():
        act.op.requires_grad_(True)
    return model


def describe_operators(model: nn.Module) -> str:
    from safs_smac.sites import activation_sites

    return ";".join(f"{s.name}={s.op}" for s in activation_sites(model))


def run_fields(
    activation: str, regime: str, eps: float, hidden_sparsity: float, pruned: float = math.nan
) -> dict[str, Any]:
    """The columns of a ``runs.csv`` row that say which run it is."""
    level = DENSE if regime == DENSE else f"eps{eps:g}"
    return {
        "activation": activation,
        "regime": regime,
        "level": level,
        "eps": eps,
        "hidden_sparsity": hidden_sparsity,
        "pruned_test_accuracy": pruned,
    }


def train_and_record(
    model: nn.Module,
    dataset: Dataset,
    args: argparse.Namespace,
    seed: int,
    epochs: int,
    start: float,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Train ``model`` ``epochs`` epochs with the sweep's recipe; its ``runs.csv`` row
    (``fields`` from :func:`run_fields`, ``start`` when the run began)."""
    result = fit(
        model,
        dataset,
        recipe(args),
        epochs=epochs,
        device="cpu",
        seed=seed,
        evaluate_val=False,
    )
    row = finish_run(model, dataset, result, seed=seed, epochs=epochs, **fields)
    row["seconds"] = time.perf_counter() - start
    return row


def finish_run(model: nn.Module, dataset: Dataset, result: Any, **fields: Any) -> dict[str, Any]:
    """A ``runs.csv`` row: final-epoch validation and test accuracy (no selection)."""
    row = dict(fields)
    row["diverged"] = bool(result.diverged)
    row["reason"] = result.reason or ""
    if result.diverged:
        row["val_accuracy"] = row["test_accuracy"] = math.nan
    else:
        row["val_accuracy"] = evaluate(model, dataset.val, dataset, device="cpu").accuracy
        row["test_accuracy"] = evaluate(model, dataset.test, dataset, device="cpu").accuracy
    row["sparsity"] = mask_sparsity(model)
    row["operators"] = describe_operators(model)
    return row


def run_dense(
    activation: str, seed: int, args: argparse.Namespace, dataset: Dataset, safs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    start = time.perf_counter()
    model = build_model(activation, dataset=dataset, **model_kwargs(args, seed, safs))
    row = train_and_record(
        model, dataset, args, seed, args.epochs, start, run_fields(activation, DENSE, math.nan, 0.0)
    )
    return model, row


def run_oneshot(
    dense: nn.Module,
    activation: str,
    eps: float,
    seed: int,
    args: argparse.Namespace,
    dataset: Dataset,
    hidden_sparsity: float,
) -> dict[str, Any]:
    start = time.perf_counter()
    model = copy.deepcopy(dense)
    prune_to_densities(model, layer_densities(model, eps))
    pruned = evaluate(model, dataset.test, dataset, device="cpu").accuracy
    return train_and_record(
        model,
        dataset,
        args,
        seed,
        args.finetune_epochs,
        start,
        run_fields(activation, "oneshot", eps, hidden_sparsity, pruned),
    )


def run_set(
    activation: str,
    eps: float,
    seed: int,
    args: argparse.Namespace,
    dataset: Dataset,
    safs: Any,
    level: tuple[float, float],
) -> dict[str, Any]:
    """SET from scratch through :class:`~safs_smac.problem.SAFSProblem`: the seeded MLP is the
    untrained "dense" checkpoint (``dense_epochs=0``), and :class:`SETPruning` draws Erdos-Renyi
    masks at the start of the fine-tune and rewires them after every epoch but the last. Test
    data is touched only by ``final_evaluation``."""
    start = time.perf_counter()
    model_activation = "relu" if activation == "safs" else activation
    # Nothing here is worth caching (no dense training; SET's checkpoint is the initialisation):
    # a throw-away cache keeps 8 MB per run off the disk.
    with tempfile.TemporaryDirectory(prefix="set-sweep-") as cache_dir:
        problem = sweep_problem(
            args,
            dataset,
            Path(cache_dir),
            pruning=SETPruning(epsilon=eps, zeta=args.zeta),
            pruning_rate=round(level[0], 6),
            seed=seed,
            dense_epochs=0,
            max_budget=args.epochs,
            default_activation=model_activation,
            model_kwargs={"activation": model_activation},
        )
        spec = problem.baseline_spec()
        if activation == "safs":
            spec = dataclasses.replace(spec, operators=dict(safs["operators"]))
        else:  # a trainable SReLU, as in build_model (a no-op for plain operators)
            spec = dataclasses.replace(spec, learn_operator_params=True)
        final = problem.final_evaluation(spec, seed=seed)
    row = run_fields(activation, "set", eps, level[1])
    row.update(seed=seed, epochs=final.epochs, diverged=final.diverged, reason=final.reason or "")
    row["val_accuracy"] = math.nan if final.diverged else final.val_accuracy
    row["test_accuracy"] = math.nan if final.diverged else final.test_accuracy
    row["sparsity"] = final.sparsity
    row["operators"] = ";".join(f"{site}={op}" for site, op in final.operators.items())
    row["seconds"] = time.perf_counter() - start
    return row


def recipe(args: argparse.Namespace) -> Recipe:
    """SET-MLP's optimizer (SGD lr 0.01, momentum 0.9, batch 100) with the zoo's weight decay."""
    return Recipe(
        optimizer="sgd",
        lr=args.lr,
        momentum=0.9,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        scheduler="constant",
    )


def sweep_problem(
    args: argparse.Namespace,
    dataset: Dataset,
    cache_dir: Path,
    *,
    model_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> SAFSProblem:
    """A :class:`SAFSProblem` on the sweep's MLP and recipe (operators-only space, CPU)."""
    return SAFSProblem(
        "mlp",
        dataset,
        device="cpu",
        cache_dir=cache_dir,
        stage="operators",
        finetune_recipe=recipe(args).to_dict(),
        model_kwargs={"hidden": list(args.hidden), "dropout": args.dropout, **(model_kwargs or {})},
        **settings,
    )


def model_kwargs(args: argparse.Namespace, seed: int, safs: Any) -> dict[str, Any]:
    return {
        "hidden": args.hidden,
        "dropout": args.dropout,
        "seed": seed,
        "safs_operators": None if safs is None else safs["operators"],
    }


# ------------------------------------------------------------------------------------------
# The SAFS search
# ------------------------------------------------------------------------------------------


def search_operators(args: argparse.Namespace, dataset: Dataset, work_dir: Path) -> dict[str, Any]:
    """Run (or resume) the SAFS stage-1 search once; return operators and the trial table."""
    from safs_smac.search import optimize

    shapes = mlp_shapes(
        dataset.in_channels * dataset.input_size**2, args.hidden, dataset.num_classes
    )
    _, rate = level_sparsity(shapes, args.safs_eps)
    problem = sweep_problem(
        args,
        dataset,
        work_dir / "cache",
        pruning_rate=round(rate, 6),
        pruning="layerwise",
        seed=0,
        dense_epochs=args.epochs,
        max_budget=args.finetune_epochs,
    )
    result = optimize(
        problem,
        args.safs_optimizer,
        protocol="joint",
        n_trials=args.safs_trials,
        seed=0,
        output_dir=work_dir / "search",
        progress=False,
        overwrite=True,
    )
    return {
        "operators": dict(result.operators),
        "rate": rate,
        "val_accuracy": result.final.val_accuracy,
        "baseline_val_accuracy": result.baseline.val_accuracy,
        "trials": result.trials,
        "n_trials": len(result.trials),
    }


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def level_order(eps_list: Sequence[float]) -> list[str]:
    """Columns in the study's order: sparsest first, dense last."""
    return [f"eps{e:g}" for e in sorted(eps_list)] + [DENSE]


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of test and validation accuracy per (regime, activation, level).

    The dense runs belong to both regimes (they are the 'dense' column of each).
    """
    frames = []
    for regime in REGIMES:
        part = runs[(runs["regime"] == regime) | (runs["regime"] == DENSE)].copy()
        part["regime"] = regime
        frames.append(part)
    both = pd.concat(frames, ignore_index=True)
    grouped = both.groupby(["regime", "activation", "level"], sort=False)
    return grouped.agg(
        test_mean=("test_accuracy", "mean"),
        test_std=("test_accuracy", "std"),
        val_mean=("val_accuracy", "mean"),
        val_std=("val_accuracy", "std"),
        n=("seed", "count"),
        diverged=("diverged", "sum"),
        hidden_sparsity=("hidden_sparsity", "mean"),
    ).reset_index()


def cell(mean: float, std: float, n: int, diverged: int) -> str:
    if n == diverged:
        return "diverged"
    text = f"{100 * mean:.2f}" if math.isnan(std) else f"{100 * mean:.2f} ± {100 * std:.2f}"
    return text + (f" ({diverged}/{n} div.)" if diverged else "")


def accuracy_table(
    summary: pd.DataFrame,
    regime: str,
    activations: Sequence[str],
    levels: Sequence[str],
    metric: str = "test",
) -> str:
    part = summary[summary["regime"] == regime].set_index(["activation", "level"])
    sparsity = {
        lvl: part.xs(lvl, level="level")["hidden_sparsity"].iloc[0]
        for lvl in levels
        if lvl in part.index.get_level_values("level")
    }
    header = ["activation"] + [
        f"{lvl} ({100 * sparsity[lvl]:.1f}%)" if lvl in sparsity and lvl != DENSE else lvl
        for lvl in levels
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for act in activations:
        cells = [LABELS.get(act, act)]
        for lvl in levels:
            if (act, lvl) in part.index:
                r = part.loc[(act, lvl)]
                cells.append(cell(r[f"{metric}_mean"], r[f"{metric}_std"], r["n"], r["diverged"]))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranks(values: dict[str, float | None]) -> dict[str, float]:
    """Rank 1 = most accurate; diverged (None/NaN) share the last ranks; ties averaged."""
    series = pd.Series(
        {k: (-math.inf if v is None or math.isnan(v) else v) for k, v in values.items()}
    )
    return series.rank(ascending=False, method="average").to_dict()


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    keys = sorted(set(a) & set(b))
    if len(keys) < 3:
        return math.nan
    x = np.array([a[k] for k in keys], dtype=float)
    y = np.array([b[k] for k in keys], dtype=float)
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def published_comparison(summary: pd.DataFrame, levels: Sequence[str]) -> tuple[str, pd.DataFrame]:
    """Markdown: published ranking vs ours per level, with Spearman's rho per regime."""
    rows = []
    lines = [
        "| level | published ranking (CIFAR-10, SET, 500 ep.) | ours, SET | ours, one-shot "
        "| rho SET | rho one-shot |",
        "|---|---|---|---|---|---|",
    ]
    for lvl in levels:
        key = DENSE if lvl == DENSE else lvl.removeprefix("eps")
        if key not in PUBLISHED_LEVELS:
            continue
        col = PUBLISHED_LEVELS.index(key)
        published = {act: PUBLISHED[act][col] for act in STUDY_ACTIVATIONS}
        pub_rank = ranks(published)
        entry: dict[str, Any] = {"level": lvl}
        order_text = {}
        for regime in REGIMES:
            part = summary[(summary["regime"] == regime) & (summary["level"] == lvl)]
            part = part[part["activation"].isin(STUDY_ACTIVATIONS)]
            ours = {
                r.activation: (math.nan if r.n == r.diverged else r.test_mean)
                for r in part.itertuples()
            }
            entry[f"rho_{regime}"] = spearman(pub_rank, ranks(ours)) if ours else math.nan
            order_text[regime] = " > ".join(LABELS[a] for a in sorted(ours, key=ranks(ours).get))
        pub_order = " > ".join(LABELS[a] for a in sorted(pub_rank, key=pub_rank.get))
        rows.append(entry)
        lines.append(
            f"| {lvl} | {pub_order} | {order_text['set']} | {order_text['oneshot']} | "
            f"{_rho(entry['rho_set'])} | {_rho(entry['rho_oneshot'])} |"
        )
    return "\n".join(lines), pd.DataFrame(rows)


def _rho(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def published_table() -> str:
    header = ["activation"] + [f"eps {lvl}" if lvl != DENSE else lvl for lvl in PUBLISHED_LEVELS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for act in STUDY_ACTIVATIONS:
        values = ["diverged" if v is None else f"{v:.2f}" for v in PUBLISHED[act]]
        lines.append("| " + " | ".join([LABELS[act], *values]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Plot
# ------------------------------------------------------------------------------------------


def plot(
    summary: pd.DataFrame, activations: Sequence[str], levels: Sequence[str], path: Path, title: str
) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    positions = range(len(levels))
    colours = {act: plt.get_cmap("tab10")(i) for i, act in enumerate(ACTIVATIONS)}
    for ax, regime in zip(axes[:2], REGIMES):
        part = summary[summary["regime"] == regime].set_index(["activation", "level"])
        for act in activations:
            means = [
                part.loc[(act, lvl), "test_mean"] if (act, lvl) in part.index else np.nan
                for lvl in levels
            ]
            stds = [
                part.loc[(act, lvl), "test_std"] if (act, lvl) in part.index else np.nan
                for lvl in levels
            ]
            ax.errorbar(
                list(positions),
                100 * np.array(means, dtype=float),
                yerr=100 * np.nan_to_num(np.array(stds, dtype=float)),
                marker="o",
                capsize=3,
                label=LABELS.get(act, act),
                color=colours.get(act),
                linewidth=2.5 if act == "safs" else 1.5,
            )
        sparsity = part.groupby(level="level")["hidden_sparsity"].first()
        ax.set_xticks(list(positions))
        ax.set_xticklabels(
            [lvl if lvl == DENSE else f"{lvl}\n{100 * sparsity.get(lvl, 0):.1f}%" for lvl in levels]
        )
        ax.set_title(f"ours: {REGIME_TITLES[regime]}")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    pub_levels = list(PUBLISHED_LEVELS)
    shapes = mlp_shapes(STUDY_INPUTS, STUDY_HIDDEN, 10)
    ax = axes[2]
    for act in STUDY_ACTIVATIONS:
        values = [np.nan if v is None else v for v in PUBLISHED[act]]
        ax.plot(range(len(pub_levels)), values, marker="o", label=LABELS[act], color=colours[act])
    ax.set_xticks(range(len(pub_levels)))
    ax.set_xticklabels(
        [
            lvl if lvl == DENSE else f"eps{lvl}\n{100 * level_sparsity(shapes, float(lvl))[1]:.1f}%"
            for lvl in pub_levels
        ]
    )
    ax.set_title("published: SET study, CIFAR-10, 500 epochs")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


def settings_key(args: argparse.Namespace, safs: dict[str, Any] | None) -> str:
    """Hash of everything that determines a run's result, so resumed runs are only reused when
    nothing changed."""
    keys = (
        "dataset",
        "hidden",
        "dropout",
        "epochs",
        "finetune_epochs",
        "lr",
        "weight_decay",
        "batch_size",
        "zeta",
    )
    payload = {k: getattr(args, k) for k in keys}
    payload["torch"] = torch.__version__
    payload["safs_operators"] = None if safs is None else safs["operators"]
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def load_previous(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=RUN_COLUMNS)
    return pd.read_csv(path, keep_default_na=True)


def write_runs(rows: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    write_csv(frame, path)
    return frame


def sweep(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_root)
    out = args.output_dir or RESULTS_ROOT / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    work_dir = (
        args.work_dir or default_cache_dir() / "benchmarks" / "activation_sweep" / args.dataset
    )
    shapes = mlp_shapes(
        dataset.in_channels * dataset.input_size**2, args.hidden, dataset.num_classes
    )
    levels = {eps: level_sparsity(shapes, eps) for eps in args.eps_list}

    safs = None
    if "safs" in args.activations:
        t0 = time.perf_counter()
        safs = search_operators(args, dataset, work_dir)
        safs["seconds"] = time.perf_counter() - t0
        write_csv(safs["trials"], out / "safs_search_trials.csv")
        print(
            f"SAFS search: {safs['operators']} (val {safs['val_accuracy']:.4f} vs ReLU "
            f"{safs['baseline_val_accuracy']:.4f}, {safs['seconds']:.0f} s)",
            flush=True,
        )

    key = settings_key(args, safs)
    previous = load_previous(out / "runs.csv")
    rows = [r for r in previous.to_dict("records") if r.get("settings") == key]
    done = {(r["activation"], r["regime"], r["level"], int(r["seed"])) for r in rows}

    def record(row: dict[str, Any]) -> None:
        row["settings"] = key
        rows.append(row)
        write_runs(rows, out / "runs.csv")
        print(
            f"{row['activation']:>9} {row['regime']:>7} {row['level']:>6} seed {row['seed']}: "
            f"test {row['test_accuracy']:.4f} ({row['seconds']:.1f} s)",
            flush=True,
        )

    for seed in range(args.seeds):
        for act in args.activations:
            todo_oneshot = [
                e for e in args.eps_list if (act, "oneshot", f"eps{e:g}", seed) not in done
            ]
            if (act, DENSE, DENSE, seed) not in done or todo_oneshot:
                dense, row = run_dense(act, seed, args, dataset, safs)
                if (act, DENSE, DENSE, seed) not in done:
                    record(row)
                for eps in todo_oneshot:
                    record(run_oneshot(dense, act, eps, seed, args, dataset, levels[eps][1]))
            for eps in args.eps_list:
                if (act, "set", f"eps{eps:g}", seed) not in done:
                    record(run_set(act, eps, seed, args, dataset, safs, levels[eps]))

    runs = write_runs(rows, out / "runs.csv")
    runs["diverged"] = runs["diverged"].astype(str).str.lower() == "true"
    summary = summarise(runs)
    summary.attrs["seconds"] = float(runs["seconds"].sum())
    order = level_order(args.eps_list)
    title = (
        f"MLP {'-'.join(map(str, [shapes[0][1], *args.hidden, dataset.num_classes]))} on "
        f"{args.dataset}, {args.seeds} seed(s), mean ± std of test accuracy"
    )
    plot(summary, args.activations, order, out / "accuracy_vs_sparsity.png", title)
    report = markdown_report(
        args, dataset, shapes, summary, order, safs, time.perf_counter() - started
    )
    write_text(out / "results.md", report)
    print(report)
    return 0


def markdown_report(
    args: argparse.Namespace,
    dataset: Dataset,
    shapes: list[tuple[int, int]],
    summary: pd.DataFrame,
    order: list[str],
    safs: dict[str, Any] | None,
    seconds: float,
) -> str:
    arch = "-".join(map(str, [shapes[0][1], *args.hidden, dataset.num_classes]))
    lines = [
        f"# Activation vs sparsity: {args.dataset}, MLP {arch}",
        "",
        f"Command: `{command_line('activation_sweep.py', args.argv)}`",
        "",
        f"{args.seeds} seed(s); SET and dense: {args.epochs} epochs; one-shot: the dense model "
        f"pruned layer-wise to SET's per-layer densities, then {args.finetune_epochs} fine-tuning "
        f"epochs. SGD lr {args.lr} momentum 0.9, weight decay {args.weight_decay}, batch "
        f"{args.batch_size}, dropout {args.dropout}, SET zeta {args.zeta}. Test accuracy (%) at "
        "the last epoch, mean ± std over seeds; column headers give the sparsity of the hidden "
        f"layers (the {shapes[-1][1]} x {shapes[-1][0]} head stays dense). Training time, summed "
        f"over runs: {summary.attrs['seconds'] / 60:.1f} min (this invocation: "
        f"{seconds / 60:.1f} min; finished runs are reused).",
        "",
    ]
    if safs is not None:
        ops = ", ".join(f"{site}: {op}" for site, op in safs["operators"].items())
        lines += [
            f"SAFS assignment ({ops}): SMAC `{args.safs_optimizer}`, {safs['n_trials']} trials, "
            "operators only, on a dense MLP trained by SAFSProblem (seed 0, same recipe and "
            f"epochs) and pruned layer-wise (every layer, head included) to "
            f"{100 * safs['rate']:.2f}% (the hidden-layer sparsity of eps "
            f"{args.safs_eps:g}), {args.finetune_epochs} fine-tuning epochs per trial; validation "
            f"accuracy {100 * safs['val_accuracy']:.2f}% vs "
            f"{100 * safs['baseline_val_accuracy']:.2f}% for ReLU in that setting. "
            f"The trials took {safs['trials']['seconds'].sum():.0f} s.",
            "",
        ]
    for regime in REGIMES:
        lines += [
            f"## {REGIME_TITLES[regime]}",
            "",
            accuracy_table(summary, regime, args.activations, order),
            "",
        ]
    comparison, _ = published_comparison(summary, order)
    lines += [
        "## Published SET-study table (CIFAR-10, SET-MLP 3072-4000-1000-4000-10, 500 epochs, "
        "single runs)",
        "",
        published_table(),
        "",
        "## Ranking agreement with the study",
        "",
        "Spearman's rho between the study's ranking of its seven activations and ours (mean test "
        "accuracy; diverged = last). Different data, width and epochs, so only rankings compare.",
        "",
        comparison,
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser, help="mnist-5k (default, bundled) or cifar10 with --data-root")
    parser.add_argument("--epochs", type=int, default=8, help="SET and dense training epochs")
    parser.add_argument(
        "--finetune-epochs", type=int, default=2, help="fine-tune epochs: one-shot and SAFS trials"
    )
    parser.add_argument("--eps-list", default="10,20,50,100", help="SET epsilons")
    parser.add_argument(
        "--activations", default=",".join(ACTIVATIONS), help=f"subset of {','.join(ACTIVATIONS)}"
    )
    parser.add_argument("--hidden", default="1000,1000", help="hidden widths of the MLP")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--zeta", type=float, default=0.3, help="SET rewiring fraction")
    parser.add_argument(
        "--safs-eps", type=float, default=20, help="eps whose hidden sparsity the SAFS search uses"
    )
    parser.add_argument("--safs-trials", type=int, default=16)
    parser.add_argument(
        "--safs-optimizer", default="smac-hpo", help="facade of safs_smac.search.optimize"
    )
    # Default output folder: benchmarks/results/activation_sweep/<dataset>/.
    add_run_arguments(parser)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="SAFS search run and checkpoint cache (default: the safs-smac cache)",
    )
    add_quick_argument(parser, QUICK)
    args = parse_with_quick(parser, argv, QUICK)
    args.eps_list = parse_list(args.eps_list, float)
    args.hidden = parse_list(args.hidden, int)
    try:
        args.activations = [
            a if a == "safs" else resolve_operator(a) for a in parse_list(args.activations, str)
        ]
    except ValueError as err:
        parser.error(f"--activations: {err}")
    require_positive(
        parser, args, ("seeds", "epochs", "finetune_epochs", "safs_trials", "batch_size", "threads")
    )
    if not args.eps_list or any(e <= 0 for e in args.eps_list):
        parser.error("--eps-list must list positive epsilons, e.g. 10,20,50,100")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return sweep(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
