"""SAFS spaces as JSON or YAML files: :func:`save_space` (atomic) and :func:`load_space` (checked).

Imports ConfigSpace, PyYAML, :mod:`safs_smac._io` and the space's :mod:`.build` and :mod:`.check`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from ConfigSpace import ConfigurationSpace

from safs_smac._io import atomic_write_text
from safs_smac.space.build import _ACT, _ALPHA, _FT, _check_choice
from safs_smac.space.check import check_space

__all__ = ["load_space", "save_space", "space_to_text"]

_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def _file_format(path: Path, format: str | None) -> str:
    if format is not None:
        fmt = format.lower()
        _check_choice("format", fmt, ("json", "yaml"))
        return fmt
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix; name it *.json, *.yaml or "
            "*.yml, or pass format='json' or 'yaml'"
        )
    return fmt


def space_to_text(space: ConfigurationSpace, format: str = "json") -> str:
    """ConfigSpace's serialised form of ``space`` as JSON or YAML text (what save_space writes)."""
    fmt = format.lower()
    _check_choice("format", fmt, ("json", "yaml"))
    data = space.to_serialized_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    # Keep ConfigSpace's key order (name, hyperparameters, conditions, ...): easier to read.
    return yaml.safe_dump(data, sort_keys=False)


def save_space(space: ConfigurationSpace, path: str | Path, format: str | None = None) -> None:
    """Write ``space`` as JSON or YAML (format from the suffix unless given), atomically.

    The file is written next to its destination and moved into place with ``os.replace``, so
    readers never see a half-written space.
    """
    path = Path(path)
    atomic_write_text(path, space_to_text(space, _file_format(path, format)))


def load_space(path: str | Path, format: str | None = None) -> ConfigurationSpace:
    """Read a SAFS space written by :func:`save_space` (or ConfigSpace's ``to_json``/``to_yaml``).

    The format comes from the suffix (``.json``, ``.yaml``, ``.yml``) unless given.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be parsed, holds a space without SAFS hyperparameters, or one the
        trainer cannot run (see :func:`~safs_smac.space.check.check_space`); the message names
        the file and the key.
    """
    path = Path(path)
    fmt = _file_format(path, format)
    regenerate = "regenerate it with `safs-smac space --model M --stage S --format " + fmt + "`"
    if not path.is_file():
        raise FileNotFoundError(f"configuration space file {str(path)!r} not found; {regenerate}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(
            f"{str(path)!r} is not valid {fmt.upper()} ({_first_line(err)}); {regenerate}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("hyperparameters"), list):
        raise ValueError(
            f"{str(path)!r} is not a serialised ConfigSpace (no 'hyperparameters' list); "
            f"{regenerate}"
        )
    try:
        space = ConfigurationSpace.from_serialized_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(
            f"{str(path)!r} holds a malformed configuration space ({_first_line(err)}); "
            f"{regenerate}"
        ) from None
    if not any(key.startswith((_ACT, _ALPHA, _FT)) for key in space):
        raise ValueError(
            f"{str(path)!r} holds a configuration space without SAFS hyperparameters (act:*, "
            f"alpha:*, ft:*); load it with ConfigurationSpace.from_{fmt}, or {regenerate}"
        )
    check_space(space, repr(str(path)))
    return space


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
