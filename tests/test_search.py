"""optimize(): every optimizer drives the target function; run directories resume safely."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from safs_smac.report import incumbent_curve
from safs_smac.search import (
    ASK_TELL_OPTIMIZERS,
    FINAL_SEED_OFFSET,
    SMAC_OPTIMIZERS,
    optimize,
    resolve_optimizers,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# One joint SMAC run of two one-epoch trials: what the run-directory tests need.
TINY_JOINT_RUN = {"protocol": "joint", "n_trials": 2, "max_budget": 1, "progress": False}


@pytest.mark.parametrize("optimizer", [*SMAC_OPTIMIZERS, *ASK_TELL_OPTIMIZERS])
def test_every_optimizer_runs_the_target(make_problem, tmp_path, optimizer) -> None:
    problem = make_problem()
    out = tmp_path / optimizer
    result = optimize(
        problem,
        optimizer,
        n_trials=3,
        min_budget=1,
        max_budget=2,
        output_dir=out,
        progress=False,
    )
    assert 1 <= len(result.trials) <= 3
    for name in ("run.json", "results.csv", "incumbent.json", "summary.json", "trajectory.png"):
        assert (out / name).exists(), name
    smac_dir = out / ("stage2" if (out / "stage2").exists() else ".") / "smac" / "0"
    assert (smac_dir / "runhistory.json").exists()
    assert set(result.operators) == set(problem.sites)
    assert 0.0 <= result.final.test_accuracy <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"dense", "baseline", "incumbent"}
    csv = pd.read_csv(out / "results.csv")
    assert {"budget", "val_accuracy", "cumulative_epochs", "incumbent_val_accuracy"} <= set(csv)
    assert "cost" in csv
    assert "best_val_accuracy" not in csv
    curve = incumbent_curve(csv)
    pd.testing.assert_frame_equal(csv[list(curve)], curve)
    settings = json.loads((out / "run.json").read_text())
    if optimizer in ASK_TELL_OPTIMIZERS:
        # Every trial at the max budget, the optimizer's settings in the run's identity.
        assert set(csv["epochs"]) == {2}
        assert settings["optimizer_settings"]["name"] == optimizer
        assert (out / "smac" / "0" / "configspace.json").exists()


def test_interrupted_run_resumes_without_repeating_trials(make_problem, tmp_path, monkeypatch):
    problem = make_problem()
    out = tmp_path / "run"
    real_finetune = type(problem).finetune
    calls = []

    def killed_during_third_trial(self, spec, **kwargs):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands in for a kill while a trial runs
        return real_finetune(self, spec, **kwargs)

    # Patch below the target function: SMAC hashes the target's code into the run's identity.
    monkeypatch.setattr(type(problem), "finetune", killed_during_third_trial)
    run = {"n_trials": 4, "max_budget": 1, "output_dir": out, "progress": False}
    before = []
    with pytest.raises(KeyboardInterrupt):
        optimize(
            problem,
            "smac-hpo",
            **run,
            callbacks=[lambda info, value: before.append(dict(info.config))],
        )
    assert len(before) == 2
    assert not (out / "summary.json").exists()
    monkeypatch.setattr(type(problem), "finetune", real_finetune)

    after = []
    result = optimize(
        problem, "smac-hpo", **run, callbacks=[lambda info, value: after.append(dict(info.config))]
    )
    assert len(result.trials) == 4
    assert len(after) == 2  # only the trials that had not finished ran
    assert not any(config in before for config in after)
    assert problem.decode(after[0]) == calls[2]  # the killed trial is the one that runs again


@pytest.mark.parametrize("optimizer", ["smac-random", "random"])
def test_finished_run_is_returned_not_redone(make_problem, tmp_path, optimizer) -> None:
    problem = make_problem()
    out = tmp_path / "run"
    run = {"n_trials": 2, "max_budget": 1, "output_dir": out, "progress": False}
    first = optimize(problem, optimizer, **run)
    calls = []
    second = optimize(problem, optimizer, **run, callbacks=[lambda info, value: calls.append(info)])
    assert calls == []
    assert second.final.test_accuracy == first.final.test_accuracy
    assert dict(second.incumbent) == dict(first.incumbent)


def test_different_run_in_same_directory_is_refused(make_problem, tmp_path) -> None:
    problem = make_problem()
    out = tmp_path / "run"
    run = {"max_budget": 1, "output_dir": out, "progress": False}
    optimize(problem, "random", n_trials=2, **run)
    before = (out / "summary.json").read_bytes()
    with pytest.raises(ValueError, match="holds a different run.*n_trials.*--overwrite"):
        optimize(problem, "random", n_trials=3, **run)
    assert (out / "summary.json").read_bytes() == before
    result = optimize(problem, "random", n_trials=3, **run, overwrite=True)
    assert len(result.trials) == 3


def test_foreign_directory_is_refused(make_problem, tmp_path) -> None:
    out = tmp_path / "somebody_elses"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overwrite in (False, True):  # --overwrite never removes what a run did not write
        with pytest.raises(ValueError, match=r"not a safs-smac run \(notes.txt\)") as err:
            optimize(
                make_problem(),
                "random",
                n_trials=2,
                output_dir=out,
                progress=False,
                overwrite=overwrite,
            )
        assert "--overwrite" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "bogus"}, "valid optimizers"),
        ({"n_trials": 0}, "n_trials must be >= 1"),
        ({"min_budget": 5, "max_budget": 2}, "min_budget <= max_budget"),
        ({"n_workers": 0}, "n_workers"),
        ({"trial_walltime_limit": -1}, "trial_walltime_limit must be a positive number"),
        ({"optimizer": "smac-hpo", "optimizer_kwargs": {"x": 1}}, "ask/tell optimizers"),
        ({"optimizer": "lahc", "optimizer_kwargs": {"bogus": 1}}, "do not fit optimizer 'lahc'"),
        ({"optimizer": "lahc", "optimizer_kwargs": {"history_length": 0}}, "history_length"),
        ({"protocol": "bogus"}, "valid protocols: staged, joint, paper"),
        ({"stage1_epochs": 3}, "do not apply to protocol='staged'"),
    ],
)
def test_bad_search_settings_write_nothing(make_problem, tmp_path, kwargs, message) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        optimize(make_problem(), output_dir=out, progress=False, **kwargs)
    assert not out.exists()


def test_protocols_pick_their_optimizers() -> None:
    assert resolve_optimizers(None) == ("smac-mf", None)
    assert resolve_optimizers("lahc") == ("lahc", None)
    assert resolve_optimizers(None, "paper") == ("lahc", "smac-hpo")
    assert resolve_optimizers("random", "paper") == ("random", "smac-hpo")
    assert resolve_optimizers("smac-bb", "paper") == ("lahc", "smac-bb")


@pytest.mark.parametrize("optimizer", ["lahc", "smac-hpo"])
def test_final_retraining_uses_a_seed_no_trial_used(make_problem, tmp_path, monkeypatch, optimizer):
    problem = make_problem()
    real = type(problem).finetune
    seeds = []

    def record(self, spec, *, seed, epochs):
        seeds.append(seed)
        return real(self, spec, seed=seed, epochs=epochs)

    monkeypatch.setattr(type(problem), "finetune", record)
    trials = []
    optimize(
        problem,
        optimizer,
        seed=3,
        output_dir=tmp_path / "run",
        **TINY_JOINT_RUN,
        callbacks=[lambda info, value: trials.append(info.seed)],
    )
    # Two trials, then the incumbent and the baseline, both with the fresh seed.
    assert len(seeds) == 4 and seeds[:2] == trials
    assert seeds[2:] == [3 + FINAL_SEED_OFFSET] * 2
    assert not set(seeds[2:]) & set(trials)


def _edit_target_code(smac_dir) -> None:
    """What SMAC sees when the target function's code changed between the kill and the resume."""
    scenario = json.loads((smac_dir / "scenario.json").read_text())
    scenario["_meta"]["runner"]["code"] = "b'edited'"
    (smac_dir / "scenario.json").write_text(json.dumps(scenario))


