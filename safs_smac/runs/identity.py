"""A run's identity: the JSON settings in ``run.json`` and the rule that compares two of them.

One builder (:func:`run_identity`) writes every run kind's ``run.json``; a resumed run is the same
run when its identity, read back from disk, equals the new one *after a JSON round trip* (a tuple
is a list once written, ``inf`` is written as ``null``). Nothing here knows an optimizer or a
protocol: callers pass their names and settings as plain values.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping
from typing import Any

from safs_smac._io import json_default

__all__ = [
    "ADDED_KEYS",
    "ENVIRONMENT_KEY",
    "IdentityCheck",
    "as_json",
    "check_identity",
    "environment",
    "run_identity",
]

# Where a run ran (torch version, threads, machine): recorded, never compared. Results are
# bit-for-bit reproducible for the same command, seed, torch version and thread count on one
# machine; a resume elsewhere is allowed with a warning.
ENVIRONMENT_KEY = "environment"
# Entries added to run.json after runs had been made without them. A run.json that lacks one of
# them is still the same run (it resumes, and gains the entry); a run.json that has a different
# value is not.
ADDED_KEYS = ("data",)


def run_identity(
    problem_settings: Mapping[str, Any],
    optimizer: str,
    *,
    version: str,
    data: str | None,
    env: Mapping[str, Any],
    **settings: Any,
) -> dict[str, Any]:
    """The ``run.json`` of a run.

    Parameters
    ----------
    problem_settings
        ``SAFSProblem.settings()``: everything about the problem that changes results.
    optimizer
        The run's label (``"smac-mf"``, ``"staged-smac-mf"``, ``"paper-lahc-smac-hpo"``, ...).
    version
        The package version that made the run.
    data
        Fingerprint of the data set's tensors (``Dataset.fingerprint()``): two data roots with
        other images or labels are two runs.
    env
        :func:`environment`, recorded but not compared.
    settings
        The search settings that change results (trials, budgets, seed, workers, ...); infinite
        numbers are written as ``null``.
    """
    identity: dict[str, Any] = {
        "safs_smac": version,
        "problem": dict(problem_settings),
        "optimizer": optimizer,
        **{k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in settings.items()},
    }
    if data is not None:
        identity["data"] = data
    identity[ENVIRONMENT_KEY] = dict(env)
    return as_json(identity)


def environment(num_threads: int | None = None) -> dict[str, Any]:
    """Where this process runs: torch version, torch threads, machine and processor."""
    import torch

    return {
        "torch": torch.__version__,
        "torch_threads": num_threads or torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def as_json(value: Any) -> Any:
    """``value`` as it reads back from a JSON file (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(value, default=json_default))


class IdentityCheck:
    """How a stored ``run.json`` relates to the identity of the run asked for.

    Attributes
    ----------
    same
        The same run: resume it (and write ``upgraded`` when entries were added since).
    changed
        Dotted keys whose values differ (empty when ``same``).
    earlier_version
        Every changed key is absent from the stored file: a run made by an earlier version,
        whose trials were measured differently.
    upgraded
        The stored identity with the entries added since (:data:`ADDED_KEYS`) filled in, or
        ``None`` when nothing was added.
    """

    def __init__(self, stored: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old_id, new_id = _without_environment(stored), _without_environment(as_json(dict(new)))
        added = [k for k in ADDED_KEYS if k not in old_id and k in new_id]
        comparable = {k: v for k, v in new_id.items() if k not in added}
        self.changed = sorted(_changed_keys(old_id, comparable))
        self.same = not self.changed
        self.earlier_version = bool(self.changed) and all(
            _lacks(old_id, key) for key in self.changed
        )
        self.upgraded = {**stored, **{k: new_id[k] for k in added}} if self.same and added else None


def check_identity(stored: Mapping[str, Any], new: Mapping[str, Any]) -> IdentityCheck:
    """Compare a stored ``run.json`` with a new identity (see :class:`IdentityCheck`)."""
    return IdentityCheck(stored, new)


def _without_environment(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != ENVIRONMENT_KEY}


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys.extend(_changed_keys(a, b, f"{prefix}{key}."))
        elif a != b and not _both_nan(a, b):
            keys.append(f"{prefix}{key}")
    return keys


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _lacks(settings: Mapping[str, Any], dotted_key: str) -> bool:
    """Whether ``settings`` has no entry at ``dotted_key`` (``"problem.objective"``)."""
    node: Any = settings
    for part in dotted_key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return True
        node = node[part]
    return False
