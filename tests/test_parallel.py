"""Trial execution: worker resources, failure statuses and reasons, crash-safe SMAC files."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ConfigSpace import ConfigurationSpace, Float
from smac import HyperparameterOptimizationFacade, Scenario
from smac.runhistory import RunHistory, StatusType, TrialInfo

from safs_smac import parallel, workers

# ------------------------------------------------------------------------------- worker resources


def test_threads_per_worker_share_the_cores() -> None:
    assert workers.threads_per_worker(1, cores=16) == 16
    assert workers.threads_per_worker(4, cores=16) == 4
    assert workers.threads_per_worker(3, cores=2) == 1
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        workers.threads_per_worker(0)


@pytest.mark.parametrize(
    ("name", "index"),
    [(0, 0), ("3", 3), ("SLURMCluster-7", 7), ("SLURMCluster-2-1", 1), ("tcp://host", None)],
)
def test_worker_index_from_dask_names(name, index) -> None:
    assert workers.worker_index(name) == index


def test_gpus_are_assigned_round_robin_only_for_auto() -> None:
    assert [workers.pin_device("auto", index=i, n_gpus=2) for i in range(4)] == [
        "cuda:0",
        "cuda:1",
        "cuda:0",
        "cuda:1",
    ]
    assert workers.pin_device("auto", index=5, n_gpus=1) == "auto"  # one GPU: nothing to pick
    assert workers.pin_device("auto", index=None, n_gpus=4) == "auto"
    assert workers.pin_device("cpu", index=1, n_gpus=4) == "cpu"
    assert workers.pin_device("cuda:3", index=1, n_gpus=4) == "cuda:3"


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_outside_dask_the_device_is_kept(restore_threads) -> None:
    assert workers.current_worker() is None
    assert workers.configure_worker("auto") == "auto"
    assert workers.configure_worker("auto", num_threads=1) == "auto"
    assert torch.get_num_threads() == 1


def test_a_dask_worker_gets_its_gpu_and_its_share_of_cores(monkeypatch, restore_threads) -> None:
    fake = SimpleNamespace(name=3, state=SimpleNamespace(nthreads=1))
    monkeypatch.setattr(workers, "current_worker", lambda: fake)
    monkeypatch.setattr(workers, "available_cores", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert workers.configure_worker("auto") == "cuda:1"
    assert torch.get_num_threads() == 2  # 2 cores, one trial at a time on this worker
    assert workers.configure_worker("cpu", num_threads=1) == "cpu"
    assert torch.get_num_threads() == 1


def test_problem_train_applies_the_worker_settings(make_problem, restore_threads) -> None:
    problem = make_problem(num_threads=1)
    torch.set_num_threads(2)
    problem.train(problem.configspace.get_default_configuration(), seed=0, budget=1)
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        make_problem(num_threads=0)


# ------------------------------------------------------------------------ statuses and reasons
# Targets at module level: pynisher's child process and Dask workers find them by name.


def _space() -> ConfigurationSpace:
    return ConfigurationSpace(seed=0, space=[Float("x", (0.0, 1.0))])


def target_ok(config, seed: int = 0) -> float:
    return float(config["x"])


def target_raises(config, seed: int = 0) -> float:
    raise ValueError("bad trial")


def target_sleeps(config, seed: int = 0) -> float:
    time.sleep(60)
    return 0.0


def target_allocates(config, seed: int = 0) -> float:
    np.ones(64 * 2**30, dtype=np.uint8)
    return 0.0


def target_torch_oom(config, seed: int = 0) -> float:
    # What torch raises when the allocator is refused memory (not a MemoryError).
    raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")


def _run(target, *, walltime: float | None = None, memory_mb: int | None = None):
    scenario = Scenario(
        _space(),
        deterministic=True,
        trial_walltime_limit=walltime,
        trial_memory_limit=parallel.memory_limit(memory_mb),
        crash_cost=1.0,
    )
    runner = parallel.make_runner(scenario, target, ["seed"])
    config = _space().get_default_configuration()
    return runner.run_wrapper(TrialInfo(config=config, seed=0))[1]


def _memory_mb() -> int:
    import psutil

    # RLIMIT_AS counts virtual memory: leave room above what this process already maps.
    return psutil.Process().memory_info().vms // 2**20 + 512


def test_successful_trial_has_no_reason() -> None:
    value = _run(target_ok, walltime=30)
    assert value.status == StatusType.SUCCESS
    assert value.cost == pytest.approx(0.5)
    assert "reason" not in value.additional_info


def test_crash_is_recorded_with_its_error() -> None:
    value = _run(target_raises)
    assert value.status == StatusType.CRASHED
    assert value.cost == 1.0
    assert value.additional_info["reason"] == "the target raised ValueError('bad trial')"
    assert "Traceback" in value.additional_info["traceback"]


def test_time_limit_is_a_timeout_not_a_crash() -> None:
    start = time.monotonic()
    value = _run(target_sleeps, walltime=1)
    assert time.monotonic() - start < 30
    # SMAC 2.4.1 alone records this as CRASHED (infinite cost -> crash); TrialRunner keeps it.
    assert value.status == StatusType.TIMEOUT
    assert value.additional_info["reason"] == "exceeded the trial wall-time limit of 1 s"


@pytest.mark.parametrize("target", [target_allocates, target_torch_oom])
def test_memory_limit_is_a_memoryout(target) -> None:
    limit = _memory_mb()
    value = _run(target, memory_mb=limit)
    assert value.status == StatusType.MEMORYOUT
    assert value.additional_info["reason"] == f"exceeded the trial memory limit of {limit} MB"


def test_memory_limit_is_passed_in_megabytes() -> None:
    assert parallel.memory_limit(None) is None
    assert parallel.memory_limit(2048.0) == (2048, "MB")


# ---------------------------------------------------------------------------- lost Dask workers
class _Future:
    def __init__(self, key: str, result=None, error: BaseException | None = None) -> None:
        self.key, self._result, self._error = key, result, error

    def done(self) -> bool:
        return True

    def result(self):
        if self._error is not None:
            raise self._error
        return self._result


def test_a_trial_whose_worker_died_is_recorded_not_raised() -> None:
    from distributed.scheduler import KilledWorker

    scenario = Scenario(_space(), deterministic=True, crash_cost=1.0)
    runner = parallel.ResilientDaskRunner(
        parallel.TrialRunner(scenario, target_ok, required_arguments=["seed"]),
        dask_client=SimpleNamespace(),  # never called: the futures below are finished
    )
    config = _space().get_default_configuration()
    lost, fine = TrialInfo(config=config, seed=0), TrialInfo(config=config, seed=1)
    ok_value = parallel.TrialRunner(scenario, target_ok, ["seed"]).run_wrapper(fine)
    runner._pending_trials = [
        _Future("a", error=KilledWorker("run_wrapper-a", None, 1)),
        _Future("b", result=ok_value),
    ]
    runner._trial_of = {"a": lost, "b": fine}
    results = list(runner.iter_results())
    assert not runner.is_running()
    assert results[1] == ok_value
    info, value = results[0]
    assert info == lost
    assert value.status == StatusType.CRASHED
    assert value.cost == 1.0
    assert "Dask worker running this trial died (KilledWorker)" in value.additional_info["reason"]


def test_missing_scheduler_file_names_the_fix(tmp_path: Path) -> None:
    with (
        pytest.raises(FileNotFoundError, match="dask scheduler --scheduler-file"),
        parallel.dask_client(scheduler_file=tmp_path / "nope.json"),
    ):
        pass
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "not a scheduler"}')
    with (
        pytest.raises(ValueError, match="is not a Dask scheduler file"),
        parallel.dask_client(scheduler_file=bad),
    ):
        pass


def test_one_worker_and_no_cluster_means_in_process() -> None:
    with parallel.dask_client(1) as client:
        assert client is None
    given = object()
    with parallel.dask_client(4, client=given) as client:
        assert client is given


# ------------------------------------------------------------------------------ atomic saves
def _smac_run(
    tmp_path: Path, n_trials: int = 3, overwrite: bool = True
) -> HyperparameterOptimizationFacade:
    scenario = Scenario(
        _space(), name="smac", output_directory=tmp_path, deterministic=True, n_trials=n_trials
    )
    return HyperparameterOptimizationFacade(
        scenario,
        target_ok,
        initial_design=HyperparameterOptimizationFacade.get_initial_design(scenario, n_configs=3),
        overwrite=overwrite,
        logging_level=40,
    )


def _crash_mid_write(self, filename, *args, **kwargs) -> None:
    """Stands for a kill in the middle of ``RunHistory.save``: half a file, then death."""
    Path(filename).write_text('{"stats": {"submitted": 4, "fini')
    raise KeyboardInterrupt


def test_a_kill_during_a_smac_save_leaves_the_previous_files(tmp_path, monkeypatch) -> None:
    with parallel.atomic_smac_saves():
        smac = _smac_run(tmp_path)
        smac.optimize()
        run_dir = Path(smac.scenario.output_directory)
        before = {name: (run_dir / name).read_bytes() for name in _SMAC_FILES}
        monkeypatch.setattr(RunHistory, "save", _crash_mid_write)
        with pytest.raises(KeyboardInterrupt):
            smac.optimizer.save()
    for name in _SMAC_FILES:
        assert (run_dir / name).read_bytes() == before[name], name
        json.loads(before[name])
    assert not list(run_dir.glob(".saving-*"))  # the staging directory went with the crash
    scenario = json.loads((run_dir / "scenario.json").read_text())
    assert scenario["output_directory"] == str(run_dir)  # not the staging directory


def test_without_atomic_saves_the_same_kill_corrupts_smacs_file(tmp_path, monkeypatch) -> None:
    smac = _smac_run(tmp_path)
    smac.optimize()
    monkeypatch.setattr(RunHistory, "save", _crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        smac.optimizer.save()
    with pytest.raises(json.JSONDecodeError):
        json.loads((Path(smac.scenario.output_directory) / "runhistory.json").read_text())


def test_atomic_saves_are_undone_on_exit_and_runs_resume(tmp_path) -> None:
    from smac.main.smbo import SMBO

    original = SMBO.save
    with parallel.atomic_smac_saves():
        assert SMBO.save is not original
        _smac_run(tmp_path, n_trials=2).optimize()
    assert SMBO.save is original
    with parallel.atomic_smac_saves():
        resumed = _smac_run(tmp_path, n_trials=2, overwrite=False)
    assert len(resumed.runhistory) == 2  # SMAC reloaded the atomically written files
    assert math.isfinite(resumed.runhistory.get_cost(resumed.intensifier.get_incumbent()))


_SMAC_FILES = (
    "runhistory.json",
    "intensifier.json",
    "optimization.json",
    "scenario.json",
    "configspace.json",
)


# ------------------------------------------------------------------- batched ask/tell (LAHC)
def _site_space() -> ConfigurationSpace:
    from ConfigSpace import Categorical

    ops = ["relu", "gelu", "swish", "elu", "tanh"]
    return ConfigurationSpace(
        seed=0, space=[Categorical(f"act:{i}", ops, default="relu") for i in range(4)]
    )


def _op_cost(config, seed: int = 0) -> float:
    ops = ["relu", "gelu", "swish", "elu", "tanh"]
    return float(sum(ops.index(config[name]) for name in config))


def _trials(rh: RunHistory) -> list[tuple]:
    return [(dict(rh.ids_config[k.config_id]), v.cost, v.status) for k, v in rh.items()]


def test_lahc_batches_take_one_step_per_batch() -> None:
    from safs_smac.optimizers import LAHC, run_optimizer

    lahc = LAHC(_site_space(), seed=3, min_steps=100)
    rh = run_optimizer(lahc, _op_cost, n_trials=9, batch_size=3)
    assert len(rh) == 9
    # Batch 1: the initial state and two neighbours (one step); then one step per batch of 3.
    assert lahc.step == 3
    assert lahc.incumbent_cost == min(v.cost for v in rh.values())


def test_a_batched_run_killed_mid_batch_resumes_exactly(tmp_path) -> None:
    from safs_smac.optimizers import LAHC, load_runhistory, run_optimizer

    path = tmp_path / "runhistory.json"
    calls = 0

    def dies_at_fifth(config, seed: int = 0) -> float:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt  # the run is killed in the middle of its second batch
        return _op_cost(config)

    with pytest.raises(KeyboardInterrupt):
        run_optimizer(
            LAHC(_site_space(), seed=3), dies_at_fifth, n_trials=9, save_path=path, batch_size=3
        )
    assert len(load_runhistory(path, _site_space())) == 4  # each result saved on arrival
    calls = 100
    resumed = run_optimizer(
        LAHC(_site_space(), seed=3),
        dies_at_fifth,
        n_trials=9,
        runhistory=load_runhistory(path, _site_space()),
        batch_size=3,
    )
    full = run_optimizer(LAHC(_site_space(), seed=3), _op_cost, n_trials=9, batch_size=3)
    assert calls == 105  # only the five trials that had not finished ran
    assert _trials(resumed) == _trials(full)


def test_run_optimizer_records_the_statuses_of_a_smac_runner() -> None:
    from safs_smac.optimizers import RandomSearch, run_optimizer

    scenario = Scenario(_space(), deterministic=True, crash_cost=1.0)
    rh = run_optimizer(
        RandomSearch(_space(), seed=0),
        parallel.make_runner(scenario, target_raises, ["seed"]),
        n_trials=2,
    )
    assert [v.status for v in rh.values()] == [StatusType.CRASHED] * 2
    assert all("bad trial" in v.additional_info["reason"] for v in rh.values())


def test_a_live_process_s_staging_directory_is_never_removed(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from safs_smac.smac_compat import _staged

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        alive = tmp_path / f".saving-{other.pid}-abc"
        dead = tmp_path / ".saving-999999999-abc"
        legacy = tmp_path / ".saving-xyz"
        for directory in (alive, dead, legacy):
            directory.mkdir()

        class _Scenario:
            output_directory = tmp_path

        with _staged(_Scenario(), tmp_path) as staging:
            assert staging.name.startswith(f".saving-{os.getpid()}-")
            assert alive.exists() and not dead.exists() and not legacy.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    "patch", ["surrogate_in_this_thread", "bounded_forest_trees", "fast_surrogate"]
)
def test_smac_surrogate_patches_leave_the_proposals_unchanged(tmp_path, patch: str) -> None:
    import numpy as np
    from ConfigSpace import ConfigurationSpace, Float
    from smac import HyperparameterOptimizationFacade, Scenario

    from safs_smac import smac_compat

    space = ConfigurationSpace(seed=0)
    space.add([Float("x", (0.0, 1.0)), Float("y", (0.0, 1.0))])

    def proposals(patched: bool) -> list[dict]:
        def target(config, seed: int = 0) -> float:
            return float((config["x"] - 0.3) ** 2 + np.sin(5 * config["y"]))

        scenario = Scenario(
            space, output_directory=tmp_path / str(patched), deterministic=True, n_trials=20
        )
        facade = HyperparameterOptimizationFacade(
            scenario, target, overwrite=True, logging_level=40
        )
        if patched:
            with getattr(smac_compat, patch)():
                facade.optimize()
        else:
            facade.optimize()
        return [dict(facade.runhistory.get_config(k.config_id)) for k in facade.runhistory]

    assert proposals(True) == proposals(False)


def test_bounded_forest_trees_fit_the_same_forest_and_restore_the_settings() -> None:
    import numpy as np
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer
    from smac.model.random_forest.random_forest import RandomForest

    from safs_smac.smac_compat import bounded_forest_trees

    space = ConfigurationSpace(seed=0)
    space.add([Float("x", (0.0, 1.0)), Integer("n", (1, 9)), Categorical("op", ["a", "b", "c"])])
    rng = np.random.default_rng(0)
    queries = rng.random((500, 3))
    for n_points in (1, 2, 7, 40):
        X, y = rng.random((n_points, 3)), rng.random(n_points)
        plain = RandomForest(space, seed=3, log_y=True).train(X, y).predict(queries)
        model = RandomForest(space, seed=3, log_y=True)
        with bounded_forest_trees():
            bounded = model.train(X, y).predict(queries)
        assert np.array_equal(plain[0], bounded[0]) and np.array_equal(plain[1], bounded[1])
        assert model.meta["max_leaf_nodes"] == 2**20
    assert RandomForest._train.__module__.startswith("smac.")


_HASH_SEED_SCRIPT = """
import contextlib, json, sys, tempfile
from pathlib import Path
from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer
from smac import HyperparameterOptimizationFacade, Scenario
from safs_smac.smac_compat import deterministic_local_search

