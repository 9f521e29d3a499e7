"""File-format readers of the on-disk data sets: MNIST IDX (optionally gzipped) and the
CIFAR-10 / ImageNet16 batch pickles.

Parsing uses ``np.frombuffer`` and an unpickler that only rebuilds numpy arrays (no arbitrary
code); every error names the file and how to obtain a good copy. Imports numpy.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------------
# File-format readers
# --------------------------------------------------------------------------------------------


def _read_bytes(path: Path, hint: str) -> bytes:
    """Read a file, transparently gunzipping it (detected by magic bytes, not by name)."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is a corrupt gzip file ({exc}); {hint}") from exc


_IDX_UBYTE = 0x08


def _read_idx(path: Path, ndim: int, hint: str) -> np.ndarray:
    """Parse an IDX file (the MNIST format) holding unsigned bytes with ``ndim`` dimensions.

    Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, one big-endian
    uint32 per dimension, then the row-major data.
    """
    raw = _read_bytes(path, hint)
    expected_magic = (_IDX_UBYTE << 8) | ndim
    if len(raw) < 4:
        raise ValueError(f"{path} is truncated ({len(raw)} bytes, no IDX header); {hint}")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise ValueError(
            f"{path} is not a {ndim}-d uint8 IDX file (magic number 0x{magic:08x}, expected "
            f"0x{expected_magic:08x}); {hint}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated inside the IDX header; {hint}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise ValueError(
            f"{path} holds {len(raw) - header:,} data bytes but its header declares "
            f"{math.prod(dims):,} for shape {dims} (truncated or corrupt); {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays: dataset files must not be able to run code."""

    _ALLOWED = frozenset(
        {
            ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol <= 2
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),  # files written with numpy 1.x
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),  # protocol 5
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_batch_pickle(path: Path, hint: str, row_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR / ImageNet16 batch: a pickled dict with ``data`` (N x row_bytes uint8) and
    ``labels`` (N ints). Keys may be str or bytes (Python 2 pickles)."""
    try:
        with path.open("rb") as f:
            # latin1 is what numpy requires for arrays pickled by Python 2 (the CIFAR files).
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as exc:  # the exception types a truncated or foreign pickle raises
        raise ValueError(f"{path} is not a readable batch pickle ({exc!r}); {hint}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a batch dict; {hint}")
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in entry or "labels" not in entry:
        raise ValueError(
            f"{path} lacks the 'data'/'labels' entries of a batch file (has "
            f"{sorted(map(str, entry))}); {hint}"
        )
    data = np.asarray(entry["data"])
    try:
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} has non-integer labels ({exc}); {hint}") from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row_bytes:
        raise ValueError(
            f"{path} has data of type {data.dtype} and shape {data.shape}, expected uint8 "
            f"(N, {row_bytes}); {hint}"
        )
    if labels.shape != (len(data),):
        raise ValueError(f"{path} has {labels.size} labels for {len(data)} images; {hint}")
    return data, labels


def _find_dir(root: Path, subdirs: Sequence[str], marker: str) -> Path | None:
    """First of ``root/<subdir>`` (then ``root`` itself) that contains ``marker``."""
    for candidate in [*(root / s for s in subdirs), root]:
        if any((candidate / name).is_file() for name in (marker, marker + ".gz")):
            return candidate
    return None


def _missing(key: str, what: Path, layout: str, obtain: str) -> FileNotFoundError:
    return FileNotFoundError(f"{key} data not found at {what}: expected {layout}; {obtain}")


def _require_files(
    key: str, root: Path, folder: Path | None, names: Sequence[str], layout: str, obtain: str
) -> Path:
    """Return ``folder`` if it holds every file in ``names``, else raise naming the first gap."""
    if folder is None:
        raise _missing(key, root, layout, obtain)
    for name in names:
        if not (folder / name).is_file():
            raise _missing(key, folder / name, layout, obtain)
    return folder


def _check_labels(path: Path, labels: np.ndarray, low: int, high: int, hint: str) -> None:
    if labels.size and (labels.min() < low or labels.max() > high):
        raise ValueError(
            f"{path} has labels in [{labels.min()}, {labels.max()}], expected [{low}, {high}]; "
            f"{hint}"
        )
