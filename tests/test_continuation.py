"""Budget continuation: a promoted trial continues from the state its lower rung left behind."""

from __future__ import annotations

import copy
import io
import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from safs_smac import smac_compat
from safs_smac.cache import CheckpointCache
from safs_smac.data import load_dataset
from safs_smac.models import create_model
from safs_smac.report import format_table, work_summary
from safs_smac.training import FitState, Recipe, fit

SYNTHETIC = {"n_train": 128, "n_val": 64, "n_test": 64, "num_classes": 4, "channels": 1, "size": 28}


def _config(problem: Any, **changes: Any) -> Any:
    """The default configuration with a schedule that depends on its horizon (cosine + SGD)."""
    from ConfigSpace import Configuration

    values = {
        **dict(problem.configspace.get_default_configuration()),
        "ft:optimizer": "sgd",
        "ft:scheduler": "cosine",
        "ft:lr": 0.05,
        "ft:momentum": 0.9,
        **changes,
    }
    return Configuration(problem.configspace, values=values)


def _other_operator(problem: Any, site: str) -> str:
    # Not relu6: below 6 it is relu, so on this tiny problem it trains identically.
    choices = problem.configspace[f"act:{site}"].choices
    return next(op for op in ("tanh", "swish") if op in choices)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _states(problem: Any) -> list[Path]:
    folder = problem.cache_dir / problem._continuation_namespace()
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


# ------------------------------------------------------------------------------------------ fit


@pytest.mark.parametrize(
    ("scheduler", "optimizer"),
    [("cosine", "sgd"), ("onecycle", "adam"), ("step", "sgd"), ("plateau", "adamw")],
)
def test_fit_continued_from_a_saved_state_equals_one_fit_bit_for_bit(
    scheduler: str, optimizer: str
) -> None:
    data = load_dataset("synthetic", **SYNTHETIC)
    torch.manual_seed(0)
    start = create_model("lenet5", num_classes=4, in_channels=1, input_size=28)
    recipe = Recipe(
        batch_size=32, optimizer=optimizer, scheduler=scheduler, step_size=1, patience=0
    )
    whole = copy.deepcopy(start)
    one = fit(whole, data, recipe, epochs=4, horizon=4, device="cpu", seed=3)
    part = copy.deepcopy(start)
    first = fit(part, data, recipe, epochs=1, horizon=4, device="cpu", seed=3, keep_state=True)
    assert first.state is not None and first.state.epochs == 1
    buffer = io.BytesIO()  # through bytes, as the disk cache stores it
    torch.save(first.state.to_dict(), buffer)
    state = FitState.from_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    rest = copy.deepcopy(start)  # other starting weights are overwritten by the state's
    second = fit(rest, data, recipe, epochs=4, horizon=4, device="cpu", seed=3, resume=state)
    assert (second.start_epoch, second.epochs_run, one.epochs_run) == (1, 3, 4)
    assert [h["lr"] for h in second.history] == [h["lr"] for h in one.history[1:]]
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in one.history[1:]]
    assert second.final_val_accuracy == one.final_val_accuracy
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, rest.state_dict()[name]), name


def test_fit_refuses_a_state_of_another_seed_horizon_or_a_longer_fit() -> None:
    data = load_dataset("synthetic", **SYNTHETIC)
    model = create_model("mlp", num_classes=4, in_channels=1, input_size=28)
    recipe = Recipe(batch_size=64, scheduler="cosine")
    state = fit(model, data, recipe, epochs=2, horizon=3, device="cpu", keep_state=True).state
    for kwargs in ({"seed": 1}, {"horizon": 4}, {"epochs": 1}):
        settings = {"epochs": 3, "horizon": 3, "seed": 0, **kwargs}
        with pytest.raises(ValueError, match="cannot continue"):
            fit(model, data, recipe, device="cpu", resume=state, **settings)
    with pytest.raises(ValueError, match="horizon"):
        fit(model, data, recipe, epochs=3, horizon=2, device="cpu")


