"""Benchmark-suite integrations: CARP-S (real package), HPOBench-style interface.

carps is part of the ``test`` extra: a missing one fails the collection on purpose, so CI cannot
silently skip the integrations. Optuna's adapter is tested in ``test_optuna.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from carps.objective_functions.objective_function import ObjectiveFunction
from carps.utils.loggingutils import CustomEncoder
from carps.utils.task import (
    FidelitySpace,
    InputSpace,
    OptimizationResources,
    OutputSpace,
    Task,
    TaskMetadata,
    get_search_space_info,
)
from carps.utils.trials import TrialInfo, TrialValue
from carps_configs import compose
from ConfigSpace import (
    Categorical,
    ConfigurationSpace,
    Constant,
    EqualsCondition,
    Float,
    ForbiddenEqualsClause,
)

from safs_smac.integrations import require
from safs_smac.integrations.carps import (
    LAHCOptimizer,
    SAFSObjectiveFunction,
    SafsOptimizer,
    make_task,
    string_booleans,
)
from safs_smac.integrations.hpobench import SAFSBenchmark
from safs_smac.optimizers import LAHC, run_optimizer

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "safs_smac" / "configs"
TASKS = sorted(p.stem for p in (CONFIG_DIR / "task" / "SAFS").glob("*.yaml"))

# The trial cost is 1 - accuracy plus a loss tie-break below half a validation image (64 here).
TIE_BREAK = 0.5 / 64


# ---------------------------------------------------------------------- helpers
def toy_space() -> ConfigurationSpace:
    space = ConfigurationSpace(seed=0)
    space.add(
        [
            Categorical("act:a", ["relu", "tanh", "gelu", "swish"], default="relu"),
            Float("x", (-1.0, 1.0), default=0.5),
        ]
    )
    return space


TOY_OPERATOR_COST = {"relu": 0.3, "tanh": 0.2, "gelu": 0.1, "swish": 0.4}


def toy_cost(config: Any) -> float:
    return TOY_OPERATOR_COST[config["act:a"]] + float(config["x"]) ** 2


class ToyObjective(ObjectiveFunction):
    """A cheap CARP-S objective that records what it was asked."""

    def __init__(self, space: ConfigurationSpace, cost: Callable[[Any], float]) -> None:
        super().__init__()
        self._space = space
        self._cost = cost
        self.calls: list[tuple[dict[str, Any], float | None]] = []

    @property
    def configspace(self) -> ConfigurationSpace:
        return self._space

    def _evaluate(self, trial_info: TrialInfo) -> TrialValue:
        self.calls.append((dict(trial_info.config), trial_info.budget))
        return TrialValue(cost=self._cost(trial_info.config))


def toy_task(
    n_trials: int,
    *,
    multi_fidelity: bool = False,
    space: ConfigurationSpace | None = None,
    cost: Callable[[Any], float] = toy_cost,
    objectives: tuple[str, ...] = ("quality",),
) -> Task:
    objective = ToyObjective(toy_space() if space is None else space, cost)
    fidelity = FidelitySpace(True, "epochs", 1, 9) if multi_fidelity else FidelitySpace(False)
    return Task(
        name="toy",
        objective_function=objective,
        input_space=InputSpace(objective.configspace, fidelity),
        output_space=OutputSpace(n_objectives=len(objectives), objectives=objectives),
        optimization_resources=OptimizationResources(n_trials=n_trials),
        metadata=TaskMetadata(),
        seed=3,
    )


# ---------------------------------------------------------------------- packaging
def test_optional_tools_are_not_imported_by_the_package() -> None:
    code = (
        "import sys, safs_smac, safs_smac.integrations\n"
        "print(sorted(m for m in ('carps', 'optuna', 'hydra') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module, extra", [("carps", "carps"), ("optuna", "optuna")])
def test_a_missing_extra_names_the_install_command(module: str, extra: str) -> None:
    code = f"import sys; sys.modules[{module!r}] = None\nimport safs_smac.integrations.{module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert f'pip install "safs-smac[{extra}]"' in result.stderr
    with pytest.raises(ImportError, match=r'pip install "safs-smac\[foo\]"'):
        require("safs_smac_no_such_module", "foo")


def test_hydra_finds_the_configs_as_a_package() -> None:
    # Hydra's pkg:// source only searches importable packages (it looks for __init__.py).
    assert (CONFIG_DIR / "__init__.py").is_file()
    assert {"lenet5_synthetic", "lenet5_mnist-5k", "vgg16_cifar10_mf"} <= set(TASKS)
    assert len(TASKS) == 28  # 7 settings x (black-box, multi-fidelity) x (layer, network)
    cfg = compose("+optimizer/safs=lahc", "+task/SAFS=lenet5_synthetic")
    assert cfg.optimizer._target_ == "safs_smac.integrations.carps.LAHCOptimizer"


# ---------------------------------------------------------------------- CARP-S objective
def test_objective_reports_cost_time_and_the_targets_info(make_problem) -> None:
    objective = SAFSObjectiveFunction(make_problem())  # max_budget 2
    config = objective.configspace.get_default_configuration()
    value = objective.evaluate(TrialInfo(config=config, budget=1.0, seed=7))
    info = value.additional_info
    assert info["epochs"] == 1
    assert value.cost == pytest.approx(1.0 - info["val_accuracy"], abs=TIE_BREAK)
    assert 0 < value.time == pytest.approx(value.endtime - value.starttime)
    assert {"sparsity", "dnr_mean", "diverged"} <= set(info)
    assert info["seed"] == 0  # trial_seed=0: one deterministic function for every optimizer
    assert objective.n_trials == 1

    full = objective.evaluate(TrialInfo(config=config))  # no budget: the problem's max
    # The same configuration and seed at budget 1 ran already: the trial continues from it.
    assert full.additional_info["epochs"] + full.additional_info["resumed_from"] == 2
    noisy = SAFSObjectiveFunction(make_problem(), trial_seed=None)
    assert noisy.seed_for(TrialInfo(config=config, seed=7)) == 7
    assert noisy.seed_for(TrialInfo(config=config)) == 0


def test_objective_space_is_json_safe_and_keeps_the_condition(make_problem) -> None:
    problem = make_problem()
    objective = SAFSObjectiveFunction(problem)
    space = objective.configspace
    assert list(space) == list(problem.configspace)
    assert space["ft:learn_scales"].choices == ("true", "false")
    assert space.conditions and str(space.conditions[0]) == str(problem.configspace.conditions[0])
    for config in space.sample_configuration(20):
        json.dumps(list(dict(config).values()), cls=CustomEncoder)  # CARP-S's file logger
        assert problem.decode(config).learn_scales is (config["ft:learn_scales"] == "true")


def test_string_booleans_rewrites_conditions_and_forbiddens() -> None:
    space = ConfigurationSpace()
    flag = Categorical("flag", [True, False], default=True)
    child = Float("child", (0.0, 1.0))
    other = Categorical("other", ["a", "b"])
    space.add([flag, child, other, EqualsCondition(child, flag, True)])
    space.add(ForbiddenEqualsClause(flag, False))
    converted = string_booleans(space)
    assert converted["flag"].choices == ("true", "false")
    assert converted["flag"].default_value == "true"
    assert converted.conditions[0].value == "true"
    assert converted.forbidden_clauses[0].value == "false"
    plain = ConfigurationSpace()
    plain.add(other)
    assert string_booleans(plain) is plain


def test_objective_refuses_a_problem_and_kwargs_together(make_problem) -> None:
    with pytest.raises(ValueError, match="either a SAFSProblem or its keyword arguments"):
        SAFSObjectiveFunction(make_problem(), model="lenet5")
    with pytest.raises(ValueError, match="trial_seed"):
        SAFSObjectiveFunction(make_problem(), trial_seed=-1)


def test_make_task_black_box_and_multi_fidelity(make_problem) -> None:
    problem = make_problem(max_budget=3)
    black_box = make_task(problem, n_trials=5)
    assert not black_box.input_space.fidelity_space.is_multifidelity
    assert black_box.name == "lenet5_synthetic"
    assert black_box.metadata.dimensions == len(problem.configspace)
    assert black_box.metadata.search_space_has_conditionals
    multi = make_task(problem, n_trials=5, multi_fidelity=True, min_budget=1)
    fidelity = multi.input_space.fidelity_space
    assert (fidelity.fidelity_type, fidelity.min_fidelity, fidelity.max_fidelity) == (
        "epochs",
        1,
        3,
    )
    with pytest.raises(ValueError, match="min_budget"):
        make_task(problem, n_trials=5, multi_fidelity=True, min_budget=4)
    with pytest.raises(ValueError, match="n_trials or time_budget"):
        make_task(problem)


@pytest.mark.parametrize("name", TASKS)
def test_shipped_task_configs_match_their_objective(name: str, monkeypatch) -> None:
    from hydra.utils import instantiate

    built: list[SAFSObjectiveFunction] = []
    original_init = SAFSObjectiveFunction.__init__

    def counting_init(self, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(SAFSObjectiveFunction, "__init__", counting_init)
    cfg = compose(f"+task/SAFS={name}", "+optimizer/randomsearch=config")
    task = instantiate(cfg.task)  # builds the problem (no data is loaded)
    objective = task.objective_function
    assert built == [objective]  # one objective per run: the space is embedded, not rebuilt
    assert isinstance(objective, SAFSObjectiveFunction)
    assert task.name == name == cfg.task_id and cfg.benchmark_id == "SAFS"
    assert task.input_space.configuration_space == objective.configspace
    info = get_search_space_info(objective.configspace)
    assert {k: getattr(task.metadata, k) for k in info} == info
    assert objective.problem.granularity == ("network" if "_network" in name else "layer")
    fidelity = task.input_space.fidelity_space
    assert fidelity.is_multifidelity == name.endswith("_mf")
    if fidelity.is_multifidelity:
        assert fidelity.fidelity_type == "epochs"
        assert (fidelity.min_fidelity, fidelity.max_fidelity) == (1, objective.problem.max_budget)
    # Hydra hands nested nodes over as OmegaConf containers; the cache keys need plain values.
    settings = objective.problem.settings()
    json.dumps(settings)
    assert type(settings["dataset_kwargs"]) is dict


@pytest.mark.slow
def test_smac_multi_fidelity_through_carps(tmp_path: Path) -> None:
    from carps.utils.running import make_optimizer
    from carps.utils.running import make_task as carps_make_task

    cfg = compose(
        "+optimizer/smac20=multifidelity",
        "+task/SAFS=lenet5_synthetic_mf",
        f"baserundir={tmp_path / 'runs'}",
        "loggers=[]",
        "task.optimization_resources.n_trials=3",
        "task.objective_function.dense_epochs=1",
        f"task.objective_function.cache_dir={tmp_path / 'cache'}",
        "task.objective_function.device=cpu",
    )
    task = carps_make_task(cfg)
    optimizer = make_optimizer(cfg, task)
    _, trial_value = optimizer.run()
    objective = task.objective_function
    assert objective.n_trials >= 3  # full-budget equivalents, as CARP-S counts them
    assert 0.0 <= trial_value.cost <= 1.0
    runhistory = optimizer.solver.runhistory
    assert {key.budget for key in runhistory} <= {1.0, 3.0}
    assert len(runhistory) == objective.n_function_calls


@pytest.mark.slow
def test_carps_cli_runs_random_search_on_the_smallest_task(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "carps.run",  # no hydra.searchpath: the package's plugin finds the tasks
        "+optimizer/randomsearch=config",
        "+task/SAFS=lenet5_synthetic",
        "seed=1",
        "task.optimization_resources.n_trials=3",
        "task.objective_function.max_budget=1",
        "task.objective_function.dense_epochs=1",
        "task.objective_function.device=cpu",
        f"task.objective_function.cache_dir={tmp_path / 'cache'}",
    ]
    # From another directory, with this checkout (package and hydra_plugins) first on the path.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1", "PYTHONPATH": path}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # CARP-S logs the command to paste back; it now works as logged.
    assert (
        "Runcommand: `python -m carps.run +optimizer/randomsearch=config"
        in result.stdout + result.stderr
    )
    run_dir = tmp_path / "runs" / "RandomSearch" / "SAFS" / "lenet5_synthetic" / "1"
    trials = [json.loads(line) for line in (run_dir / "trial_logs.jsonl").read_text().splitlines()]
    assert len(trials) == 3
    for trial in trials:
        value = trial["trial_value"]
        assert value["additional_info"]["epochs"] == 1
        accuracy = value["additional_info"]["val_accuracy"]
        assert value["cost"] == pytest.approx(1.0 - accuracy, abs=TIE_BREAK)
    assert (run_dir / "trajectory_logs.jsonl").is_file()


# ---------------------------------------------------------------------- LAHC for CARP-S
def test_lahc_config_runs_on_a_carps_dummy_task() -> None:
    from carps.utils.running import make_optimizer
    from carps.utils.running import make_task as carps_make_task

    cfg = compose("+optimizer/safs=lahc", "+task/DUMMY=multifidelity", "loggers=[]")
    task = carps_make_task(cfg)
    optimizer = make_optimizer(cfg, task)
    assert isinstance(optimizer, LAHCOptimizer)
    trial_info, trial_value = optimizer.run()
    assert trial_value.cost == 42.0  # the dummy's constant
    assert trial_info.budget == 10  # single-fidelity: always the task's max fidelity
    assert task.objective_function.n_function_calls == 10  # n_trials of the dummy task


@pytest.mark.parametrize("multi_fidelity", [False, True])
def test_lahc_through_carps_walks_exactly_like_the_native_loop(multi_fidelity: bool) -> None:
    task = toy_task(25, multi_fidelity=multi_fidelity)
    optimizer = LAHCOptimizer(task, seed=3, history_length=2)
    trial_info, trial_value = optimizer.run()
    calls = task.objective_function.calls
    assert len(calls) == 25

    budget = 9.0 if multi_fidelity else None
    native = run_optimizer(  # min_steps: the native loop would stop on LAHC's own rule
        LAHC(toy_space(), seed=3, budget=budget, history_length=2, min_steps=1000),
        lambda config, seed, budget=None: toy_cost(config),
        n_trials=25,
    )
    native_configs = [dict(native.get_config(key.config_id)) for key in native]
    assert [config for config, _ in calls] == native_configs
    assert {b for _, b in calls} == {budget}
    assert trial_value.cost == pytest.approx(min(toy_cost(c) for c, _ in calls))
    assert dict(trial_info.config) in [c for c, _ in calls]


def test_lahc_revisits_reuse_results_and_an_exhausted_space_still_progresses() -> None:
    space = ConfigurationSpace(seed=0)
    space.add(Categorical("act:a", ["relu", "tanh"]))
    task = toy_task(6, space=space, cost=lambda config: TOY_OPERATOR_COST[config["act:a"]])
    objective = task.objective_function
    optimizer = SafsOptimizer(task, "greedy", seed=0, max_consecutive_revisits=5)
    optimizer.run()
    assert len(objective.calls) == 6
    assert optimizer.n_revisits >= 5  # answered from stored results, not evaluated
    with pytest.raises(ValueError, match="not asked"):
        optimizer.tell(TrialInfo(config=space.get_default_configuration()), TrialValue(cost=0.0))


def test_safs_optimizer_refuses_multi_objective_tasks() -> None:
    task = toy_task(3, objectives=("a", "b"))
    with pytest.raises(ValueError, match="one objective"):
        LAHCOptimizer(task)


# ---------------------------------------------------------------------- HPOBench-style
@pytest.fixture
def bench(make_problem) -> SAFSBenchmark:
    return SAFSBenchmark(make_problem(max_budget=2), rng=3)


def fake_train(bench: SAFSBenchmark) -> list[tuple[dict[str, Any], int, Any]]:
    """Replace training by a recorder: the contract tests need no real fine-tuning."""
    calls: list[tuple[dict[str, Any], int, Any]] = []

    def train(config: Any, seed: int = 0, budget: Any = None) -> tuple[float, dict[str, Any]]:
        calls.append((dict(config), seed, budget))
        return 0.25, {"val_accuracy": 0.75, "epochs": budget}

    bench.problem.train = train  # type: ignore[method-assign]
    return calls


def test_hpobench_objective_function_contract(bench: SAFSBenchmark) -> None:
    config = bench.configuration_space.get_default_configuration()
    result = bench.objective_function(config)  # real fine-tuning at the default fidelity
    assert set(result) == {"function_value", "cost", "info"}
    assert isinstance(result["function_value"], float) and isinstance(result["cost"], float)
    accuracy = result["info"]["val_accuracy"]
    assert result["function_value"] == pytest.approx(1.0 - accuracy, abs=TIE_BREAK)
    assert result["cost"] > 0
    assert result["info"]["fidelity"] == {"epoch": 2} and result["info"]["epochs"] == 2
    assert result["info"]["seed"] == 3
    assert bench(config, fidelity={"epoch": 1}) == pytest.approx(
        bench.objective_function(config, fidelity={"epoch": 1})["function_value"]
    )


def test_hpobench_fidelity_defaults_and_validation(bench: SAFSBenchmark) -> None:
    calls = fake_train(bench)
    config = dict(bench.configuration_space.get_default_configuration())
    assert bench.objective_function(config, fidelity={})["info"]["fidelity"] == {"epoch": 2}
    bench.objective_function(config, fidelity={"epoch": 1.0})
    bench.objective_function(config, fidelity=bench.fidelity_space.get_default_configuration())
    assert [budget for _, _, budget in calls] == [2, 1, 2]
    with pytest.raises(ValueError, match="unknown fidelity key"):
        bench.objective_function(config, fidelity={"epochs": 1})
    with pytest.raises(ValueError, match=r"in \[1, 2\]"):
        bench.objective_function(config, fidelity={"epoch": 3})
    with pytest.raises(ValueError, match="keyword argument"):
        bench.objective_function(config, epoch=1)
    space = bench.get_fidelity_space(seed=1)
    assert space["epoch"].default_value == 2 and space["epoch"].lower == 1


def test_hpobench_removes_inactive_hyperparameters_and_explains_bad_ones(
    bench: SAFSBenchmark,
) -> None:
    calls = fake_train(bench)
    config = dict(bench.configuration_space.get_default_configuration())
    config.update({"ft:optimizer": "adam", "ft:momentum": 0.5})  # momentum: SGD only
    bench.objective_function(config)
    assert "ft:momentum" not in calls[-1][0]
    with pytest.raises(ValueError, match="unknown key 'ft:lrr'"):
        bench.objective_function({**config, "ft:lrr": 0.1})
    with pytest.raises(ValueError, match="ft:lr=5.0 is outside"):
        bench.objective_function({**config, "ft:lr": 5.0})
    with pytest.raises(ValueError, match="must be a dict or a ConfigSpace Configuration"):
        bench.objective_function([1, 2])  # type: ignore[arg-type]


def test_hpobench_seeds_and_spaces(make_problem) -> None:
    problem = make_problem(max_budget=1)
    bench = SAFSBenchmark(problem)
    calls = fake_train(bench)
    config = bench.configuration_space.get_default_configuration()
    assert bench.objective_function(config)["info"]["seed"] == 0  # deterministic default
    assert bench.objective_function(config, rng=-5)["info"]["seed"] == 5  # abs, as HPOBench
    drawn = bench.objective_function(config, rng=np.random.RandomState(1))["info"]["seed"]
    assert drawn == np.random.RandomState(1).randint(0, 2**31 - 1)
    assert [seed for _, seed, _ in calls] == [0, 5, drawn]
    with pytest.raises(ValueError, match="rng must be"):
        bench.objective_function(config, rng="x")  # type: ignore[arg-type]
    assert isinstance(bench.fidelity_space["epoch"], Constant)  # a one-epoch range
    first = bench.get_configuration_space(seed=4).sample_configuration()
    assert first == bench.get_configuration_space(seed=4).sample_configuration()
    assert bench.get_configuration_space() == problem.configspace
    meta = bench.get_meta_information()
    assert {"name", "references", "function_value", "cost", "fidelity"} <= set(meta)
    assert meta["settings"] == problem.settings()
    with pytest.raises(ValueError, match="not both"):
        SAFSBenchmark(problem, model="lenet5")


def test_hpobench_test_function_reports_test_error_at_full_budget(make_problem) -> None:
    bench = SAFSBenchmark(make_problem(max_budget=1))
    config = bench.configuration_space.get_default_configuration()
    result = bench.objective_function_test(config)
    assert set(result) == {"function_value", "cost", "info"}
    assert result["function_value"] == pytest.approx(1.0 - result["info"]["test_accuracy"])
    assert result["info"]["fidelity"] == {"epoch": 1}
    assert {"val_accuracy", "operators", "alpha", "beta"} <= set(result["info"])
    bench2 = SAFSBenchmark(make_problem(max_budget=2))
    with pytest.raises(ValueError, match="full budget only"):
        bench2.objective_function_test(config, fidelity={"epoch": 1})
