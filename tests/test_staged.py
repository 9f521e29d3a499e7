"""The pieces of issue 13: tie-broken cost, pruning schedules, the staged protocol."""

from __future__ import annotations

import json

import pytest
import torch

from safs_smac import pruning
from safs_smac.problem import WORST_COST, trial_cost
from safs_smac.report import incumbent_curve
from safs_smac.search import expand_network_config, load_result, operator_screen, optimize


def test_cost_ranks_by_accuracy_and_breaks_ties_by_loss() -> None:
    n_val = 500
    # One more correct image beats any loss difference ...
    assert trial_cost(0.102, 50.0, n_val) < trial_cost(0.100, 0.0, n_val)
    # ... and equal accuracies are ranked by the loss.
    assert trial_cost(0.1, 2.2, n_val) < trial_cost(0.1, 2.3, n_val)
    # Every finished trial stays better than a diverged one.
    assert trial_cost(0.0, 1e6, n_val) < WORST_COST
    assert trial_cost(0.7, 1.0, n_val, "error") == pytest.approx(0.3)


def test_gradual_schedule_reaches_the_rate_and_fine_tunes_between_rounds(make_problem) -> None:
    gradual = make_problem(prune_schedule=pruning.Gradual(rounds=3, epochs_per_round=1))
    one_shot = make_problem()
    assert gradual.prune_epochs == 2 and one_shot.prune_epochs == 0
    state = gradual.pruned_checkpoint()
    assert state["prune_epochs"] == 2
    assert state["sparsity"] == pytest.approx(0.99, abs=0.005)
    # Same dense network, different survivors: fine-tuning between rounds moved the weights.
    masks_g, masks_o = state["masks"], one_shot.pruned_checkpoint()["masks"]
    assert masks_g.keys() == masks_o.keys()
    assert any(not torch.equal(masks_g[k], masks_o[k]) for k in masks_g)
    assert gradual.settings()["prune_schedule"]["rounds"] == 3


def test_gradual_without_training_is_iterative_pruning(make_problem) -> None:
    problem = make_problem()
    model = problem._model_for_data()
    model.load_state_dict(problem.dense_checkpoint()["state_dict"])
    reference = problem._model_for_data()
    reference.load_state_dict(problem.dense_checkpoint()["state_dict"])
    pruning.Gradual(rounds=4, epochs_per_round=0).prune(model, 0.9, scope="global")
    pruning.iterative_magnitude_prune(reference, 0.9, rounds=4, scope="global")
    masks, expected = pruning.get_masks(model), pruning.get_masks(reference)
    assert all(torch.equal(masks[k], expected[k]) for k in masks)


def test_unknown_schedule_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid schedules: one-shot, gradual"):
        pruning.resolve_schedule("lottery")
    with pytest.raises(ValueError, match="rounds must be an integer >= 1"):
        pruning.Gradual(rounds=0)
    assert isinstance(pruning.resolve_schedule("one_shot"), pruning.OneShot)


def test_expand_network_config_sets_every_site(make_problem) -> None:
    problem = make_problem()
    network = problem.with_space(granularity="network")
    config = dict(network.configspace.sample_configuration())
    expanded = expand_network_config(config, problem.configspace)
    for site in problem.sites:
        assert expanded[f"act:{site}"] == config["act:all"]
        assert expanded[f"alpha:{site}"] == pytest.approx(config["alpha:all"])
    assert problem.decode(expanded) == network.decode(config)


def test_staged_run_warm_starts_the_layer_search_and_picks_by_validation(
    make_problem, tmp_path
) -> None:
    problem = make_problem()
    out = tmp_path / "run"
    result = optimize(problem, "smac-hpo", n_trials=4, max_budget=1, output_dir=out, progress=False)
    first, second = result.stages["stage1"], result.stages["stage2"]
    assert "act:all" in first.incumbent and f"act:{problem.sites[0]}" in second.incumbent
    # The network-level search screened operators with the robust recipe first ...
    screened = json.loads((out / "stage1" / "smac" / "0" / "runhistory.json").read_text())
    first_screen = operator_screen(problem.with_space(granularity="network").configspace)[0]
    assert screened["configs"]["1"] == pytest.approx(dict(first_screen))
    assert first_screen["ft:optimizer"] == "adam" and first_screen["ft:scheduler"] == "cosine"
    # ... and the per-layer search started from its incumbent, expanded to every site.
    history = json.loads((out / "stage2" / "smac" / "0" / "runhistory.json").read_text())
    first_config = history["configs"]["1"]
    expected = expand_network_config(first.incumbent, problem.configspace)
    assert first_config == pytest.approx(dict(expected))
    # Validation decides between the two stages; test never does.
    assert result.final.val_accuracy == max(first.final.val_accuracy, second.final.val_accuracy)
    assert result.references["single_operator"] == first.final
    summary = json.loads((out / "summary.json").read_text())
    assert "single_operator" in summary["references"]
    assert json.loads((out / "run.json").read_text())["protocol"] == "staged"
    # One anytime curve over both stages: the result is the better stage, so stage 2's first,
    # low-budget trials do not replace stage 1's incumbent.
    expected_curve = incumbent_curve(result.trials.drop(columns="stage"))["incumbent_val_accuracy"]
    assert list(result.trials["incumbent_val_accuracy"]) == list(expected_curve)
    loaded = load_result(out)
    assert list(loaded.trials["incumbent_val_accuracy"]) == list(expected_curve)
    # Per-site dead neuron rates are columns of results.csv; an empty reason stays text.
    assert {f"dnr:{site}" for site in problem.sites} <= set(loaded.trials.columns)
    assert loaded.trials["reason"].dtype == "string"
    assert loaded.final == result.final
    assert loaded.references.keys() == result.references.keys()
    # Running the same command again returns the finished run.
    again = optimize(problem, "smac-hpo", n_trials=4, max_budget=1, output_dir=out, progress=False)
    assert again.final == result.final