def test_a_short_fit_is_the_start_of_the_full_schedule() -> None:
    data = load_dataset("synthetic", **SYNTHETIC)
    recipe = Recipe(batch_size=64, scheduler="cosine", lr=0.1)
    short = fit(create_model("mlp", num_classes=4), data, recipe, epochs=1, horizon=9)
    full = fit(create_model("mlp", num_classes=4), data, recipe, epochs=2, horizon=9)
    assert short.history[0]["lr"] == full.history[0]["lr"] == 0.1
    # Epoch 2 of a cosine over 9 epochs; over 2 epochs (the budget) it would be 0.05.
    assert 0.09 < full.history[1]["lr"] < 0.1


# ------------------------------------------------------------------------------------ problem


def test_continued_trial_equals_a_scratch_trial_bit_for_bit(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3)
    scratch = make_problem(pruning_rate=0.5, max_budget=3, continue_trials=False)
    config = _config(problem)
    spec = problem.decode(config)
    assert spec.learn_scales  # the scales alpha and beta are trained and must be carried over

    _, info1 = problem.train(config, seed=4, budget=1)
    assert (info1["epochs"], info1["resumed_from"]) == (1, 0)
    model, info2 = problem.finetune(spec, seed=4, epochs=2, continuation=True)
    assert (info2["epochs"], info2["resumed_from"]) == (1, 1)
    reference, expected = scratch.finetune(spec, seed=4, epochs=2)
    assert expected["epochs"] == 2 and expected["resumed_from"] == 0
    for key in ("val_accuracy", "val_loss", "dnr", "sparsity"):
        assert info2[key] == expected[key], key
    weights, reference_weights = _weights(model), _weights(reference)
    assert weights.keys() == reference_weights.keys()
    assert any(".alpha" in name for name in weights)
    for name, tensor in reference_weights.items():
        assert torch.equal(weights[name], tensor), name

    cost3, info3 = problem.train(config, seed=4, budget=3)
    expected_cost, expected3 = scratch.train(config, seed=4, budget=3)
    assert (info3["epochs"], info3["resumed_from"]) == (1, 2)
    assert cost3 == expected_cost and info3["val_loss"] == expected3["val_loss"]


def test_continuation_keeps_one_state_per_config_and_seed_and_none_at_max_budget(
    make_problem,
) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3)
    config = _config(problem)
    problem.train(config, seed=0, budget=1)
    problem.train(config, seed=1, budget=1)  # another seed is another trial
    assert len(_states(problem)) == 2
    problem.train(config, seed=0, budget=2)
    states = _states(problem)
    assert len(states) == 2
    epochs = sorted(torch.load(path, weights_only=False)["epochs"] for path in states)
    assert epochs == [1, 2]  # the state at budget 1 of seed 0 was replaced, not kept beside
    _, info = problem.train(config, seed=0, budget=3)
    assert info["resumed_from"] == 2
    assert len(_states(problem)) == 1  # nothing continues past max_budget
    # A lower budget after a higher one starts from scratch and leaves the longer state alone.
    problem.train(config, seed=1, budget=2)
    _, info = problem.train(config, seed=1, budget=1)
    assert info["resumed_from"] == 0
    assert [torch.load(p, weights_only=False)["epochs"] for p in _states(problem)] == [2]


def test_continuation_off_runs_every_epoch_and_saves_nothing(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3, continue_trials=False)
    config = _config(problem)
    problem.train(config, seed=0, budget=1)
    _, info = problem.train(config, seed=0, budget=2)
    assert (info["epochs"], info["resumed_from"]) == (2, 0)
    assert _states(problem) == [] and problem.continuation_bytes() == 0


