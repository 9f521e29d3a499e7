"""Reading a run's state files, with errors that name the file and say what to do.

A state file can be valid JSON of the wrong shape (``[]`` where an object belongs, a run history
without its ``data``): every reader here checks the shape it relies on and raises a
``ValueError`` naming the file, never a ``KeyError`` or ``AttributeError`` from deep inside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ConfigSpace import ConfigurationSpace
from smac.runhistory import RunHistory

from safs_smac._io import read_json

__all__ = ["drop_unfinished_trials", "load_runhistory", "read_state"]


_RESTORE = "delete it or restore it from a backup"


def read_state(
    path: str | Path, what: str, *, keys: Iterable[str] = (), fix: str = _RESTORE
) -> dict[str, Any]:
    """A JSON object from ``path`` (``what`` says what it holds), with ``keys`` present.

    Raises ``ValueError`` naming the file and ending in ``fix`` (what to do about it) when it is
    unreadable, not JSON, not an object or lacks a key, and ``FileNotFoundError`` when it is
    missing.
    """
    path = Path(path)
    try:
        content = read_json(path, fix=fix)
    except UnicodeDecodeError:
        raise ValueError(f"{path} ({what}) is not a text file; {fix}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} ({what}) is a directory, not a file; remove it") from None
    except PermissionError as err:
        raise ValueError(f"{path} ({what}) cannot be read ({err.strerror})") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} ({what}) holds a JSON {type(content).__name__}, not an object; {fix}"
        )
    missing = [key for key in keys if key not in content]
    if missing:
        raise ValueError(f"{path} ({what}) lacks {', '.join(map(repr, missing))}; {fix}")
    return content


def load_runhistory(path: str | Path, configspace: ConfigurationSpace) -> RunHistory:
    """Load a ``runhistory.json``, failing loudly where ``RunHistory.load`` would start empty."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no runhistory at {path}; pass the runhistory.json written by run_optimizer or SMAC."
        )
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not {"data", "configs"} <= data.keys():
            raise ValueError("missing 'data' or 'configs'")
        if not isinstance(data["data"], list) or not isinstance(data["configs"], dict):
            raise ValueError("'data' is not a list or 'configs' not an object")
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not a SMAC runhistory ({err}); delete it to start the run afresh."
        ) from err
    runhistory = RunHistory()
    runhistory.load(path, configspace)
    return runhistory


def drop_unfinished_trials(runhistory_file: Path) -> int:
    """Forget trials a killed run left as RUNNING so that the resumed run evaluates them again.

    SMAC saves a trial as RUNNING when it is submitted; after a kill it would stay RUNNING forever
    and still count towards ``n_trials``. Returns how many trials were dropped.
    """
    from smac.runhistory import StatusType

    from safs_smac._io import atomic_write_json

    if not runhistory_file.exists():
        return 0
    content = read_state(runhistory_file, "the run history", keys=("data",))
    finished = [t for t in content["data"] if t.get("status") != StatusType.RUNNING]
    dropped = len(content["data"]) - len(finished)
    if dropped:
        content["data"] = finished
        content["stats"] = {"submitted": len(finished), "finished": len(finished), "running": 0}
        atomic_write_json(runhistory_file, content)
    return dropped
