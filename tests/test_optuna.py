"""Optuna adapter: define-by-run sampling of conditional spaces, forbidden clauses, the study runner
(storage, resume, custom sampler and pruner, pruning by rungs), its SMAC/DeepCAVE files, and the
pruning benchmark's ``--quick`` mode.

optuna is part of the ``test`` extra: a missing one fails the collection on purpose, so CI cannot
silently skip the adapter.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pandas as pd
import pytest
from ConfigSpace import (
    AndConjunction,
    Categorical,
    Configuration,
    ConfigurationSpace,
    Constant,
    EqualsCondition,
    Float,
    ForbiddenAndConjunction,
    ForbiddenEqualsClause,
    InCondition,
    Integer,
    OrConjunction,
)
from optuna.trial import TrialState

from safs_smac.integrations.optuna import (
    CONFIG_ATTR,
    RUNGS_ATTR,
    ForbiddenConfigurationError,
    OptunaOptimizer,
    fine_tuning_epochs,
    run_optuna,
    study_runhistory,
    suggest_config,
)
from safs_smac.optimizers import load_runhistory, run_optimizer
from safs_smac.report import trials_dataframe
from safs_smac.space import load_space

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The trial cost is 1 - accuracy plus a loss tie-break below half a validation image (64 here).
TIE_BREAK = 0.5 / 64

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


# ---------------------------------------------------------------------- spaces
def flat_space() -> ConfigurationSpace:
    space = ConfigurationSpace(seed=0)
    space.add(
        [
            Categorical("act:a", ["relu", "tanh"]),
            Categorical("flag", [True, False]),
            Float("lr", (1e-4, 1e-1), log=True),
            Float("x", (0.0, 1.0)),
            Integer("n", (1, 8), log=True),
            Constant("c", "fixed"),
        ]
    )
    return space


def conditional_space() -> ConfigurationSpace:
    """Plain, AND and OR conditions and a conditional constant (the rules of the ``ft:`` part)."""
    space = ConfigurationSpace(seed=0)
    opt = Categorical("opt", ["sgd", "adam"])
    sched = Categorical("sched", ["constant", "cosine", "step"])
    momentum = Float("momentum", (0.0, 0.99))
    gain = Float("gain", (0.5, 2.0))
    warmup = Integer("warmup", (0, 5))
    beta2 = Float("beta2", (0.9, 0.999))
    tag = Constant("tag", "sgd-only")
    space.add([opt, sched, momentum, gain, warmup, beta2, tag])
    space.add(
        [
            EqualsCondition(momentum, opt, "sgd"),
            EqualsCondition(tag, opt, "sgd"),
            AndConjunction(
                EqualsCondition(gain, opt, "sgd"),
                InCondition(gain, sched, ["cosine", "step"]),
            ),
            OrConjunction(
                EqualsCondition(warmup, opt, "adam"), EqualsCondition(warmup, sched, "step")
            ),
            EqualsCondition(beta2, opt, "adam"),
        ]
    )
    return space


def expected_active(values: dict[str, Any]) -> set[str]:
    """The activity rules of :func:`conditional_space`, written out by hand."""
    active = {"opt", "sched"}
    if values["opt"] == "sgd":
        active |= {"momentum", "tag"}
        if values["sched"] in ("cosine", "step"):
            active.add("gain")
    else:
        active.add("beta2")
    if values["opt"] == "adam" or values["sched"] == "step":
        active.add("warmup")
    return active


# ---------------------------------------------------------------------- suggest_config
def test_suggest_config_maps_every_hyperparameter_to_optuna() -> None:
    space = flat_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = suggest_config(trial, space)
    assert isinstance(config, Configuration) and config["c"] == "fixed"
    dists = trial.distributions
    assert dists["lr"].log and not dists["x"].log
    assert isinstance(dists["n"], optuna.distributions.IntDistribution) and dists["n"].log
    assert dists["act:a"].choices == ("relu", "tanh") and dists["flag"].choices == (True, False)
    fixed = optuna.trial.FixedTrial({k: v for k, v in dict(config).items() if k != "c"})
    assert suggest_config(fixed, space) == config


def test_suggest_config_samples_conditional_spaces_define_by_run() -> None:
    space = conditional_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: set[frozenset[str]] = set()
    branches: set[tuple[str, str]] = set()
    for _ in range(60):
        trial = study.ask()
        config = suggest_config(trial, space)
        active = expected_active(dict(config))
        # Inactive hyperparameters are neither suggested to Optuna nor set in the configuration.
        assert set(config) == active
        assert set(trial.params) == active - {"tag"}  # a constant is fixed, not suggested
        study.tell(trial, 0.0)
        seen.add(frozenset(active))
        branches.add((config["opt"], config["sched"]))
    # Every branch was sampled (opt x sched), giving the 4 distinct sets of active names.
    assert len(branches) == 6 and len(seen) == 4
    # Replaying the active values alone rebuilds the configuration (FixedTrial refuses extras).
    last = study.trials[-1]
    assert suggest_config(optuna.trial.FixedTrial(last.params), space) == config


def test_suggest_config_samples_the_safs_space_with_its_ft_conditions(make_problem) -> None:
    space = make_problem().configspace  # ft:momentum is active for SGD only
    assert space.conditions
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    optimizers = set()
    for _ in range(12):
        trial = study.ask()
        config = suggest_config(trial, space)
        optimizers.add(config["ft:optimizer"])
        assert ("ft:momentum" in trial.params) == (config["ft:optimizer"] == "sgd")
        study.tell(trial, 0.0)
    assert "sgd" in optimizers and len(optimizers) > 1


def forbidden_space() -> ConfigurationSpace:
    space = ConfigurationSpace(seed=0)
    a = Categorical("a", ["x", "y"], default="x")
    b = Categorical("b", ["x", "y"], default="x")
    space.add([a, b, Float("z", (0.0, 1.0))])
    space.add(ForbiddenAndConjunction(ForbiddenEqualsClause(a, "y"), ForbiddenEqualsClause(b, "y")))
    return space


def test_suggest_config_names_the_forbidden_clause() -> None:
    space = forbidden_space()
    with pytest.raises(ForbiddenConfigurationError, match="forbidden.*a == 'y'"):
        suggest_config(optuna.trial.FixedTrial({"a": "y", "b": "y", "z": 0.5}), space)
    assert (
        suggest_config(optuna.trial.FixedTrial({"a": "y", "b": "x", "z": 0.5}), space)["a"] == "y"
    )


def test_optuna_optimizer_resamples_forbidden_configurations() -> None:
    optimizer = OptunaOptimizer(
        forbidden_space(), seed=0, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    asked = [optimizer.ask() for _ in range(20)]
    assert all((i.config["a"], i.config["b"]) != ("y", "y") for i in asked)
    failed = [t for t in optimizer.study.trials if t.state == TrialState.FAIL]
    assert failed, "a quarter of the random samples are forbidden; none was drawn"
    assert all(t.user_attrs["forbidden"] and "forbidden" in t.user_attrs["reason"] for t in failed)

    always = optuna.samplers.PartialFixedSampler(
        {"a": "y", "b": "y"}, optuna.samplers.RandomSampler(seed=0)
    )
    stuck = OptunaOptimizer(forbidden_space(), sampler=always, max_forbidden=3)
    with pytest.raises(RuntimeError, match="3 samples in a row violated"):
        stuck.ask()


def test_optuna_optimizer_tells_crashes_as_failed_trials() -> None:
    space = flat_space()
    optimizer = OptunaOptimizer(space, seed=1)

    def target(config: Any, seed: int = 0) -> float:
        if config["act:a"] == "tanh":
            raise RuntimeError("boom")
        return float(config["x"])

    runhistory = run_optimizer(optimizer, target, n_trials=8)
    states = [t.state for t in optimizer.study.trials]
    assert len(runhistory) == 8 and len(states) == 8
    crashed = [v.status.name == "CRASHED" for v in runhistory.values()]
    assert [s == TrialState.FAIL for s in states] == crashed
    assert optimizer.meta["sampler"] == "TPESampler"


# ---------------------------------------------------------------------- run_optuna
def counting(problem: Any) -> list[tuple[int, float | None]]:
    """Wrap ``problem.train`` to record each call's ``(seed, budget)``."""
    calls: list[tuple[int, float | None]] = []
    train = problem.train

    def wrapped(config: Any, seed: int = 0, budget: float | None = None) -> Any:
        calls.append((seed, budget))
        return train(config, seed=seed, budget=budget)

    problem.train = wrapped
    return calls