def test_staged_refuses_optimizers_without_a_surrogate(make_problem, tmp_path) -> None:
    with pytest.raises(ValueError, match="protocol='staged' warm-starts"):
        optimize(make_problem(), "lahc", protocol="staged", n_trials=2, output_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_ap_is_a_pruning_schedule_of_the_problem(make_problem) -> None:
    from safs_smac.sparse_training import AP

    problem = make_problem(pruning="global", prune_schedule=AP(rounds=2, epochs_per_round=1))
    state = problem.pruned_checkpoint()
    assert state["sparsity"] == pytest.approx(0.99, abs=0.005)
    assert problem.prune_epochs == 2 == state["prune_epochs"]
    assert problem.settings()["prune_schedule"]["name"] == "ap"
    assert isinstance(pruning.resolve_schedule("ap"), AP)
    with pytest.raises(ValueError, match="supports pruning='global', not 'layerwise'"):
        make_problem(prune_schedule="ap")


def test_collapse_is_judged_against_the_runs_own_chance_level() -> None:
    from safs_smac.report import format_table

    def entry(accuracy: float) -> dict:
        return {"val_accuracy": accuracy, "test_accuracy": accuracy, "epochs": 9}

    summary = {"dense": entry(0.9), "baseline": entry(0.255), "incumbent": entry(0.5)}
    # Four classes: 25.5% is at chance; with ten classes it is not; unknown chance: no mark.
    assert "(collapsed to chance)" in format_table({**summary, "chance": 0.25})
    assert "(collapsed to chance)" not in format_table({**summary, "chance": 0.1})
    assert "(collapsed to chance)" not in format_table(summary)


def test_a_run_made_by_an_earlier_version_is_refused_with_that_reason(
    make_problem, tmp_path
) -> None:
    out = tmp_path / "run"
    kwargs = {"protocol": "joint", "n_trials": 1, "max_budget": 1, "progress": False}
    optimize(make_problem(), "random", output_dir=out, **kwargs)
    run_file = out / "run.json"
    old = json.loads(run_file.read_text())
    del old["problem"]["objective"]  # what run.json looked like before the cost's tie-break
    run_file.write_text(json.dumps(old))
    before = (out / "summary.json").read_bytes()
    with pytest.raises(
        ValueError, match="made by an earlier safs-smac version .*problem.objective"
    ):
        optimize(make_problem(), "random", output_dir=out, **kwargs)
    assert (out / "summary.json").read_bytes() == before
    with pytest.raises(ValueError, match=r"holds a different run \(changed: n_trials"):
        optimize(make_problem(), "random", output_dir=out, **{**kwargs, "n_trials": 2})


@pytest.mark.parametrize(
    ("min_budget", "max_budget", "eta", "lowest"),
    [(1, 9, 3, 3), (1, 9, 2, 2.25), (1, 27, 3, 3), (1, 3, 3, 1), (5, 9, 2, 5), (1, 4, 2, 2)],
)
def test_the_staged_rungs_start_at_two_epochs_or_more(min_budget, max_budget, eta, lowest) -> None:
    from safs_smac.search.staged import staged_min_budget

    search = type("S", (), {"min_budget": min_budget, "max_budget": max_budget, "eta": eta})()
    assert staged_min_budget(search) == lowest


def test_the_staged_main_job_runs_successive_halving_with_eta_2(make_problem, tmp_path) -> None:
    from safs_smac.search import multi_fidelity_defaults

    assert multi_fidelity_defaults("staged") == ("successive-halving", 2)
    assert multi_fidelity_defaults("joint") == ("hyperband", 3)
    problem = make_problem()
    out = tmp_path / "run"
    result = optimize(problem, "smac-mf", n_trials=8, max_budget=4, output_dir=out, progress=False)
    run = json.loads((out / "run.json").read_text())
    assert (run["intensifier"], run["eta"]) == ("successive-halving", 2)
    for stage in ("stage1", "stage2"):
        scenario = json.loads((out / stage / "smac" / "0" / "scenario.json").read_text())
        assert scenario["_meta"]["intensifier"]["name"] == "SuccessiveHalving"
        assert scenario["_meta"]["intensifier"]["eta"] == 2
    # Rungs of 2 and 4 epochs (a 4-epoch budget, eta 2, at least 2 epochs a rung).
    assert sorted(set(result.trials["budget"])) == [2.0, 4.0]


def test_an_unknown_intensifier_is_refused_before_anything_is_written(
    make_problem, tmp_path
) -> None:
    import subprocess
    import sys

    out = tmp_path / "run"
    refused = "intensifier must be one of hyperband, successive-halving"
    with pytest.raises(ValueError, match=refused):
        optimize(make_problem(), "smac-mf", intensifier="bohb", output_dir=out, progress=False)
    assert not out.exists()
    cli = [sys.executable, "-m", "safs_smac", "run", "--intensifier", "bohb"]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "--intensifier: invalid choice: 'bohb'" in done.stderr
    assert not (tmp_path / "safs_runs").exists()
