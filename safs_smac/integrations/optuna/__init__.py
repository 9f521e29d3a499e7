"""Optuna on SAFS: the space as define-by-run ``trial.suggest_*`` calls, studies with pruning.

* :func:`suggest_config` asks an Optuna trial for the *active* hyperparameters of any ConfigSpace
  (conditions included: the space is walked parents first and a hyperparameter is suggested only
  when its conditions hold) and returns the validated :class:`~ConfigSpace.Configuration`; a
  sample that violates a forbidden clause raises :class:`ForbiddenConfigurationError`.
* :func:`run_optuna` runs an :class:`optuna.Study` on a :class:`~safs_smac.problem.SAFSProblem`
  and returns it. Each trial is fine-tuned through repeated ``problem.train(config, seed,
  budget=e)`` calls at increasing rungs ``e``, reported with ``trial.report(cost, e)``, so a
  pruner (``optuna.pruners.MedianPruner()``, ...) can stop it early. The study lives in any Optuna
  storage (default: a journal file in the run directory), so an interrupted run resumes and
  several processes can share one study. The run directory also holds SMAC's files
  (``runhistory.json`` with one entry per evaluated rung, ``scenario.json``,
  ``configspace.json``), so :func:`safs_smac.report.trials_dataframe` and DeepCAVE's SMAC3v2
  converter read it as any other run.
* :class:`OptunaOptimizer` runs any Optuna sampler behind safs_smac's ask/tell interface (for
  :func:`safs_smac.optimizers.run_optimizer`).

Needs the ``optuna`` extra (``pip install "safs-smac[optuna]"``).
"""

# First, so that a missing extra fails fast with the install command, before torch loads.
try:
    import optuna  # noqa: F401
except ImportError as err:
    raise ImportError(
        f"safs_smac.integrations.optuna needs Optuna ({err}); "
        'install it with: pip install "safs-smac[optuna]"'
    ) from err

from safs_smac.integrations.optuna.sampling import (
    CONFIG_ATTR,
    JOURNAL_FILE,
    RUN_NAME,
    RUNGS_ATTR,
    SETTINGS_ATTR,
    ForbiddenConfigurationError,
    OptunaOptimizer,
    suggest_config,
)
from safs_smac.integrations.optuna.study import fine_tuning_epochs, run_optuna, study_runhistory

__all__ = [
    "CONFIG_ATTR",
    "JOURNAL_FILE",
    "RUNGS_ATTR",
    "RUN_NAME",
    "SETTINGS_ATTR",
    "ForbiddenConfigurationError",
    "OptunaOptimizer",
    "fine_tuning_epochs",
    "run_optuna",
    "study_runhistory",
    "suggest_config",
]