def test_release_continuations_deletes_the_runs_states(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3)
    config = _config(problem)
    problem.train(config, seed=0, budget=1)
    size = problem.continuation_bytes()
    assert size > 0
    assert problem.release_continuations() == size
    assert problem.continuation_bytes() == 0
    assert not (problem.cache_dir / problem._continuation_namespace()).exists()
    assert problem.release_continuations() == 0
    # The dense and pruned checkpoints stay; the next promotion starts from scratch.
    assert any((problem.cache_dir / "pruned").glob("*.pt"))
    _, info = problem.train(config, seed=0, budget=2)
    assert info["resumed_from"] == 0


def test_byte_cap_evicts_the_least_recently_used_states(make_problem) -> None:
    probe = make_problem(pruning_rate=0.5, max_budget=3)
    probe.train(_config(probe), seed=0, budget=1)
    one_state = probe.continuation_bytes()
    probe.release_continuations()

    cap = int(2.5 * one_state)
    problem = make_problem(pruning_rate=0.5, max_budget=3, continuation_max_bytes=cap)
    configs = [_config(problem, **{"ft:lr": lr}) for lr in (0.01, 0.02, 0.03)]
    seen: set[Path] = set()
    for seed, config in enumerate(configs[:2]):
        problem.train(config, seed=seed, budget=1)
        (new,) = set(_states(problem)) - seen
        seen.add(new)
        # File times can be coarse: make the order of use unambiguous.
        os.utime(new, ns=((seed + 1) * 10**9, (seed + 1) * 10**9))
    assert len(_states(problem)) == 2
    problem.train(configs[2], seed=2, budget=1)  # third state: over the cap
    assert problem.continuation_bytes() <= problem.continuation_max_bytes
    assert len(_states(problem)) == 2
    # The oldest (config 0) went: its promotion starts from scratch, the others continue.
    assert problem.train(configs[0], seed=0, budget=2)[1]["resumed_from"] == 0
    assert problem.train(configs[2], seed=2, budget=2)[1]["resumed_from"] == 1


def test_cache_evict_keeps_the_recently_fetched_entries(tmp_path: Path) -> None:
    cache = CheckpointCache(tmp_path)
    for index in range(3):
        cache.store("continuation/ns", {"i": index}, {"x": torch.zeros(1000)})
        payload, _ = cache.paths("continuation/ns", {"i": index})
        os.utime(payload, ns=(index * 10**9, index * 10**9))
    size = cache.size("continuation")
    assert cache.fetch("continuation/ns", {"i": 0}) is not None  # used now: most recent
    assert cache.evict("continuation", max_bytes=size * 2 // 3) == 1
    assert cache.fetch("continuation/ns", {"i": 1}) is None  # least recently used
    assert cache.fetch("continuation/ns", {"i": 0}) is not None
    assert cache.fetch("continuation/ns", {"i": 2}) is not None
    assert cache.remove("continuation/ns", {"i": 2})
    assert not cache.remove("continuation/ns", {"i": 2})
    assert cache.evict("continuation", max_bytes=0) == 1 and cache.size("continuation") == 0


def test_continued_trials_report_fewer_epochs_run_in_the_work_summary(make_problem) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3)
    config = _config(problem)
    rows = []
    for index, budget in enumerate((1.0, 3.0)):
        _, info = problem.train(config, seed=0, budget=budget)
        rows.append(
            {"budget": budget, "starttime": index, "endtime": index + 1, "seconds": 0.5, **info}
        )
    work = work_summary(pd.DataFrame(rows))
    assert work["epochs_budgeted"] == 4 and work["epochs_run"] == 3
    assert work["epochs_continued"] == 1 and work["trials_continued"] == 1
    table = format_table({"work": work})
    assert "3 fine-tuning epochs run of 4 budgeted" in table
    assert "1 promoted or revisited trial(s) continued" in table
    # Results written before continuation have no resumed_from column: nothing was continued.
    old = work_summary(pd.DataFrame(rows).drop(columns="resumed_from"))
    assert old["epochs_continued"] == 0 and old["trials_continued"] == 0


def test_run_identity_records_the_schedule_horizon(make_problem) -> None:
    # Older runs (schedules over the trial's budget) lack the key, so resuming one is refused.
    assert make_problem().settings()["schedule_horizon"] == "max_budget"
    assert "continue_trials" not in make_problem().settings()  # same results either way


