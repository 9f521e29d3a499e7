"""Budget continuation's states of a problem: where they live, how big they are, releasing them
(a mixin of :class:`~safs_smac.problem.SAFSProblem`).
"""

from __future__ import annotations

from typing import Any

import torch

from safs_smac.cache import CheckpointCache, cache_key
from safs_smac.problem.outcome import CONTINUATION_VERSION
from safs_smac.space import (
    TrialSpec,
)
from safs_smac.training import FitState, Recipe

# Continuation states live under <cache>/continuation/<problem namespace>/.
_CONTINUATION_KIND = "continuation"


class ContinuationMixin:
    """The continuation states of :class:`~safs_smac.problem.SAFSProblem`."""

    def _continuation_namespace(self) -> str:
        """The cache folder of this problem's continuation states (see ``release_continuations``).

        Everything a trial's start and schedule depend on besides its configuration and seed:
        two problems that share it (e.g. the two stages of a staged run) train a configuration
        identically and may continue each other's states.
        """
        fields = {
            "version": CONTINUATION_VERSION,
            **self._dense_fields(),
            "pruning": self.pruning,
            "prune_schedule": self.prune_schedule.settings(),
            "max_budget": self.max_budget,
        }
        return f"{_CONTINUATION_KIND}/{cache_key(fields)}"

    def _continuation_entry(
        self, spec: TrialSpec, seed: int, recipe: Recipe, horizon: int, device: torch.device
    ) -> tuple[str, dict[str, Any]]:
        """Cache kind and key of the continuation state of ``spec`` at ``seed``."""
        rate = self.pruning_rate if spec.prune_rate is None else float(spec.prune_rate)
        key = {
            "pruned": self._pruned_fields(rate),
            "operators": dict(spec.operators),
            "alpha": spec.alpha,
            "beta": spec.beta,
            "learn_scales": spec.learn_scales,
            "recipe": {**recipe.to_dict(), "epochs": None},
            "horizon": horizon,
            "seed": int(seed),
            # A CUDA state (bf16 autocast, its generator) cannot continue on the CPU or vice versa.
            "device": device.type,
        }
        if spec.learn_operator_params:  # only when set: the keys of other specs stay valid
            key["learn_operator_params"] = True
        return self._continuation_namespace(), key

    def _fetch_continuation(self, entry: tuple[str, dict[str, Any]]) -> FitState | None:
        """The cached state of ``entry`` (a fine-tune continues it if it is not longer)."""
        saved = CheckpointCache(self.cache_dir).fetch(*entry)
        return None if saved is None else FitState.from_dict(saved)

    def _store_continuation(
        self, entry: tuple[str, dict[str, Any]], state: FitState | None, saved: FitState | None
    ) -> None:
        """Keep the state a fine-tune ended with (``None``: it was the full one), for a longer
        one to continue from; ``saved`` is the state it continued from."""
        cache = CheckpointCache(self.cache_dir)
        if state is None:  # the full fine-tune: nothing longer can continue from it
            cache.remove(*entry)
        elif saved is None or saved.epochs < state.epochs:  # never replace a longer state
            cache.store(*entry, state.to_dict())
            cache.evict(_CONTINUATION_KIND, self.continuation_max_bytes)

    def continuation_bytes(self) -> int:
        """Bytes of this problem's continuation states in the cache."""
        return CheckpointCache(self.cache_dir).size(self._continuation_namespace())

    def release_continuations(self) -> int:
        """Delete this problem's continuation states; returns the bytes freed.

        Call it when a run is finished with the problem (after its last trial). Any problem with
        the same dense model, pruning and ``max_budget`` shares the states: one still searching
        then starts its next promotions from scratch (same results, more epochs).
        """
        return CheckpointCache(self.cache_dir).clear(self._continuation_namespace())
