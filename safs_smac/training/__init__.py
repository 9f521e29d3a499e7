"""Fine-tuning and evaluation engine: one in-memory, seeded training loop for every model/device.

Every SAFS trial is a fine-tune of a pruned network, so this loop is the hot path of the whole
search. It is written for throughput without giving up reproducibility:

* The dataset splits live on the device as ``uint8`` (4x smaller than float). They are copied there
  once and the copy is cached for as long as the source tensor lives, so the hundreds of fits of a
  search on the same :class:`~safs_smac.data.Dataset` pay for the transfer once.
* Batches are drawn by index from a permutation made with a seeded :class:`torch.Generator`;
  normalisation and the ``crop_flip`` augmentation run per batch, vectorised, on the device.
  There is no DataLoader, no worker process and no per-sample Python.
* On CUDA the model and inputs use ``channels_last`` and the forward pass runs under bf16 autocast
  (no loss scaling needed); on CPU everything is fp32 and the result is bit-for-bit reproducible for
  a seed.
* A non-finite loss ends the fit early with ``FitResult(diverged=True)``; it never raises,
  because a diverging configuration is a legitimate (bad) outcome for the optimizer proposing it.
* Parameters of :class:`~safs_smac.activations.SearchableActivation` modules (the learned
  ``alpha`` and ``beta`` scales and the operator's own parameters) get no weight decay unless asked
  for: the reference decays them towards zero, which silently switches activations off.
"""

from safs_smac.training.batched import BatchingUnsupported, MemberResult, fit_batched
from safs_smac.training.device import (  # the private names: tests read them here
    _DEVICE_COPIES,  # noqa: F401
    _on_device,  # noqa: F401
    clear_device_cache,
    crop_flip,
    resolve_device,
    seed_everything,
)
from safs_smac.training.loop import _LossTracker, evaluate, fit  # noqa: F401
from safs_smac.training.optim import build_optimizer, build_scheduler, parameter_groups
from safs_smac.training.recipe import (
    ACCELERATOR_CHECK_EVERY,
    OPTIMIZERS,
    SCHEDULERS,
    EvalResult,
    FitResult,
    FitState,
    Recipe,
)

__all__ = [
    "ACCELERATOR_CHECK_EVERY",
    "OPTIMIZERS",
    "SCHEDULERS",
    "BatchingUnsupported",
    "EvalResult",
    "FitResult",
    "FitState",
    "MemberResult",
    "Recipe",
    "build_optimizer",
    "build_scheduler",
    "clear_device_cache",
    "crop_flip",
    "evaluate",
    "fit",
    "fit_batched",
    "parameter_groups",
    "resolve_device",
    "seed_everything",
]
