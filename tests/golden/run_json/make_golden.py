"""Write the golden run.json files of every run kind (run once, with the code of commit 7d94077).

``PYTHONPATH=<checkout of 7d94077> python tests/golden/run_json/make_golden.py OUT`` runs a
two-trial search of each kind in ``CASES`` on the tiny synthetic problem of ``tests/conftest.py``
and copies every run.json it wrote to ``OUT/<kind>/``. (``random-limits`` was written by the
same call with the search stopped once run.json existed: a trial forked under a wall-time limit
on a machine loaded far past its cores deadlocked.) tests/test_run_identity.py checks that
today's code accepts them as the same runs, i.e. that runs made before the identity moved to
``safs_smac.runs`` still resume.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

SYNTHETIC = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4, "channels": 1, "size": 28}
PROBLEM = {"dataset_kwargs": SYNTHETIC, "dense_epochs": 1, "max_budget": 2, "device": "cpu"}
# kind -> (problem overrides, optimize keyword arguments)
CASES: dict[str, tuple[dict, dict]] = {
    "smac-hpo-joint": ({}, {"optimizer": "smac-hpo", "protocol": "joint", "n_trials": 2}),
    "smac-mf-joint": ({}, {"optimizer": "smac-mf", "protocol": "joint", "n_trials": 2}),
    "staged-smac-mf": ({}, {"optimizer": "smac-mf", "n_trials": 4}),
    "lahc-1-worker": ({}, {"optimizer": "lahc", "n_trials": 2}),
    "lahc-2-workers": ({}, {"optimizer": "lahc", "n_trials": 2, "n_workers": 2}),
    "random-limits": (
        {"search_rate": (0.9, 0.99)},
        {"optimizer": "random", "n_trials": 2, "trial_walltime_limit": 600.0},
    ),
    "paper": ({}, {"protocol": "paper", "n_trials": 2, "stage1_epochs": 1, "stage2_epochs": 1}),
}


def main(out: Path) -> None:
    from safs_smac.problem import SAFSProblem
    from safs_smac.search import optimize

    work = Path(tempfile.mkdtemp())
    for kind, (overrides, kwargs) in CASES.items():
        problem = SAFSProblem(
            "lenet5", "synthetic", cache_dir=work / "cache", **PROBLEM, **overrides
        )
        run_dir = work / kind
        optimize(problem, output_dir=run_dir, progress=False, seed=0, **kwargs)
        for run_file in run_dir.rglob("run.json"):
            target = out / kind / run_file.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(run_file, target)
    from safs_smac.integrations.optuna import run_optuna

    problem = SAFSProblem("lenet5", "synthetic", cache_dir=work / "cache", flat=True, **PROBLEM)
    run_optuna(problem, n_trials=2, seed=0, output_dir=work / "optuna")
    target = out / "optuna" / "optuna" / "0" / "run.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "optuna" / "optuna" / "0" / "run.json", target)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