def test_run_killed_while_retraining_resumes_even_after_a_code_change(make_problem, tmp_path):
    problem = make_problem()
    out = tmp_path / "run"
    first = optimize(
        problem,
        "smac-hpo",
        output_dir=out,
        **TINY_JOINT_RUN,
    )
    (out / "summary.json").unlink()  # killed after the search, during the final retraining
    _edit_target_code(out / "smac" / "0")
    second = optimize(
        problem,
        "smac-hpo",
        output_dir=out,
        **TINY_JOINT_RUN,
        callbacks=[lambda info, value: pytest.fail("the finished search ran a trial")],
    )
    assert dict(second.incumbent) == dict(first.incumbent)
    assert second.final.val_accuracy == first.final.val_accuracy
    pd.testing.assert_frame_equal(second.trials, first.trials)


def test_changed_code_mid_search_is_a_clear_error_not_a_prompt(make_problem, tmp_path):
    problem = make_problem()
    out = tmp_path / "run"
    optimize(
        problem,
        "smac-hpo",
        output_dir=out,
        **TINY_JOINT_RUN,
    )
    smac_dir = out / "smac" / "0"
    (out / "summary.json").unlink()
    state = json.loads((smac_dir / "optimization.json").read_text())
    (smac_dir / "optimization.json").write_text(json.dumps({**state, "finished": False}))
    _edit_target_code(smac_dir)
    with pytest.raises(ValueError, match="cannot be resumed; delete that directory"):
        optimize(
            problem,
            "smac-hpo",
            output_dir=out,
            **TINY_JOINT_RUN,
        )
    import smac.main.smbo

    assert "input" not in vars(smac.main.smbo)  # SMAC's own prompt is back in place


