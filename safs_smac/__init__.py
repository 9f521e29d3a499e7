"""safs-smac: Sparse Activation Function Search for pruned networks, as a SMAC3 problem.

The public names below are imported lazily, so ``import safs_smac`` stays cheap and never pulls in
SMAC, Dask or torchvision until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from safs_smac._version import __version__

_PUBLIC = {
    "SAFSProblem": "safs_smac.problem",
    "optimize": "safs_smac.search",
    "SearchResult": "safs_smac.search",
    "SearchableActivation": "safs_smac.activations",
    "list_operators": "safs_smac.activations",
    "register_operator": "safs_smac.activations",
    "register_dataset": "safs_smac.data",
    "load_result": "safs_smac.search",
    "FinalEvaluation": "safs_smac.problem",
    "TrialSpec": "safs_smac.space",
    "get_masks": "safs_smac.pruning",
    "apply_masks": "safs_smac.pruning",
    "activation_sites": "safs_smac.sites",
    "set_activations": "safs_smac.sites",
    "create_model": "safs_smac.models",
    "list_models": "safs_smac.models",
    "register_model": "safs_smac.models",
    "magnitude_prune": "safs_smac.pruning",
    "sparsity_report": "safs_smac.pruning",
    "load_dataset": "safs_smac.data",
    "list_datasets": "safs_smac.data",
    "Recipe": "safs_smac.training",
    "fit": "safs_smac.training",
    "evaluate": "safs_smac.training",
    "dead_neuron_rate": "safs_smac.diagnostics",
    "build_space": "safs_smac.space",
}

__all__ = [
    "FinalEvaluation",
    "Recipe",
    "SAFSProblem",
    "SearchResult",
    "SearchableActivation",
    "TrialSpec",
    "__version__",
    "activation_sites",
    "apply_masks",
    "build_space",
    "create_model",
    "dead_neuron_rate",
    "evaluate",
    "fit",
    "get_masks",
    "list_datasets",
    "list_models",
    "list_operators",
    "load_dataset",
    "load_result",
    "magnitude_prune",
    "optimize",
    "register_dataset",
    "register_model",
    "register_operator",
    "set_activations",
    "sparsity_report",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from safs_smac.activations import SearchableActivation, list_operators, register_operator
    from safs_smac.data import list_datasets, load_dataset, register_dataset
    from safs_smac.diagnostics import dead_neuron_rate
    from safs_smac.models import create_model, list_models, register_model
    from safs_smac.problem import FinalEvaluation, SAFSProblem
    from safs_smac.pruning import apply_masks, get_masks, magnitude_prune, sparsity_report
    from safs_smac.search import SearchResult, load_result, optimize
    from safs_smac.sites import activation_sites, set_activations
    from safs_smac.space import TrialSpec, build_space
    from safs_smac.training import Recipe, evaluate, fit


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'safs_smac' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
