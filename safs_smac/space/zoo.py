"""The spaces of the zoo models, and the ``configspaces/`` files generated from them.

The one part of the space package that builds networks: it lists a zoo model's activation sites
by tracing it. Imports :mod:`safs_smac.models`, :mod:`safs_smac.sites` and the space's
:mod:`.build` and :mod:`.files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ConfigSpace import ConfigurationSpace

from safs_smac.models import ZOO_MODELS, create_model, model_info
from safs_smac.sites import activation_sites
from safs_smac.space.build import GRANULARITIES, STAGES, _check_choice, _default_name, build_space
from safs_smac.space.files import save_space

__all__ = ["ZOO_MODELS", "write_zoo_spaces", "zoo_space"]


def zoo_space(
    model: str,
    *,
    stage: str = "joint",
    granularity: str = "layer",
    flat: bool = False,
    operators: Sequence[str] | None = None,
    search_rate: tuple[float, float] | None = None,
    seed: int = 0,
) -> ConfigurationSpace:
    """The space of a zoo model (``safs_smac.models``), named ``"safs_<model>_<stage>_<gran>"``.

    Builds the model once to list its activation sites; defaults come from ``model_info(model)``.
    """
    _check_choice("stage", stage, STAGES)
    _check_choice("granularity", granularity, GRANULARITIES)
    info = model_info(model)
    site_names = [site.name for site in activation_sites(create_model(model))]
    return build_space(
        site_names,
        default_activation=info.default_activation,
        recipe=info.recipe,
        stage=stage,
        granularity=granularity,
        operators=operators,
        flat=flat,
        search_rate=search_rate,
        name=_default_name(f"safs_{info.name}", stage, granularity, flat),
        seed=seed,
    )


def write_zoo_spaces(
    directory: str | Path,
    models: Sequence[str] = ZOO_MODELS,
    stages: Sequence[str] = STAGES,
    formats: Sequence[str] = ("json", "yaml"),
) -> list[Path]:
    """Write ``<model>_<stage>.<fmt>`` for every combination (layer granularity, conditional).

    Returns the written paths in the order written.
    """
    directory = Path(directory)
    written = []
    for model in models:
        for stage in stages:
            space = zoo_space(model, stage=stage)
            for fmt in formats:
                path = directory / f"{model}_{stage}.{fmt}"
                save_space(space, path, format=fmt)
                written.append(path)
    return written
