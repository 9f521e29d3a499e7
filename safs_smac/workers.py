"""What one trial process may use: torch threads and, on a multi-GPU machine, which GPU.

SMAC runs trials on Dask workers (:mod:`safs_smac.parallel`). Each worker is its own process, so
two things must be decided inside it, at the start of a trial:

* **Threads.** Dask starts workers with ``OMP_NUM_THREADS=1``; left alone, torch would then use one
  core per worker however many the machine has. :func:`configure_worker` sets
  ``torch.set_num_threads`` to the problem's ``num_threads`` (``optimize`` sets it to
  ``cores // n_workers`` for the local cluster it starts) or, on a user's cluster, to the cores this
  process may use divided by the trials the worker runs at a time.
* **GPU.** With ``device="auto"`` and several visible GPUs, worker ``i`` trains on
  ``cuda:(i % n_gpus)`` (round-robin), so that parallel trials do not all land on ``cuda:0``.
* **Memory allocator.** Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
  (``distributed.nanny.pre-spawn-environ``). Setting a trim threshold switches off glibc's
  dynamic mmap threshold, so every tensor buffer above 128 KiB is mapped and unmapped afresh and
  CPU training runs several times slower. Any cluster that did not unset it (SMAC's own
  ``Scenario(n_workers=N)`` runner, a user's ``LocalCluster``) gets glibc's thresholds put back
  at their dynamic ceilings with ``mallopt`` (:func:`restore_malloc_thresholds`) at the first
  trial; only where that is impossible is a warning logged.

Outside a Dask worker nothing changes. Imports only the standard library (``ctypes`` for glibc's
``mallopt``); torch and distributed are imported where they are needed.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
import sys
from typing import Any

__all__ = [
    "available_cores",
    "configure_worker",
    "current_worker",
    "pin_device",
    "restore_malloc_thresholds",
    "threads_per_worker",
    "worker_index",
]

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's ceiling for its dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX: 32 MiB on 64-bit),
#: which a default process reaches once it has freed buffers that large; the trim threshold then
#: follows at twice the mmap threshold. The largest values mallopt accepts.
MMAP_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a SLURM allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """Torch threads of each of ``n_workers`` trial processes sharing ``cores`` (default: all)."""
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    cores = available_cores() if cores is None else int(cores)
    return max(1, cores // n_workers)


def current_worker() -> Any | None:
    """The Dask worker running this code, or ``None`` outside one."""
    if "distributed" not in sys.modules:  # never import Dask just to learn we are not in it
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:  # "No worker found": an ordinary process
        return None


def worker_index(name: Any) -> int | None:
    """Position of a worker from its Dask name: ``3`` or ``"3"`` (LocalCluster), the trailing
    number of ``"SLURMCluster-3"`` or ``"SLURMCluster-3-1"`` (dask-jobqueue); ``None`` otherwise."""
    if isinstance(name, int):
        return name
    match = re.search(r"(\d+)$", str(name))
    return int(match.group(1)) if match else None


def pin_device(device: str, *, index: int | None, n_gpus: int) -> str:
    """The device of worker ``index``: ``cuda:(index % n_gpus)`` for ``"auto"`` with several GPUs.

    Any explicit device (``"cpu"``, ``"cuda:1"``) is kept; so is ``"auto"`` with at most one GPU
    or an unknown worker index.
    """
    if device != "auto" or n_gpus < 2 or index is None:
        return device
    return f"cuda:{index % n_gpus}"


def configure_worker(device: str, num_threads: int | None = None) -> str:
    """Set this process's torch threads and return the device its trials should use.

    ``num_threads`` is applied wherever it is given. Inside a Dask worker without it, torch gets
    the process's cores divided by the worker's concurrent trials (its Dask threads). Outside a
    Dask worker, the device is returned unchanged.
    """
    import torch

    worker = current_worker()
    if worker is not None and "MALLOC_TRIM_THRESHOLD_" in os.environ:
        _undo_malloc_trim()
    if num_threads is None and worker is not None:
        num_threads = max(1, available_cores() // max(1, _worker_threads(worker)))
    if num_threads is not None and torch.get_num_threads() != num_threads:
        torch.set_num_threads(int(num_threads))
    if worker is None or device != "auto":
        return device
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pin_device(device, index=worker_index(worker.name), n_gpus=n_gpus)


def restore_malloc_thresholds() -> bool:
    """Give glibc's malloc back the thresholds a default process would reach.

    Sets the mmap threshold to :data:`MMAP_THRESHOLD` and the trim threshold to
    :data:`TRIM_THRESHOLD` with ``mallopt``: buffers below 32 MiB are then reused from the heap
    instead of being mapped and unmapped on every allocation, whatever ``MALLOC_TRIM_THRESHOLD_``
    the process started with. Returns ``False`` (and changes nothing) without glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 for a value out of range.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@functools.cache
def _undo_malloc_trim() -> None:
    """Once per process: undo the nanny's ``MALLOC_TRIM_THRESHOLD_``, or warn if impossible."""
    value = os.environ["MALLOC_TRIM_THRESHOLD_"]
    if restore_malloc_thresholds():
        logger.info(
            "this Dask worker started with MALLOC_TRIM_THRESHOLD_=%s; glibc's mmap/trim "
            "thresholds were set to %d/%d bytes so that torch CPU training keeps its speed",
            value,
            MMAP_THRESHOLD,
            TRIM_THRESHOLD,
        )
        return
    logger.warning(
        "this Dask worker runs with MALLOC_TRIM_THRESHOLD_=%s, which makes torch CPU training "
        "several times slower, and glibc's mallopt is not available to undo it; start the "
        "cluster with the Dask setting distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_ "
        "set to null",
        value,
    )


def _worker_threads(worker: Any) -> int:
    state = getattr(worker, "state", None)
    return int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1) or 1)
