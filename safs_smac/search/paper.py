"""The SAFS paper's protocol: stage 1 searches the operators with LAHC (alpha = beta = 1 frozen,
default recipe); stage 2 searches the scales and the fine-tuning hyperparameters with SMAC, the
stage-1 operators fixed; the stage-2 incumbent is retrained at the max budget. Each stage is a full
run directory (``stage1/``, ``stage2/``) inside the protocol's directory, whose top-level files
cover both stages, so ``safs-smac report`` works on it unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safs_smac.problem import SAFSProblem
from safs_smac.runs.results import SearchResult, plain_config, write_result
from safs_smac.search.names import SMAC_OPTIMIZERS
from safs_smac.search.run import optimize_one, start_two_stage_run, two_stage_result
from safs_smac.search.settings import SearchSettings, positive_int, stage_split

__all__ = ["optimize_paper"]


def optimize_paper(
    problem: SAFSProblem,
    stage1_opt: str,
    stage2_opt: str,
    output_dir: Path,
    search: SearchSettings,
    *,
    overwrite: bool,
    stage1_trials: int | None,
    stage1_epochs: int | None,
    stage2_trials: int | None,
    stage2_epochs: int | None,
) -> SearchResult:
    """The paper's protocol: LAHC over operators, then SMAC over scales + HPO, then retraining."""
    if problem.stage != "joint":
        raise ValueError(
            f"protocol='paper' builds its own stage spaces but the problem has stage "
            f"{problem.stage!r}; leave stage at 'joint' or use protocol='joint'"
        )
    if problem.search_rate is not None:
        raise ValueError(
            "protocol='paper' keeps the pruning rate fixed, as the paper did; drop search_rate "
            "or use protocol='joint'"
        )
    n1, n2 = stage_split(search.n_trials, stage1_trials, stage2_trials, "paper")
    e1 = (
        search.final_epochs
        if stage1_epochs is None
        else positive_int("stage1_epochs", stage1_epochs)
    )
    e2 = (
        search.final_epochs
        if stage2_epochs is None
        else positive_int("stage2_epochs", stage2_epochs)
    )
    stage2_budgets = SMAC_OPTIMIZERS[stage2_opt][1]
    if stage2_budgets and search.min_budget > e2:
        raise ValueError(
            f"min_budget {search.min_budget:g} exceeds stage2_epochs {e2}; lower --min-budget "
            "or raise --stage2-epochs"
        )
    stage1 = search.replace(
        n_trials=n1, max_budget=float(e1), min_budget=min(search.min_budget, e1)
    )
    stage2 = search.replace(n_trials=n2, max_budget=float(e2), optimizer_kwargs={})
    stage1.check_optimizer(stage1_opt)
    stage2.check_optimizer(stage2_opt)

    problem.max_budget = search.final_epochs  # as for a joint run: part of the run's identity
    stage1_settings = {
        "optimizer": stage1_opt,
        "n_trials": n1,
        "epochs": e1,
        "optimizer_kwargs": search.optimizer_kwargs,
    }
    stage2_settings = {"optimizer": stage2_opt, "n_trials": n2, "epochs": e2}
    finished = start_two_stage_run(
        problem,
        f"paper-{stage1_opt}-{stage2_opt}",
        "paper",
        output_dir,
        search,
        overwrite=overwrite,
        budgets=stage2_budgets,
        stage1=stage1_settings,
        stage2=stage2_settings,
    )
    if finished is not None:
        return finished

    extra = {"protocol": "paper", "final_epochs": search.final_epochs}

    def run_stage(
        number: int,
        stage_problem: SAFSProblem,
        optimizer: str,
        settings: SearchSettings,
        **kwargs: Any,
    ) -> SearchResult:
        """Stage ``number`` in ``stage<number>/``, its number part of the stage's identity."""
        return optimize_one(
            stage_problem,
            optimizer,
            output_dir / f"stage{number}",
            settings,
            overwrite=False,
            extra_settings={**extra, "stage": number},
            desc=f"stage {number} ({optimizer})",
            **kwargs,
        )

    operators_problem = problem.with_space(stage="operators")
    operators_problem.max_budget = e1
    first = run_stage(1, operators_problem, stage1_opt, stage1)
    scales_problem = problem.with_space(
        stage="scales_hpo", fixed_operators=operators_problem.decode(first.incumbent).operators
    )
    scales_problem.max_budget = e2
    # The baseline is the same training as stage 1's: no need to run it twice.
    second = run_stage(2, scales_problem, stage2_opt, stage2, baseline=first.baseline)
    result = two_stage_result(problem, output_dir, second, first, second, later_stage_wins=True)
    write_result(
        result,
        title=f"{problem.model_name} / {problem.dataset_name} (paper protocol)",
        incumbent_extra={"stage1_config": plain_config(first.incumbent)},
    )
    return result
