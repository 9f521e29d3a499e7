"""A run directory: create, resume, refuse or replace it, and never touch what a run did not write.

A run directory holds ``run.json`` (the identity, see :mod:`safs_smac.runs.identity`), the search
state (``smac/<seed>/``, or one run directory per stage: ``stage1/``, ``stage2/``), and once the
run has finished its results (``results.csv``, ``incumbent.json``, ``summary.json``,
``trajectory.png``). :data:`RUN_ENTRIES` is the manifest of everything a run (or ``safs-smac
report``) writes at the top of it: ``overwrite`` removes those and nothing else, and refuses a
directory that holds anything more.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safs_smac._io import atomic_write_json
from safs_smac.runs.identity import ENVIRONMENT_KEY, check_identity
from safs_smac.runs.lock import LOCK_NAME
from safs_smac.runs.state import read_state

__all__ = ["RUN_ENTRIES", "STAGE_DIRS", "check_output_dir", "clear_run_dir", "prepare_run_dir"]

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
# One run directory per stage of a two-stage protocol, each a run directory itself.
STAGE_DIRS = ("stage1", "stage2")
# Everything a run, its report and its lock write at the top of a run directory.
RUN_ENTRIES = frozenset(
    {
        RUN_FILE,
        "results.csv",
        "incumbent.json",
        "summary.json",
        "trajectory.png",
        "dnr.png",
        "smac",
        LOCK_NAME,
        *STAGE_DIRS,
    }
)


def check_output_dir(output_dir: Path) -> None:
    """Refuse output directories no run may use, before anything is written."""
    if str(output_dir) in ("", "."):
        raise ValueError(
            "the output directory is the current directory; name a directory of its own "
            "(e.g. --output-dir safs_runs/run1)"
        )
    _refuse_file(output_dir)
    if output_dir.is_dir() and not (output_dir / RUN_FILE).exists():
        _refuse_foreign(output_dir, overwrite=False)


def _refuse_file(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"output directory {output_dir} is a file; choose another --output-dir")


def _refuse_foreign(output_dir: Path, *, overwrite: bool) -> None:
    """Refuse a directory without a run that is not empty (``overwrite``: unless it holds only
    what a run writes, e.g. a run whose run.json was lost)."""
    entries = [p for p in _entries(output_dir) if p.name != LOCK_NAME]
    foreign = _foreign_entries(output_dir)
    if foreign or (entries and not overwrite):
        raise ValueError(
            f"output directory {output_dir} holds files that are not a safs-smac run "
            f"({_names(foreign or entries)}); choose another --output-dir"
            + ("" if foreign else " or pass --overwrite to replace the leftovers of a run")
        )


def prepare_run_dir(output_dir: Path, settings: Mapping[str, Any], *, overwrite: bool) -> str:
    """Create, resume or refuse a run directory for the run ``settings`` identify.

    Returns ``"finished"`` when the directory holds this run, finished (its results are there),
    ``"resume"`` when it holds this run unfinished, ``"new"`` when the run starts afresh (after
    clearing a different run's files when ``overwrite``). Refuses, with an error that says what
    to do, a different run without ``overwrite`` and a directory holding files no run wrote.
    """
    _refuse_file(output_dir)
    run_file = output_dir / RUN_FILE
    previous = None
    if run_file.exists():
        try:
            previous = read_state(
                run_file,
                "the run's identity",
                fix="restore it from a backup, or pass --overwrite to start the run afresh "
                "(its trials are lost)",
            )
        except ValueError:
            if not overwrite:
                raise
    if previous is not None:
        verdict = check_identity(previous, settings)
        if verdict.same:
            if previous.get(ENVIRONMENT_KEY) != settings.get(ENVIRONMENT_KEY):
                logger.warning(
                    "%s was started with %s and continues with %s; results may differ in the "
                    "last bits from an uninterrupted run",
                    output_dir,
                    previous.get(ENVIRONMENT_KEY),
                    settings.get(ENVIRONMENT_KEY),
                )
            if verdict.upgraded is not None:
                _write_run_file(output_dir, verdict.upgraded)
            return "finished" if (output_dir / "summary.json").exists() else "resume"
        if not overwrite:
            changed = ", ".join(verdict.changed)
            if verdict.earlier_version:
                raise ValueError(
                    f"output directory {output_dir} holds a run made by an earlier safs-smac "
                    f"version (its run.json has no {changed}): its trials were measured "
                    "differently and cannot be continued; `safs-smac report` still shows a "
                    "finished one; choose another --output-dir or pass --overwrite"
                )
            raise ValueError(
                f"output directory {output_dir} holds a different run (changed: {changed}); "
                "choose another --output-dir or pass --overwrite"
            )
        clear_run_dir(output_dir)
    elif any(p.name != LOCK_NAME for p in _entries(output_dir)):
        # No run.json, or a damaged one that overwrite replaces.
        _refuse_foreign(output_dir, overwrite=overwrite)
        clear_run_dir(output_dir)
    _write_run_file(output_dir, dict(settings))
    return "new"


def clear_run_dir(output_dir: Path) -> None:
    """Remove what a run wrote in ``output_dir``; refuse when anything else is there.

    Refuses the current directory, the home directory and the file-system root, symbolic links
    (their targets are not the run's) and any entry outside :data:`RUN_ENTRIES`, before removing
    anything. The lock file stays: another process may be waiting on it.
    """
    resolved = output_dir.resolve()
    if resolved in (Path.cwd().resolve(), Path.home().resolve(), Path(resolved.anchor)):
        raise ValueError(
            f"refusing to clear {output_dir} ({resolved}): it is the current, home or root "
            "directory; pass a directory of the run's own as --output-dir"
        )
    foreign = _foreign_entries(output_dir)
    if foreign:
        raise ValueError(
            f"refusing to clear {output_dir}: it holds files safs-smac did not write "
            f"({_names(foreign)}); move them away or choose another --output-dir"
        )
    for entry in _entries(output_dir):
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _foreign_entries(output_dir: Path) -> list[Path]:
    """Entries of a run directory (and of its stage directories) that no run wrote."""
    foreign = []
    for entry in _entries(output_dir):
        if entry.is_symlink() or entry.name not in RUN_ENTRIES:
            foreign.append(entry)
        elif entry.name in STAGE_DIRS and entry.is_dir():
            foreign.extend(_foreign_entries(entry))
        elif entry.name == "smac" and entry.is_dir():
            # SMAC writes smac/<seed>/...; a link anywhere below could lead out of the run.
            foreign.extend(p for p in entry.rglob("*") if p.is_symlink())
    return foreign


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def _names(paths: list[Path], limit: int = 3) -> str:
    names = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in paths]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _write_run_file(output_dir: Path, settings: Mapping[str, Any]) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output_dir / RUN_FILE, settings)
    except OSError as err:  # read-only, inside a file, disk full, name too long, ...
        raise ValueError(
            f"output directory {output_dir} is not writable ({err.strerror or err}); choose "
            "another --output-dir"
        ) from None
