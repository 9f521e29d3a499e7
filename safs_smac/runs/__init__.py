"""Runs: a run's identity (``run.json``), its directory and lock, and its state files.

The one owner of what a run directory holds. It knows no optimizer, backend or protocol: callers
pass names and settings as plain values. :mod:`safs_smac.runs.results` (the result files of a
finished run) is imported on its own, as it needs the problem's types.
"""

from safs_smac.runs.directory import RUN_ENTRIES, STAGE_DIRS, clear_run_dir, prepare_run_dir
from safs_smac.runs.identity import ENVIRONMENT_KEY, check_identity, environment, run_identity
from safs_smac.runs.lock import RunDirectoryBusy, RunLock
from safs_smac.runs.state import load_runhistory, read_state

__all__ = [
    "ENVIRONMENT_KEY",
    "RUN_ENTRIES",
    "STAGE_DIRS",
    "RunDirectoryBusy",
    "RunLock",
    "check_identity",
    "clear_run_dir",
    "environment",
    "load_runhistory",
    "prepare_run_dir",
    "read_state",
    "run_identity",
]
