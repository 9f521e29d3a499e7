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

Types, registry and protocol: :mod:`.core`; file formats: :mod:`.formats`; the registered data
sets: :mod:`.loaders`.
"""

from safs_smac.data import loaders as _loaders  # noqa: F401  (registers the data sets)
from safs_smac.data.core import (
    AUGMENTATIONS,
    Dataset,
    Loader,
    RawData,
    Split,
    list_datasets,
    load_dataset,
    register_dataset,
)

__all__ = [
    "AUGMENTATIONS",
    "Dataset",
    "Loader",
    "RawData",
    "Split",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