space = ConfigurationSpace(seed=0)
space.add([Float("x", (0.0, 1.0)), Float("y", (0.0, 1.0)), Integer("n", (1, 9)),
           Categorical("op", ["a", "b", "c", "d"])])
ops = {"a": 0.1, "b": 0.0, "c": 0.2, "d": 0.3}

def target(config, seed=0):
    bowl = (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
    return bowl + ops[config["op"]] + 0.01 * config["n"]

with tempfile.TemporaryDirectory() as tmp:
    scenario = Scenario(space, output_directory=Path(tmp), deterministic=True, n_trials=30, seed=0)
    facade = HyperparameterOptimizationFacade(scenario, target, overwrite=True, logging_level=40)
    patched = sys.argv[1] == "on"
    with deterministic_local_search() if patched else contextlib.nullcontext():
        facade.optimize()
    print(json.dumps([dict(facade.runhistory.get_config(k.config_id)) for k in facade.runhistory]))
"""


@pytest.mark.slow  # six short SMAC runs in subprocesses
def test_smac_proposes_the_same_in_every_process_with_deterministic_local_search(tmp_path) -> None:
    import os
    import subprocess
    import sys

    script = tmp_path / "propose.py"
    script.write_text(_HASH_SEED_SCRIPT)

    def proposals(patch: str, hash_seed: int) -> str:
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
        command = [sys.executable, str(script), patch]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout

    # SMAC as shipped starts its local search from list(set(configs)): string hashes decide.
    assert len({proposals("off", seed) for seed in (1, 2, 3)}) > 1
    assert len({proposals("on", seed) for seed in (1, 2, 3)}) == 1


def test_surrogate_patches_switch_for_a_context_and_refuse_unknown_names() -> None:
    from safs_smac.smac_compat import SURROGATE_PATCHES, surrogate_patches

    before = dict(SURROGATE_PATCHES)
    with surrogate_patches(bounded_trees=False):
        assert {**before, "bounded_trees": False} == SURROGATE_PATCHES
    assert before == SURROGATE_PATCHES
    refused = pytest.raises(ValueError, match="unknown surrogate patch.*valid: bounded_trees")
    with refused, surrogate_patches(bounded_leaves=False):
        pass
    assert before == SURROGATE_PATCHES
