"""The paper's two-stage protocol, ask/tell optimizers in optimize(), and the benchmark scripts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from safs_smac.cli import main
from safs_smac.report import read_trials
from safs_smac.search import load_result, optimize

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_with_space_derives_a_stage_without_touching_the_problem(make_problem, monkeypatch):
    problem = make_problem()
    problem.pruned_checkpoint()
    monkeypatch.setattr(type(problem), "_train_dense", lambda self: pytest.fail("retrained"))
    chosen = dict.fromkeys(problem.sites, "tanh")
    stage2 = problem.with_space(stage="scales_hpo", fixed_operators=chosen)
    assert problem.stage == "joint" and problem.fixed_operators == {}
    assert any(k.startswith("act:") for k in problem.configspace)
    assert not any(k.startswith("act:") for k in stage2.configspace)
    assert stage2.settings()["fixed_operators"] == chosen
    spec = stage2.decode(stage2.configspace.get_default_configuration())
    assert set(spec.operators.values()) == {"tanh"} and spec.learn_scales
    cost, _ = stage2.train(stage2.configspace.get_default_configuration(), budget=1)
    assert 0.0 <= cost <= 1.0
    operators = problem.with_space(stage="operators")
    assert all(k.startswith("act:") for k in operators.configspace)
    with pytest.raises(ValueError, match="unknown sites"):
        problem.with_space(fixed_operators={"nope": "relu"})
    with pytest.raises(ValueError, match="unknown stage"):
        problem.with_space(stage="bogus")


def test_paper_protocol_runs_both_stages_and_reports_like_one_run(make_problem, tmp_path, capsys):
    problem = make_problem()
    out = tmp_path / "paper"
    run = {"protocol": "paper", "n_trials": 4, "stage1_epochs": 1, "stage2_epochs": 1}
    result = optimize(problem, **run, output_dir=out, progress=False)
    first, second = result.stages["stage1"], result.stages["stage2"]
    # Stage 1 searched operators only, with unit scales frozen and the default recipe.
    assert all(k.startswith("act:") for k in first.incumbent)
    assert set(first.final.alpha.values()) == {1.0} and set(first.final.beta.values()) == {1.0}
    # Stage 2 kept the stage-1 operators and searched scales and hyperparameters.
    chosen = {k.removeprefix("act:"): v for k, v in dict(first.incumbent).items()}
    assert result.operators == chosen
    assert not any(k.startswith("act:") for k in result.incumbent)
    assert (
        json.loads((out / "stage2" / "run.json").read_text())["problem"]["fixed_operators"]
        == chosen
    )
    # Trials and retraining at the right epochs; the baseline ran once, shared by both stages.
    assert set(result.trials["stage"]) == {1, 2}
    assert list(result.trials["trial"]) == [1, 2, 3, 4]
    assert result.trials["cumulative_epochs"].iloc[-1] == 4
    assert result.final.epochs == problem.max_budget == 2
    assert result.baseline == first.baseline == second.baseline
    for directory in (out, out / "stage1", out / "stage2"):
        for name in ("run.json", "results.csv", "incumbent.json", "summary.json", "trajectory.png"):
            assert (directory / name).exists(), directory / name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"stage1", "stage2"}
    assert summary["incumbent"]["operators"] == chosen
    # `safs-smac report` works on the protocol's directory; a rerun loads, it does not retrain.
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "SAFS (incumbent)" in report and "stage1: val" in report
    again = optimize(
        problem,
        **run,
        output_dir=out,
        progress=False,
        callbacks=[lambda info, value: pytest.fail("a finished run ran a trial")],
    )
    assert dict(again.incumbent) == dict(result.incumbent)
    assert again.stages["stage1"].final == first.final
    loaded = load_result(out)
    assert loaded.trials.equals(read_trials(out / "results.csv"))


def _kill_on_call(problem, monkeypatch, n: int) -> list:
    real = type(problem).finetune
    calls: list = []

    def finetune(self, spec, **kwargs):
        calls.append(spec)
        if len(calls) == n:
            raise KeyboardInterrupt  # stands in for a kill while a trial runs
        return real(self, spec, **kwargs)

    monkeypatch.setattr(type(problem), "finetune", finetune)
    return calls


def test_lahc_run_killed_mid_trial_resumes_the_same_walk(make_problem, tmp_path, monkeypatch):
    settings = {"n_trials": 5, "max_budget": 1, "seed": 3, "progress": False}
    reference = optimize(make_problem(), "lahc", output_dir=tmp_path / "whole", **settings)

    problem = make_problem()
    out = tmp_path / "killed"
    _kill_on_call(problem, monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        optimize(problem, "lahc", output_dir=out, **settings)
    assert not (out / "summary.json").exists()
    monkeypatch.undo()
    evaluated = []
    resumed = optimize(
        problem,
        "lahc",
        output_dir=out,
        callbacks=[lambda info, value: evaluated.append(info)],
        **settings,
    )
    assert len(evaluated) == 3  # the killed trial and the two after it, nothing twice
    columns = [c for c in reference.trials if c.startswith("act:")] + ["cost"]
    pd.testing.assert_frame_equal(resumed.trials[columns], reference.trials[columns])
    assert dict(resumed.incumbent) == dict(reference.incumbent)


def test_paper_run_killed_in_stage_2_keeps_stage_1(make_problem, tmp_path, monkeypatch):
    problem = make_problem()
    out = tmp_path / "paper"
    settings = {"protocol": "paper", "n_trials": 4, "max_budget": 1, "progress": False}
    # Stage 1: 2 trials + its incumbent's and the baseline's retraining; die in stage 2's 2nd.
    _kill_on_call(problem, monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        optimize(problem, output_dir=out, **settings)
    assert (out / "stage1" / "summary.json").exists()
    assert not (out / "summary.json").exists()
    monkeypatch.undo()
    stages = []
    result = optimize(
        problem,
        output_dir=out,
        callbacks=[lambda info, value: stages.append("act:" in str(list(info.config)))],
        **settings,
    )
    assert stages == [False]  # only stage 2's killed trial ran again
    assert len(result.trials) == 4


def test_random_search_in_optimize_is_iid(make_problem, tmp_path, monkeypatch) -> None:
    settings = {"n_trials": 4, "max_budget": 1, "seed": 5, "progress": False}
    first = optimize(make_problem(), "random", output_dir=tmp_path / "a", **settings)
    problem = make_problem()
    real = type(problem).finetune

    def other_costs(self, spec, **kwargs):
        model, info = real(self, spec, **kwargs)
        return model, {**info, "val_accuracy": 1.0 - info["val_accuracy"]}

    monkeypatch.setattr(type(problem), "finetune", other_costs)
    second = optimize(problem, "random", output_dir=tmp_path / "b", **settings)
    hyperparameters = [c for c in first.trials if ":" in c]
    # The costs differ, the samples do not: nothing was learned from the results.
    assert not first.trials["cost"].equals(second.trials["cost"])
    pd.testing.assert_frame_equal(first.trials[hyperparameters], second.trials[hyperparameters])
    assert first.trials[hyperparameters].drop_duplicates().shape[0] == 4


def test_paper_protocol_from_the_command_line(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    args = ["run", "--dataset", "synthetic", "--dense-epochs", "1", "--max-budget", "1"]
    args += ["--protocol", "paper", "--stage1-trials", "1", "--stage2-trials", "1"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "paper-lahc-smac-hpo" in text
    assert "stage1: val" in text and "stage2: val" in text
    run = json.loads((out / "run.json").read_text())
    assert run["stage1"] == {
        "optimizer": "lahc",
        "n_trials": 1,
        "epochs": 1,
        "optimizer_kwargs": {},
    }
    assert run["stage2"] == {"optimizer": "smac-hpo", "n_trials": 1, "epochs": 1}


@pytest.mark.slow
def test_quick_comparison_and_paper_table_write_well_formed_files(tmp_path, monkeypatch):
    compare = _load_script("compare_optimizers")
    paper_table = _load_script("paper_table")
    monkeypatch.setattr(compare, "_init_worker", lambda threads: None)  # keep pytest's threads
    common = ["--quick", "--seeds", "1", "--work-dir", str(tmp_path / "runs")]
    common += ["--cache-dir", str(tmp_path / "c")]
    methods = ["lahc", "smac-mf", "paper"]
    assert compare.main([*common, "--methods", ",".join(methods), "--out", str(tmp_path)]) == 0
    out = tmp_path / "lenet5_synthetic_layerwise0.99"
    compare.check_outputs(out, methods, [0])  # main checked too; this must not depend on it
    trials = pd.read_csv(out / "trials.csv")
    assert set(trials[trials["method"] == "paper"]["stage"]) == {1, 2}
    test = json.loads((out / "wilcoxon.json").read_text())
    assert (test["a"], test["b"]) == ("lahc", "smac-mf")
    assert "| LAHC |" in (out / "table.md").read_text()
    # A broken file is caught.
    (out / "anytime.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        compare.check_outputs(out, methods, [0])

    # The paper table reuses the comparison's protocol and SMAC-MF runs: only stage 2 alone runs.
    table_out = tmp_path / "table"
    argv = [*common, "--scopes", "layerwise", "--out", str(table_out)]
    assert paper_table.main(argv) == 0
    meta = json.loads((table_out / "lenet5_synthetic_0.99" / "meta.json").read_text())
    assert (meta["runs_reused"], meta["runs_total"]) == (2, 3)
    text = (table_out / "lenet5_synthetic_0.99" / "table.md").read_text()
    assert "| SAFS (stage 1 + 2) |" in text and "| joint multi-fidelity SMAC (ours) |" in text
