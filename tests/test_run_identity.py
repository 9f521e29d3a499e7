"""Runs made before the run identity moved to ``safs_smac.runs`` still resume.

``tests/golden/run_json/<kind>/`` holds the run.json files that the code of commit 7d94077 wrote
for a two-trial run of every kind (see ``make_golden.py`` there). Each test puts them in an empty
run directory, as a run killed before its first trial leaves it, and calls today's code with the
original arguments: it must take the directory as the same run (not refuse it as a different
one), except a run with trials below the max budget (see ``MULTI_FIDELITY``). One-directory runs
stop right after that check; the two-stage protocols run to the end, as their stages'
directories are claimed one after the other.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import safs_smac.search.run as run_module
from safs_smac.problem import SAFSProblem
from safs_smac.search import optimize

GOLDEN = Path(__file__).parent / "golden" / "run_json"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)

TWO_STAGE = ("staged-smac-mf", "paper")
# Runs with trials below the max budget: since budget continuation, a trial's learning-rate
# schedule spans the max budget, so their low-budget trials were trained differently. They are
# refused as runs of an earlier version (their files untouched), never continued with mixed trials.
MULTI_FIDELITY = ("smac-mf-joint", "staged-smac-mf")


class _Claimed(Exception):
    """Raised where the search would start: the directory was accepted as the same run."""


@pytest.mark.parametrize("kind", MULTI_FIDELITY)
def test_a_multi_fidelity_run_of_the_previous_version_is_refused_untouched(kind, tmp_path) -> None:
    overrides, kwargs = make_golden.CASES[kind]
    run_dir = tmp_path / kind
    shutil.copytree(GOLDEN / kind, run_dir)
    problem = SAFSProblem(
        "lenet5", "synthetic", cache_dir=tmp_path / "cache", **make_golden.PROBLEM, **overrides
    )
    # What the command meant then: the staged protocol's default became successive halving
    # with eta 2 since, so the same words now ask for a different run (also refused untouched).
    then = {"eta": 3, "intensifier": "hyperband"}
    with pytest.raises(ValueError, match=r"earlier safs-smac version .*problem\.schedule_horizon"):
        optimize(problem, output_dir=run_dir, progress=False, seed=0, **kwargs, **then)
    if kind == "staged-smac-mf":
        with pytest.raises(ValueError, match=r"different run \(changed: eta, intensifier"):
            optimize(problem, output_dir=run_dir, progress=False, seed=0, **kwargs)
    for golden in (GOLDEN / kind).rglob("run.json"):
        assert (run_dir / golden.relative_to(GOLDEN / kind)).read_text() == golden.read_text()


@pytest.mark.parametrize("kind", sorted(set(make_golden.CASES) - set(MULTI_FIDELITY)))
def test_a_run_of_the_previous_version_resumes(kind, tmp_path, monkeypatch) -> None:
    overrides, kwargs = make_golden.CASES[kind]
    run_dir = tmp_path / kind
    shutil.copytree(GOLDEN / kind, run_dir)
    before = json.loads((run_dir / "run.json").read_text())
    problem = SAFSProblem(
        "lenet5", "synthetic", cache_dir=tmp_path / "cache", **make_golden.PROBLEM, **overrides
    )
    if kind in TWO_STAGE:
        result = optimize(problem, output_dir=run_dir, progress=False, seed=0, **kwargs)
        assert len(result.trials) == kwargs["n_trials"]
    else:

        def claimed(*args, **kwargs):
            raise _Claimed

        monkeypatch.setattr(run_module, "run_smac", claimed)
        monkeypatch.setattr(run_module, "run_ask_tell", claimed)
        with pytest.raises(_Claimed):
            optimize(problem, output_dir=run_dir, progress=False, seed=0, **kwargs)
    for golden in (GOLDEN / kind).rglob("run.json"):
        old = json.loads(golden.read_text())
        new = json.loads((run_dir / golden.relative_to(GOLDEN / kind)).read_text())
        # The same identity, with the data's fingerprint added since.
        assert new["data"] == problem.dataset.fingerprint()
        assert {k: v for k, v in new.items() if k not in ("data", "environment")} == {
            k: v for k, v in old.items() if k != "environment"
        }
    assert before["optimizer"] == json.loads((run_dir / "run.json").read_text())["optimizer"]


def test_a_different_run_is_still_refused(tmp_path) -> None:
    overrides, kwargs = make_golden.CASES["smac-hpo-joint"]
    run_dir = tmp_path / "run"
    shutil.copytree(GOLDEN / "smac-hpo-joint", run_dir)  # trials at the max budget only
    problem = SAFSProblem(
        "lenet5", "synthetic", cache_dir=tmp_path / "cache", **make_golden.PROBLEM, **overrides
    )
    with pytest.raises(ValueError, match=r"holds a different run \(changed: n_trials\)"):
        optimize(problem, output_dir=run_dir, progress=False, seed=0, **{**kwargs, "n_trials": 3})


def test_an_optuna_run_of_the_previous_version_is_refused_untouched(tmp_path) -> None:
    # Its trials live in runhistory.json only, without the study journal this version resumes
    # from: continuing would restart the study over them, so it is refused, by name, unchanged.
    from safs_smac.integrations.optuna import run_optuna

    out = tmp_path / "out"
    shutil.copytree(GOLDEN / "optuna", out)
    before = (out / "optuna" / "0" / "run.json").read_text()
    problem = SAFSProblem(
        "lenet5", "synthetic", cache_dir=tmp_path / "cache", flat=True, **make_golden.PROBLEM
    )
    with pytest.raises(ValueError, match="holds an earlier version's Optuna run"):
        run_optuna(problem, n_trials=2, seed=0, output_dir=out)
    assert (out / "optuna" / "0" / "run.json").read_text() == before
