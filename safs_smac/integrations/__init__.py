"""Adapters that plug a :class:`~safs_smac.problem.SAFSProblem` into other benchmark tools.

* :mod:`safs_smac.integrations.carps`: a CARP-S ``ObjectiveFunction``, ``Task`` builder and the
  safs_smac ask/tell optimizers (LAHC, ...) as CARP-S optimizers;
  :mod:`safs_smac.integrations.carps_tasks` generates the Hydra task configs shipped in
  ``safs_smac/configs`` (found through the package's Hydra search-path plugin).
  Needs the ``carps`` extra.
* :mod:`safs_smac.integrations.hpobench`: :class:`~safs_smac.integrations.hpobench.SAFSBenchmark`
  with HPOBench's method names and return conventions, without depending on ``hpobench``.
* :mod:`safs_smac.integrations.optuna`: the space (conditions included) as define-by-run
  ``trial.suggest_*`` calls, ``run_optuna`` returning an ``optuna.Study`` (storage, sampler,
  pruner; trials reported per rung) with SMAC's files in the run directory, and Optuna samplers as
  ask/tell optimizers. Needs the ``optuna`` extra.

Importing :mod:`safs_smac` or this package imports none of the optional tools; each submodule
imports its tool and fails with an ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or explain which extra installs it.

    Parameters
    ----------
    module
        Importable name, e.g. ``"carps"``.
    extra
        The safs-smac extra that provides it, e.g. ``"carps"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this safs_smac integration needs the optional dependency {module!r} "
            f'({err}); install it with: pip install "safs-smac[{extra}]"'
        ) from err