def _continue_in_process(settings: dict[str, Any], config: dict[str, Any], out: str) -> None:
    from ConfigSpace import Configuration

    from safs_smac.problem import SAFSProblem

    torch.set_num_threads(1)
    problem = SAFSProblem("lenet5", "synthetic", **settings)
    configuration = Configuration(problem.configspace, values=config)
    problem.train(configuration, seed=0, budget=1)
    cost, info = problem.train(configuration, seed=0, budget=2)
    Path(out).write_text(json.dumps({"cost": cost, **info}))


@pytest.mark.slow  # two spawned interpreters import torch
def test_trials_of_two_configs_in_two_processes_continue_their_own_states(
    make_problem, tmp_path: Path
) -> None:
    problem = make_problem(pruning_rate=0.5, max_budget=3)
    problem.pruned_checkpoint()  # built once here, not raced for by the children
    site = problem.sites[0]
    configs = [
        dict(_config(problem)),
        dict(_config(problem, **{f"act:{site}": _other_operator(problem, site)})),
    ]
    settings = {
        "dataset_kwargs": SYNTHETIC,
        "dense_epochs": 1,
        "pruning_rate": 0.5,
        "max_budget": 3,
        "cache_dir": str(problem.cache_dir),
        "device": "cpu",
        "dnr_probe_size": 32,
    }
    ctx = mp.get_context("spawn")
    outs = [tmp_path / f"out{index}.json" for index in range(2)]
    procs = [
        ctx.Process(target=_continue_in_process, args=(settings, config, str(out)))
        for config, out in zip(configs, outs)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
        assert proc.exitcode == 0
    scratch = make_problem(pruning_rate=0.5, max_budget=3, continue_trials=False)
    from ConfigSpace import Configuration

    results = [json.loads(out.read_text()) for out in outs]
    for config, result in zip(configs, results):
        assert (result["epochs"], result["resumed_from"]) == (1, 1)
        cost, info = scratch.train(Configuration(scratch.configspace, values=config), 0, 2)
        assert result["cost"] == cost and result["val_loss"] == info["val_loss"]
    assert results[0]["cost"] != results[1]["cost"]  # two different trials, not one shared
    assert len(_states(problem)) == 2


@pytest.mark.slow  # three tiny main jobs per seed
def test_benchmark_quick_runs_the_main_job_before_and_now(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "continuation.py"
    spec = importlib.util.spec_from_file_location("continuation_benchmark", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "out"
    argv = ["--quick", "--seeds", "2", "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main([*argv, "--arms", "before,now,now-off"]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 6 and set(runs["arm"]) == {"before", "now", "now-off"}
    before, now, off = (
        runs[runs["arm"] == arm].set_index("seed").sort_index()
        for arm in ("before", "now", "now-off")
    )
    assert (before["epochs_run"] == before["epochs_budgeted"]).all()
    assert (off["epochs_run"] == off["epochs_budgeted"]).all()
    assert (now["epochs_budgeted"] == off["epochs_budgeted"]).all()
    # Promotions happened and continued; the search itself is the same, trial for trial.
    assert (now["trials_continued"] > 0).all() and (now["epochs_run"] < off["epochs_run"]).all()
    assert (now["epochs_run"] + now["epochs_continued"] == now["epochs_budgeted"]).all()
    assert (now["trials_key"] == off["trials_key"]).all()
    assert (now["val_accuracy"] == off["val_accuracy"]).all()
    table = (out / "table.md").read_text()
    assert "now vs before: paired Wilcoxon p" in table
    assert "same trials with the same costs in 2 of 2 seed(s)" in table
    # The SMAC patches are back on after the "before" arm turned them off.
    assert all(smac_compat.SURROGATE_PATCHES.values())
    assert not any((tmp_path / "work" / "cache").glob("continuation/*/*.pt"))