def test_run_optuna_returns_the_study_records_a_runhistory_and_resumes(
    make_problem, tmp_path: Path
) -> None:
    problem = make_problem(max_budget=1)  # the conditional SAFS space
    output = tmp_path / "compare"
    study = run_optuna(problem, n_trials=3, seed=0, output_dir=output)
    assert isinstance(study, optuna.study.Study)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    path = output / "optuna" / "0" / "runhistory.json"
    assert path.is_file() and (path.parent / "study.journal").is_file()
    space = load_space(path.parent / "configspace.json")
    assert space == problem.configspace
    frame = trials_dataframe(load_runhistory(path, space))
    assert len(frame) == 3 and frame["val_accuracy"].notna().all()
    assert (frame["budget"] == 1.0).all()
    assert ((frame["cost"] - (1.0 - frame["val_accuracy"])).abs() < TIE_BREAK).all()
    # Each trial's value is its cost; inactive hyperparameters are absent from the stored config.
    for trial, row in zip(study.trials, frame.itertuples()):
        assert trial.value == pytest.approx(row.cost)
        config = trial.user_attrs[CONFIG_ATTR]
        assert ("ft:momentum" in config) == (config["ft:optimizer"] == "sgd")

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a resumed trial was evaluated again")

    problem.train = no_training  # type: ignore[method-assign]
    again = run_optuna(problem, n_trials=3, seed=0, output_dir=output)  # nothing left to run
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    with pytest.raises(ValueError, match="different Optuna run"):
        run_optuna(make_problem(max_budget=2), n_trials=1, output_dir=output)
    # overwrite starts afresh: the old study is gone with the old run.
    fresh = run_optuna(make_problem(max_budget=2), n_trials=1, output_dir=output, overwrite=True)
    assert len(fresh.trials) == 1 and fresh.trials[0].intermediate_values == {
        2: fresh.trials[0].value
    }


