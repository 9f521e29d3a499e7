"""Optuna's TPE sampler on a SAFS problem, recorded like every other optimizer of the comparison.

The search runs over the SAFS space (conditions sampled define-by-run; ``--flat`` for the
condition-free variant), every trial fine-tuning the pruned network up to ``--max-budget`` epochs,
the target the SMAC and LAHC runs evaluate. With ``--pruner median`` (or ``hyperband``) a trial
reports its validation cost at each of ``--rungs`` and Optuna may stop it early. The run directory
gets the files ``safs-smac`` writes for its own runs:

* ``optuna/<seed>/``: the study (``study.journal``, resumable; or ``--storage``),
  ``runhistory.json`` (SMAC's format, one entry per evaluated rung), ``scenario.json`` and
  ``configspace.json`` (DeepCAVE's SMAC3v2 converter reads the directory);
* ``results.csv``: one row per evaluated rung (``safs_smac.report.trials_dataframe``);
* ``incumbent.json``, ``summary.json``, ``trajectory.png``: the incumbent and the magnitude-pruning
  baseline retrained at the max budget, validation and test accuracy (skip with ``--no-final``).

Example (seconds on a CPU)::

    python benchmarks/optuna_tpe.py --dataset synthetic --n-trials 5 --max-budget 2 \\
        --dense-epochs 5 --pruning-rate 0.9 --output-dir safs_runs/optuna_tpe

Needs the ``optuna`` extra: ``pip install -c constraints.txt -e ".[optuna]"``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import optuna
from ConfigSpace import Configuration

from safs_smac.integrations.optuna import CONFIG_ATTR, RUNGS_ATTR, run_optuna, study_runhistory
from safs_smac.problem import SAFSProblem
from safs_smac.report import trials_dataframe, write_csv
from safs_smac.search import finish_run

PRUNERS = ("none", "median", "hyperband")


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """The problem's options, shared with ``optuna_pruning.py``."""
    parser.add_argument("--model", default="lenet5", help="zoo model (default: lenet5)")
    parser.add_argument("--dataset", default="mnist-5k", help="data set (default: mnist-5k)")
    parser.add_argument("--data-root", default=None, help="directory of on-disk data sets")
    parser.add_argument("--max-budget", type=int, default=9, help="fine-tuning epochs per trial")
    parser.add_argument("--dense-epochs", type=int, default=None, help="dense training epochs")
    parser.add_argument("--pruning-rate", type=float, default=0.99, help="default: 0.99")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    parser.add_argument("--cache-dir", default=None, help="checkpoint cache (default: shared)")
    parser.add_argument(
        "--flat", action="store_true", help="condition-free space (default: the SAFS space)"
    )


def build_problem(args: argparse.Namespace, **overrides: Any) -> SAFSProblem:
    """The SAFS problem of the parsed options (``overrides`` win, e.g. ``dataset_kwargs``)."""
    settings: dict[str, Any] = {
        "data_root": args.data_root,
        "pruning_rate": args.pruning_rate,
        "dense_epochs": args.dense_epochs,
        "max_budget": args.max_budget,
        "device": args.device,
        "cache_dir": args.cache_dir,
        "seed": 0,  # the dense model, shared with the other optimizers' runs through the cache
        "flat": args.flat,
    }
    settings.update(overrides)
    return SAFSProblem(args.model, args.dataset, **settings)


def make_pruner(name: str) -> optuna.pruners.BasePruner | None:
    """Optuna's pruner by name (``none``: no pruning), with Optuna's default settings."""
    if name == "none":
        return None
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")


def parse_rungs(text: str | None) -> list[int] | None:
    """``"1,3,9"`` -> ``[1, 3, 9]``; None keeps run_optuna's default."""
    return None if text is None else [int(part) for part in text.split(",") if part.strip()]


def best_trial(study: optuna.study.Study) -> optuna.trial.FrozenTrial | None:
    """The completed trial with the lowest cost, or None when no trial completed."""
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def val_accuracy(trial: optuna.trial.FrozenTrial) -> float:
    """Validation accuracy at the trial's last evaluated rung (its cost adds a loss tie-break)."""
    return float(trial.user_attrs[RUNGS_ATTR][-1]["info"]["val_accuracy"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_problem_arguments(parser)
    parser.add_argument("--n-trials", type=int, default=20, help="trials (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="TPE and fine-tuning seed")
    parser.add_argument("--pruner", choices=PRUNERS, default="none", help="default: none")
    parser.add_argument("--rungs", default=None, help="reporting budgets, e.g. 1,3,9")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default: journal)")
    parser.add_argument("--output-dir", default="safs_runs/optuna_tpe", help="run directory")
    parser.add_argument(
        "--no-final", action="store_true", help="skip retraining the incumbent and the baseline"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problem = build_problem(args)
    output_dir = Path(args.output_dir)
    study = run_optuna(
        problem,
        n_trials=args.n_trials,
        seed=args.seed,
        output_dir=output_dir,
        pruner=make_pruner(args.pruner),
        rungs=parse_rungs(args.rungs),
        storage=args.storage,
    )
    trials = trials_dataframe(study_runhistory(study, problem.configspace))
    best = best_trial(study)
    if best is None:
        raise SystemExit(f"no trial completed; see {output_dir / 'optuna'}")
    incumbent = Configuration(problem.configspace, values=best.user_attrs[CONFIG_ATTR])
    if args.no_final:
        write_csv(trials, output_dir / "results.csv")
        print(f"{len(study.trials)} trials; best validation accuracy {val_accuracy(best):.4f}")
        print(f"trials: {output_dir / 'results.csv'}")
        return
    result = finish_run(problem, output_dir, incumbent, float(best.value), trials, seed=args.seed)
    print(result.table())
    print(f"run directory: {output_dir}")


if __name__ == "__main__":
    main()
