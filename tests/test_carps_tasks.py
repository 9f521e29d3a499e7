"""CARP-S tasks: generated yamls in sync with the code, self-checking tasks, the Hydra plugin.

carps is part of the ``test`` extra: a missing one fails the collection on purpose.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

import pytest
from carps.utils.task import get_search_space_info
from carps_configs import compose
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from safs_smac.integrations.carps import SAFSObjectiveFunction, make_task
from safs_smac.integrations.carps_tasks import (
    TASK_DIR,
    TASKS,
    SAFSTask,
    task_names,
    task_yaml,
    write_task_configs,
)

ROOT = Path(__file__).resolve().parents[1]


def _same_but_version(a: str, b: str) -> bool:
    """Equal texts, up to the ConfigSpace version that serialised the space (not part of it)."""
    version = re.compile(r"python_module_version: \S+")
    return version.sub("", a) == version.sub("", b)


def build(task: str, *overrides: str) -> Any:
    cfg = compose(f"+task/SAFS={task}", "+optimizer/randomsearch=config", *overrides)
    return instantiate(cfg.task)


# ---------------------------------------------------------------------- generated files
def test_shipped_task_yamls_are_what_the_code_generates() -> None:
    shipped = {p.stem for p in TASK_DIR.glob("*.yaml")}
    assert shipped == set(task_names()), (
        "regenerate with `python -m safs_smac.integrations.carps_tasks`"
    )
    for spec in TASKS:
        for granularity in ("layer", "network"):
            for multi_fidelity in (False, True):
                text = task_yaml(spec, granularity=granularity, multi_fidelity=multi_fidelity)
                name = text.splitlines()[1].removeprefix("# SAFS task ").removesuffix(".")
                checked_in = (TASK_DIR / f"{name}.yaml").read_text(encoding="utf-8")
                assert _same_but_version(checked_in, text), f"{name}.yaml is stale; regenerate it"


def test_write_task_configs_writes_every_variant(tmp_path: Path) -> None:
    written = write_task_configs(tmp_path, TASKS[:1])
    assert [p.name for p in written] == [
        "lenet5_synthetic.yaml",
        "lenet5_synthetic_mf.yaml",
        "lenet5_synthetic_network.yaml",
        "lenet5_synthetic_network_mf.yaml",
    ]
    assert written[0].read_text() == (TASK_DIR / "lenet5_synthetic.yaml").read_text()


def test_a_task_embeds_its_space_as_carps_tasks_do() -> None:
    cfg = compose("+task/SAFS=lenet5_synthetic_network", "+optimizer/randomsearch=config")
    space = cfg.task.input_space.configuration_space
    # The shape of CARP-S's own task yamls (e.g. task/HPOBench/*.yaml).
    assert space._target_ == (
        "ConfigSpace.configuration_space.ConfigurationSpace.from_serialized_dict"
    )
    assert {hp.name for hp in space.d.hyperparameters} >= {"act:all", "alpha:all", "ft:lr"}
    assert cfg.task.metadata.dimensions == len(space.d.hyperparameters) == 10


# ---------------------------------------------------------------------- overrides
def test_network_task_states_the_real_dimensions() -> None:
    task = build("lenet5_synthetic_network")
    assert isinstance(task, SAFSTask)
    assert task.metadata.dimensions == len(task.objective_function.configspace) == 10
    assert build("lenet5_synthetic").metadata.dimensions == 19


def test_an_override_that_changes_the_space_is_refused_with_the_task_to_use() -> None:
    with pytest.raises(InstantiationException) as err:
        build("lenet5_synthetic_mf", "task.objective_function.granularity=network")
    message = str(err.value.__cause__)
    assert "embeds a 19-dimensional 'safs_joint_layer' space" in message
    assert "builds a 10-dimensional 'safs_joint_network' one" in message
    assert "+task/SAFS=lenet5_synthetic_network_mf" in message
    with pytest.raises(InstantiationException, match="write_task_configs"):
        build("lenet5_synthetic", "task.objective_function.stage=operators")


def test_overrides_that_keep_the_space_keep_the_task_valid() -> None:
    task = build(
        "lenet5_synthetic_mf",
        "task.objective_function.max_budget=5",
        "task.objective_function.pruning_rate=0.95",
        "task.optimization_resources.n_trials=3",
    )
    assert task.input_space.fidelity_space.max_fidelity == 5  # follows max_budget
    assert task.objective_function.problem.pruning_rate == 0.95


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["task.metadata.dimensions=3"], r"dimensions=3 \(the space has 19\)"),
        (["task.objective_function.trial_seed=null"], "task.metadata.deterministic=false"),
        (["task.input_space.fidelity_space.max_fidelity=9"], "within 1..max_budget"),
        (["task.output_space.n_objectives=2"], "one objective"),
    ],
)
def test_a_task_that_would_misdescribe_itself_is_refused(overrides: list[str], match: str) -> None:
    with pytest.raises(InstantiationException) as err:
        build("lenet5_synthetic_mf", *overrides)
    assert isinstance(err.value.__cause__, ValueError)
    assert re.search(match, str(err.value.__cause__)), str(err.value.__cause__)


def test_noisy_objective_with_matching_metadata_is_accepted() -> None:
    task = build(
        "lenet5_synthetic",
        "task.objective_function.trial_seed=null",
        "task.metadata.deterministic=false",
    )
    assert task.objective_function.trial_seed is None


def test_make_task_from_python_is_a_checked_safs_task(make_problem) -> None:
    objective = SAFSObjectiveFunction(make_problem(granularity="network"))
    task = make_task(objective, n_trials=3)
    assert isinstance(task, SAFSTask)
    assert task.metadata.dimensions == get_search_space_info(objective.configspace)["dimensions"]


# ---------------------------------------------------------------------- Hydra plugin, packaging
def test_the_search_path_plugin_adds_the_package_configs() -> None:
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    from hydra_plugins.safs_smac_searchpath import SafsSmacSearchPathPlugin

    assert SafsSmacSearchPathPlugin in Plugins.instance().discover(SearchPathPlugin)
    cfg = compose("+task/SAFS=lenet5_synthetic", "+optimizer/safs=lahc")
    assert cfg.optimizer._target_ == "safs_smac.integrations.carps.LAHCOptimizer"


def test_packaging_ships_the_plugin_and_the_task_yamls() -> None:
    from setuptools import find_namespace_packages

    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert setup["options"]["packages"].strip() == "find_namespace:"
    find = setup["options.packages.find"]
    include = find["include"].split()
    exclude = find.get("exclude", "").split()
    packages = set(find_namespace_packages(str(ROOT), include=include, exclude=exclude))
    assert "hydra_plugins.safs_smac_searchpath" in packages
    assert "hydra_plugins" not in packages  # a namespace shared with other plugins
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists()
    assert {"safs_smac.integrations", "safs_smac.configs"} <= packages
    assert not any(p.split(".")[0] not in ("safs_smac", "hydra_plugins") for p in packages)
    assert not any("__pycache__" in p for p in packages)
    assert "configs/**/*.yaml" in setup["options.package_data"]["safs_smac"]


def test_carps_random_search_draws_differ_between_run_seeds() -> None:
    # CARP-S's random search samples from the objective's space: the run seed must reach it.
    def first_draw(seed: int) -> dict:
        task = build("lenet5_synthetic", f"seed={seed}")
        return dict(task.objective_function.configspace.sample_configuration())

    assert first_draw(1) == first_draw(1)
    assert first_draw(1) != first_draw(2)


def test_the_carps_requirements_file_lists_the_install_requirements() -> None:
    # CARP-S looks for recipes/benchmarks/<benchmark_id>/<benchmark_id>_requirements.txt and
    # recipes/optimizers/<optimizer_container_id>/..._requirements.txt (carps.utils.requirements).
    path = ROOT / "safs_smac" / "integrations" / "carps_container" / "SAFS_requirements.txt"
    lines = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    install_requires = setup["options"]["install_requires"].split()
    assert lines == ["safs-smac", *install_requires]
    lahc = (ROOT / "safs_smac" / "configs" / "optimizer" / "safs" / "lahc.yaml").read_text()
    assert "optimizer_container_id: SAFS" in lahc  # the same file serves the optimizers
    assert "integrations/carps_container/*.txt" in setup["options.package_data"]["safs_smac"]