def test_run_optuna_resumes_a_study_in_sqlite_storage(make_problem, tmp_path: Path) -> None:
    problem = make_problem(max_budget=1, flat=True)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    first = run_optuna(
        problem, n_trials=2, output_dir=tmp_path / "run", storage=storage, study_name="shared"
    )
    params = [t.params for t in first.trials]
    calls = counting(problem)
    second = run_optuna(
        problem, n_trials=4, output_dir=tmp_path / "run", storage=storage, study_name="shared"
    )
    assert len(calls) == 2  # only the two new trials were trained
    assert [t.number for t in second.trials] == [0, 1, 2, 3]
    assert [t.params for t in second.trials[:2]] == params
    # The re-created default sampler does not repeat the first call's random start-up samples.
    assert second.trials[2].params != params[0]
    loaded = optuna.load_study(study_name="shared", storage=storage)
    assert len(loaded.trials) == 4
    assert not (tmp_path / "run" / "optuna" / "0" / "study.journal").exists()
    runhistory = json.loads((tmp_path / "run" / "optuna" / "0" / "runhistory.json").read_text())
    assert len(runhistory["data"]) == 4
    # Another run aimed at the same study is refused, like one aimed at the same directory.
    with pytest.raises(ValueError, match="study 'shared' in the storage holds a different"):
        run_optuna(
            make_problem(max_budget=2, flat=True),
            n_trials=1,
            output_dir=tmp_path / "elsewhere",
            storage=storage,
            study_name="shared",
        )