def test_a_search_rate_run_resumes_with_the_identical_command(make_problem, tmp_path) -> None:
    # search_rate is a tuple in the live settings and a list in run.json: still the same run.
    out = tmp_path / "run"
    kwargs = {"n_trials": 2, "max_budget": 1, "output_dir": out, "progress": False}
    first = optimize(make_problem(search_rate=(0.9, 0.99)), "random", **kwargs)
    again = optimize(make_problem(search_rate=(0.9, 0.99)), "random", **kwargs)
    assert again.final == first.final


def test_problem_refuses_a_fractional_max_budget(make_problem) -> None:
    with pytest.raises(ValueError, match="whole number of epochs >= 1, got 1.9"):
        make_problem(max_budget=1.9)
    assert make_problem(max_budget=3.0).max_budget == 3


@pytest.mark.parametrize("optimizer", ["lahc", "smac-hpo"])
def test_every_run_kind_has_the_files_deepcave_reads(make_problem, tmp_path, optimizer) -> None:
    """DeepCAVE's SMAC3 converter (deepcave/runs/converters/smac3v2.py, SMAC3v2Run.from_path,
    DeepCAVE 1.4) reads configspace.json with ConfigurationSpace.from_json, scenario.json's
    "objectives" and "seed", and runhistory.json's "data", "config_origins" and "configs"."""
    from ConfigSpace import ConfigurationSpace

    out = tmp_path / "run"
    optimize(
        make_problem(),
        optimizer,
        protocol="joint",
        n_trials=2,
        max_budget=1,
        output_dir=out,
        progress=False,
    )
    smac_dir = out / "smac" / "0"
    space = ConfigurationSpace.from_json(smac_dir / "configspace.json")
    assert len(list(space)) > 0
    scenario = json.loads((smac_dir / "scenario.json").read_text())
    assert scenario["objectives"] == "cost" and scenario["seed"] == 0
    history = json.loads((smac_dir / "runhistory.json").read_text())
    assert len(history["data"]) == 2 and history["configs"]
    assert {"config_origins"} <= set(history)
    assert all({"config_id", "budget", "cost", "status"} <= set(t) for t in history["data"])


def test_optimize_leaves_the_callers_problem_unchanged(make_problem, tmp_path) -> None:
    problem = make_problem(max_budget=3)
    before = problem.settings()
    optimize(problem, "random", n_trials=1, max_budget=1, output_dir=tmp_path / "r", progress=False)
    assert problem.settings() == before and problem.max_budget == 3
