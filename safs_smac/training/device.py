"""Where training runs: device choice, seeding, device-resident data, normalisation and augmentation
per batch on the device, autocast.
"""

from __future__ import annotations

import contextlib
import random
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from safs_smac.data import Dataset


from safs_smac.training.recipe import _AUGMENT_PADDING, FitState, _check_int

# --------------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device into a device.

    ``"auto"`` picks CUDA when available and the CPU otherwise. The CUDA device always carries its
    index so that device comparisons are exact.

    Raises
    ------
    ValueError
        If the device is unknown or not available on this machine.
    """
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda", torch.cuda.current_device())
            return torch.device("cpu")
        try:
            resolved = torch.device(text)
        except RuntimeError:
            raise ValueError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
            ) from None
    elif isinstance(device, torch.device):
        resolved = device
    else:
        raise ValueError(
            f"device must be a string or torch.device, got {type(device).__name__}; "
            "use 'auto', 'cpu' or 'cuda'"
        )

    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(resolved)!r} requested but CUDA is not available "
                f"(torch {torch.__version__}); use device='cpu' or device='auto'"
            )
        index = torch.cuda.current_device() if resolved.index is None else resolved.index
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"device 'cuda:{index}' requested but only {count} CUDA device(s) exist; "
                f"use an index in 0..{count - 1}"
            )
        return torch.device("cuda", index)
    if resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but MPS is not available; use device='cpu'")
        return torch.device("mps")
    raise ValueError(f"unsupported device {str(resolved)!r}; use 'auto', 'cpu' or 'cuda'")


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all CUDA devices).

    :func:`fit` does not need this (it seeds its own generators and restores the global torch RNG
    afterwards); use it before building a model so that its initialisation is reproducible.
    """
    _check_int("seed", seed, minimum=0)
    if seed >= 2**32:
        raise ValueError(f"seed must be < 2**32, got {seed}; pass a smaller seed")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# (id of the source tensor, device) -> (weak reference to the source tensor, copy on the device).
# The weak reference's callback drops the entry as soon as the source tensor is garbage collected,
# so the device copy lives exactly as long as the Dataset it came from.
_DEVICE_COPIES: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}


def _on_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Return ``tensor`` on ``device``, copying it at most once per (tensor, device)."""
    if tensor.device == device:
        return tensor
    key = (id(tensor), str(device))
    hit = _DEVICE_COPIES.get(key)
    if hit is not None and hit[0]() is tensor:
        return hit[1]
    copy = tensor.to(device).contiguous()
    source = weakref.ref(tensor, lambda _ref, key=key: _DEVICE_COPIES.pop(key, None))
    _DEVICE_COPIES[key] = (source, copy)
    return copy


def clear_device_cache() -> None:
    """Drop every cached device copy of dataset splits (frees accelerator memory)."""
    _DEVICE_COPIES.clear()


class _Normalizer:
    """``(x / 255 - mean) / std`` for a ``uint8`` batch, fused into one multiply-add."""

    def __init__(self, dataset: Dataset, device: torch.device, channels_last: bool) -> None:
        mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(device)
        self.shift = (-mean / std).to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x.to(dtype=torch.float32, memory_format=self.memory_format)
        return out.mul_(self.scale).add_(self.shift)


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding plus random horizontal flip, for a whole batch at once.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()`` applied
    to every image independently, but done with one ``gather`` on the device. Apply it to raw
    pixels (before normalisation) so the padding is black, as in the usual CIFAR recipe.

    Parameters
    ----------
    x
        Batch ``(N, C, H, W)`` of any dtype; the result has the same shape, dtype and device.
    generator
        Source of randomness; must live on ``x.device``.
    padding
        Pixels of zero padding on each side, i.e. the maximal shift.
    """
    if x.dim() != 4:
        raise ValueError(f"crop_flip expects a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    device = x.device
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    width = w + 2 * padding
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=generator, device=device)
    flip = torch.randint(0, 2, (n, 1, 1), generator=generator, device=device).bool()
    rows = top + torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    cols = left + torch.where(flip, (w - 1) - cols, cols)
    index = (rows * width + cols).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


# --------------------------------------------------------------------------------------------------
# Optimizer and scheduler


def _augmenter(name: str | None) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    if name is None:
        return None
    if name == "crop_flip":
        return lambda x, gen: crop_flip(x, gen, _AUGMENT_PADDING)
    raise ValueError(f"unknown augmentation {name!r}; valid augmentations: crop_flip, None")


def _to_device(model: nn.Module, device: torch.device) -> None:
    model.to(device)
    if device.type == "cuda":
        # Only 4-D tensors (conv weights) change layout; channels_last feeds tensor cores directly.
        model.to(memory_format=torch.channels_last)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _training_context(
    device: torch.device, seed: int, resume: FitState | None = None
) -> Iterator[None]:
    """Seed the global torch RNG (dropout) for this fit only, or restore it from ``resume``, and
    tune cuDNN for fixed shapes."""
    cuda_devices = [device.index] if device.type == "cuda" else []
    benchmark = torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if resume is not None:
            torch.set_rng_state(resume.torch_rng)
            if device.type == "cuda" and resume.cuda_rng is not None:
                torch.cuda.set_rng_state(resume.cuda_rng, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = benchmark