class PruneAfterFirstRung(optuna.pruners.BasePruner):
    """Prunes every trial but the first at its first report; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int | None]] = []

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self.asked.append((trial.number, trial.last_step))
        return trial.number > 0


def test_run_optuna_uses_the_given_sampler_and_pruner(make_problem, tmp_path: Path) -> None:
    problem = make_problem(max_budget=3, flat=True)
    calls = counting(problem)
    pruner = PruneAfterFirstRung()
    sampler = optuna.samplers.RandomSampler(seed=3)
    study = run_optuna(
        problem, n_trials=3, seed=5, output_dir=tmp_path, sampler=sampler, pruner=pruner
    )
    assert study.sampler is sampler and study.pruner is pruner
    # Default rungs with a pruner: every epoch. Trial 0 ran all three, the others were pruned.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] + [TrialState.PRUNED] * 2
    steps = [sorted(t.intermediate_values) for t in study.trials]
    assert steps == [[1, 2, 3], [1], [1]]
    assert calls == [(5, 1), (5, 2), (5, 3), (5, 1), (5, 1)]
    assert pruner.asked == [(0, 1), (0, 2), (1, 1), (2, 1)]  # never after the last rung
    # Epochs run: what the problem reported for each call (1 + 2 + 3 for trial 0 when each call
    # retrains from scratch, 1 + 1 + 1 with budget continuation); and the budget reached.
    reported = [sum(r["info"]["epochs"] for r in t.user_attrs[RUNGS_ATTR]) for t in study.trials]
    assert [t.user_attrs["epochs_run"] for t in study.trials] == reported
    assert reported[1:] == [1, 1] and reported[0] in (3, 6)
    assert [t.user_attrs["budget_reached"] for t in study.trials] == [3, 1, 1]
    assert fine_tuning_epochs(study) == {"run": sum(reported), "with_continuation": 5}
    assert study.trials[1].value == study.trials[1].intermediate_values[1]
    # The run history has one entry per evaluated rung; a pruned trial's last one says so.
    frame = trials_dataframe(study_runhistory(study, problem.configspace))
    assert sorted(frame["budget"]) == [1.0, 1.0, 1.0, 2.0, 3.0]
    runhistory = json.loads((tmp_path / "optuna" / "5" / "runhistory.json").read_text())
    pruned = [e for e in runhistory["data"] if e["additional_info"]["pruned"]]
    assert [(e["budget"], e["additional_info"]["optuna_trial"]) for e in pruned] == [
        (1.0, 1),
        (1.0, 2),
    ]


def test_run_optuna_rungs_are_checked(make_problem, tmp_path: Path) -> None:
    problem = make_problem(max_budget=3, flat=True)
    calls = counting(problem)
    study = run_optuna(problem, n_trials=1, output_dir=tmp_path, rungs=[2])  # max budget added
    assert sorted(study.trials[0].intermediate_values) == [2, 3]
    assert [budget for _, budget in calls] == [2, 3]
    for bad in ([], [2, 1], [0, 3], [1, 4], [1.5]):
        with pytest.raises(ValueError, match="rungs must be increasing"):
            run_optuna(problem, n_trials=1, output_dir=tmp_path / "bad", rungs=bad)


def test_run_optuna_fails_crashes_and_forbidden_samples_and_goes_on(
    make_problem, tmp_path: Path
) -> None:
    problem = make_problem(max_budget=1, flat=True)
    train = problem.train

    def crash_on_sgd(config: Any, seed: int = 0, budget: float | None = None) -> Any:
        if config["ft:optimizer"] == "sgd":
            raise RuntimeError("sgd is broken today")
        return train(config, seed=seed, budget=budget)

    problem.train = crash_on_sgd
    # A space with a forbidden clause: no AdamW. SAFSProblem.with_space builds the space
    # variants; a forbidden clause is added by hand here, as a user of the space could.
    space = copy.deepcopy(problem.configspace)
    space.add(ForbiddenEqualsClause(space["ft:optimizer"], "adamw"))
    problem = copy.copy(problem)
    problem._space = space
    sampler = optuna.samplers.RandomSampler(seed=2)
    study = run_optuna(problem, n_trials=6, output_dir=tmp_path, sampler=sampler)
    forbidden = [t for t in study.trials if t.user_attrs.get("forbidden")]
    crashed = [t for t in study.trials if t.state == TrialState.FAIL and t not in forbidden]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert forbidden and crashed and complete, "seed 2 samples every optimizer; check the seed"
    assert len(crashed) + len(complete) == 6  # forbidden samples do not count
    assert all(t.params["ft:optimizer"] == "adamw" for t in forbidden)
    assert all(RUNGS_ATTR not in t.user_attrs for t in forbidden)  # never trained
    assert all("sgd is broken today" in t.user_attrs["reason"] for t in crashed)
    runhistory = json.loads((tmp_path / "optuna" / "0" / "runhistory.json").read_text())
    statuses = sorted(e["status"] for e in runhistory["data"])
    assert statuses == sorted([1] * len(complete) + [2] * len(crashed))  # SUCCESS, CRASHED
    crash = next(e for e in runhistory["data"] if e["status"] == 2)
    assert math.isinf(crash["cost"]) and "RuntimeError" in crash["additional_info"]["error"]


def test_run_optuna_directory_has_what_deepcaves_smac3v2_converter_reads(
    make_problem, tmp_path: Path
) -> None:
    """The fields ``deepcave.runs.converters.smac3v2.SMAC3v2Run.from_path`` (DeepCAVE 1.4.1) reads.

    ``ConfigurationSpace.from_json(path / "configspace.json")``; ``scenario.json``'s
    ``objectives`` and ``seed``; ``runhistory.json``'s ``data`` (rows of config_id, instance,
    seed, budget, cost, time, cpu_time, status, starttime, endtime, additional_info: 10 or 11
    items), ``configs`` (by config id) and ``config_origins``; one instance at most.
    DeepCAVE itself needs Python < 3.11, so it is not installed here (see the README).
    """
    problem = make_problem(max_budget=2)
    run_optuna(problem, n_trials=2, output_dir=tmp_path, pruner=optuna.pruners.MedianPruner())
    run_dir = tmp_path / "optuna" / "0"
    space = ConfigurationSpace.from_json(run_dir / "configspace.json")
    assert space == problem.configspace
    scenario = json.loads((run_dir / "scenario.json").read_text())
    assert scenario["objectives"] == "cost" and scenario["seed"] == 0
    assert scenario["min_budget"] == 1 and scenario["max_budget"] == 2
    runhistory = json.loads((run_dir / "runhistory.json").read_text())
    rows = runhistory["data"]
    assert len(rows) == 4  # two trials x rungs 1, 2 (MedianPruner prunes nothing before 5 trials)
    for row in rows:
        values = list(row.values()) if isinstance(row, dict) else row
        assert len(values) in (10, 11)
        config_id, instance, seed, budget = values[:4]
        assert str(config_id) in runhistory["configs"]
        assert str(config_id) in runhistory["config_origins"]
        assert instance is None and seed == 0 and budget in (1.0, 2.0)
        Configuration(space, values=runhistory["configs"][str(config_id)])


# ---------------------------------------------------------------------- benchmark
def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_optuna_pruning_benchmark_quick(tmp_path: Path) -> None:
    bench = load_script("optuna_pruning")
    results = tmp_path / "results"
    argv = ["--quick", "--work-dir", str(tmp_path / "work"), "--results-dir", str(results)]
    assert bench.main([*argv, "--cache-dir", str(tmp_path / "cache")]) == 0
    runs = pd.read_csv(results / "runs.csv")
    assert list(runs.columns) == bench.COLUMNS
    assert list(runs["pruner"]) == ["none", "median"] and (runs["n_trials"] == 6).all()
    none, median = runs.iloc[0], runs.iloc[1]
    # Without pruning one call per trial at the max budget (3): both counts are 6 x 3.
    assert none.epochs_run == none.epochs_with_continuation == 18
    # Rungs 1, 2, 3: a completed trial runs 1 + 2 + 3 epochs when each rung retrains from
    # scratch, 3 with continuation; a pruned one fewer.
    assert median.n_trials <= median.epochs_with_continuation <= none.epochs_with_continuation
    assert median.epochs_with_continuation <= median.epochs_run <= 2 * none.epochs_run
    assert runs["best_val_accuracy"].between(0, 1).all()
    assert "| mean | median |" in (results / "table.md").read_text()
    assert json.loads((results / "meta.json").read_text())["rungs"] == [1, 2, 3]


def test_optuna_tpe_benchmark_writes_trials(tmp_path: Path) -> None:
    bench = load_script("optuna_tpe")
    out = tmp_path / "run"
    bench.main(
        [
            "--dataset",
            "synthetic",
            "--n-trials",
            "2",
            "--max-budget",
            "1",
            "--dense-epochs",
            "1",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output-dir",
            str(out),
            "--no-final",
        ]
    )
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 2 and frame["val_accuracy"].between(0, 1).all()
