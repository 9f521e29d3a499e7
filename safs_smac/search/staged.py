"""The staged protocol: a network-level search, then a per-layer search warm-started from it.

Stage 1 searches one operator and one pair of scales for the whole network together with the
fine-tuning hyperparameters (``granularity="network"``, a ten-dimensional space a surrogate can
learn from a few trials), starting with every operator under a robust sparse fine-tuning recipe;
stage 2 searches per layer, warm-started with stage 1's incumbent expanded to every site and its
single-site neighbours. Both start their rungs at :func:`staged_min_budget`. The better of the
two final retrains *on validation data* is the result, so the per-layer search can only add to
the network-level one. Stage 1 also yields the rows "best single operator" and "tuned fine-tuning,
default activation" of the table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from ConfigSpace import Configuration

from safs_smac.problem import SAFSProblem
from safs_smac.pruning import SPARSE_FINETUNE
from safs_smac.runs.results import SearchResult, plain_config, write_result
from safs_smac.search.names import SMAC_OPTIMIZERS, STAGED_OPTIMIZERS
from safs_smac.search.run import optimize_one, start_two_stage_run, two_stage_result
from safs_smac.search.settings import SearchSettings, stage_split
from safs_smac.space import NETWORK_SITE

__all__ = [
    "expand_network_config",
    "operator_screen",
    "optimize_staged",
    "refinement_configs",
    "staged_min_budget",
]


# A pruned network fine-tuned for one epoch is still near chance: rungs below this say nothing.
STAGED_MIN_EPOCHS = 2.0


def staged_min_budget(search: SearchSettings) -> float:
    """Lowest rung of the staged protocol: ``max(min_budget, max_budget / eta)``, divided by
    ``eta`` again while that leaves at least ``max(min_budget, 2)`` epochs.

    9 epochs give rungs 3 and 9 with eta 3, and 2.25, 4.5 and 9 with eta 2.
    """
    floor = max(search.min_budget, STAGED_MIN_EPOCHS)
    rung = max(search.min_budget, search.max_budget / search.eta)
    while rung / search.eta >= floor:
        rung /= search.eta
    return rung


def optimize_staged(
    problem: SAFSProblem,
    optimizer: str,
    output_dir: Path,
    search: SearchSettings,
    *,
    overwrite: bool,
    stage1_trials: int | None,
    stage2_trials: int | None,
) -> SearchResult:
    """Network-level search, then per-layer search warm-started from it (see module docstring)."""
    if optimizer not in STAGED_OPTIMIZERS:
        raise ValueError(
            f"protocol='staged' warm-starts a SMAC surrogate model, so it runs "
            f"{', '.join(STAGED_OPTIMIZERS)}, not {optimizer!r}; use protocol='joint' for it"
        )
    if problem.stage != "joint" or problem.granularity != "layer":
        raise ValueError(
            f"protocol='staged' builds its own network- and layer-level spaces but the problem "
            f"has stage {problem.stage!r} and granularity {problem.granularity!r}; leave both "
            "at their defaults ('joint', 'layer') or use protocol='joint'"
        )
    n1, n2 = stage_split(search.n_trials, stage1_trials, stage2_trials, "staged")
    # At high sparsity one epoch from a pruned network tells nothing (every configuration is at
    # chance), so both stages start their rungs at two epochs or more: 2.25, 4.5, 9 by default.
    lowest_rung = staged_min_budget(search)
    finished = start_two_stage_run(
        problem,
        f"staged-{optimizer}",
        "staged",
        output_dir,
        search,
        overwrite=overwrite,
        budgets=SMAC_OPTIMIZERS[optimizer][1],
        stage1={
            "granularity": "network",
            "n_trials": n1,
            "warm_start": "operators",
            "min_budget": lowest_rung,
        },
        stage2={"granularity": "layer", "n_trials": n2, "warm_start": "neighbours"},
        **search.limits(),
    )
    if finished is not None:
        return finished
    extra = {"protocol": "staged"}
    network_problem = problem.with_space(granularity="network")
    search = search.replace(min_budget=lowest_rung)

    def stage(number: int, stage_problem: SAFSProblem, n: int, **kwargs: Any) -> SearchResult:
        return optimize_one(
            stage_problem,
            optimizer,
            output_dir / f"stage{number}",
            search.replace(n_trials=n),
            overwrite=False,
            extra_settings={**extra, "stage": number},
            **kwargs,
        )

    first = stage(
        1,
        network_problem,
        n1,
        desc=f"stage 1, network level ({optimizer})",
        initial_configs=operator_screen(network_problem.configspace)[:n1],
    )
    second = stage(
        2,
        problem,
        n2,
        baseline=first.baseline,
        desc=f"stage 2, per layer ({optimizer})",
        initial_configs=refinement_configs(
            first.incumbent, first.trials, problem.configspace, limit=max(1, n2 // 2)
        ),
    )
    # Validation decides, never test: the per-layer result must earn its place.
    chosen, chosen_name = (
        (second, "stage2")
        if second.final.val_accuracy >= first.final.val_accuracy
        else (first, "stage1")
    )
    references = {"single_operator": first.final}
    tuned = best_default_activation_trial(first.trials, network_problem, search.max_budget)
    if tuned is not None:
        references["tuned_finetuning"] = network_problem.final_evaluation(
            network_problem.decode(tuned),
            seed=search.retrain_seed,
            epochs=search.final_epochs,
        )
    result = two_stage_result(
        problem, output_dir, chosen, first, second, later_stage_wins=False, references=references
    )
    write_result(
        result,
        title=f"{problem.model_name} / {problem.dataset_name} (staged)",
        incumbent_extra={"stage": chosen_name},
    )
    return result


def operator_screen(network_space: Any) -> list[Configuration]:
    """One configuration per operator for the whole network, fine-tuned with a robust recipe.

    The dense recipe is a poor start for a pruned network (at 99% sparsity it often stays at
    chance), so the network-level search begins with every operator under
    :data:`safs_smac.pruning.SPARSE_FINETUNE` (Adam, lr 0.01, cosine decay; unit initial scales,
    learned): the single-operator baseline, inside the search.
    """
    recipe = {f"ft:{key}": value for key, value in dict(SPARSE_FINETUNE).items()}
    configs = []
    for op in network_space[f"act:{NETWORK_SITE}"].choices:
        values = dict(network_space.get_default_configuration())
        values.update({f"act:{NETWORK_SITE}": op, **recipe})
        values = {
            k: v for k, v in values.items() if k != "ft:momentum" or values["ft:optimizer"] == "sgd"
        }
        configs.append(Configuration(network_space, values=values))
    return configs


def refinement_configs(
    incumbent: Configuration,
    trials: pd.DataFrame,
    layer_space: Any,
    *,
    alternatives: int = 2,
    limit: int | None = None,
) -> list[Configuration]:
    """Where the per-layer search starts: the network-level incumbent on every site, then its
    single-site neighbours.

    A neighbour changes the operator of one site to one of the ``alternatives`` operators that
    did best in the network-level search (ranked by the highest budget they reached, then by
    cost), keeping every other setting; sites take turns so that a ``limit`` shorter than the
    list still covers every site once before any twice.
    """
    base = expand_network_config(incumbent, layer_space)
    key = f"act:{NETWORK_SITE}"
    ranked: list[str] = []
    if not trials.empty and key in trials:
        budgets = pd.to_numeric(trials["budget"], errors="coerce").fillna(math.inf)
        frame = trials.assign(_budget=budgets).sort_values(
            ["_budget", "cost"], ascending=[False, True]
        )
        ranked = [op for op in dict.fromkeys(frame[key]) if op != incumbent[key]]
    sites = [name for name in layer_space if name.startswith("act:")]
    configs = [base]
    for alternative in ranked[:alternatives]:
        for site in sites:
            if alternative in layer_space[site].choices:
                configs.append(Configuration(layer_space, values={**dict(base), site: alternative}))
    return configs if limit is None else configs[:limit]


def expand_network_config(
    config: Configuration | Mapping[str, Any], layer_space: Any
) -> Configuration:
    """A network-level configuration (``act:all``, ...) as the same network in a per-layer space."""
    values: dict[str, Any] = {}
    for key, value in dict(config).items():
        prefix, _, site = key.partition(":")
        if site == NETWORK_SITE:
            for name in layer_space:
                if name.startswith(f"{prefix}:"):
                    values[name] = value
        else:
            values[key] = value
    return Configuration(layer_space, values=plain_config(values))


def best_default_activation_trial(
    trials: pd.DataFrame, problem: SAFSProblem, max_budget: float
) -> Configuration | None:
    """The lowest-cost trial at the highest budget that kept the default activation, if any."""
    key = f"act:{NETWORK_SITE}"
    if trials.empty or key not in trials:
        return None
    budgets = pd.to_numeric(trials["budget"], errors="coerce").fillna(max_budget)
    rows = trials[
        (trials[key] == problem.default_activation)
        & (budgets >= max_budget)
        & (trials["status"] == "SUCCESS")
    ]
    if rows.empty:
        return None
    best = rows.loc[pd.to_numeric(rows["cost"]).idxmin()]
    values = {
        name: best[name]
        for name in problem.configspace
        if name in best and not (isinstance(best[name], float) and math.isnan(best[name]))
    }
    return Configuration(problem.configspace, values=plain_config(values))
