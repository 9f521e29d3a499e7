"""The problem's checkpoints: the seeded dense model, its training and its pruning by the problem's
schedule, cached on disk (a mixin of :class:`~safs_smac.problem.SAFSProblem`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from safs_smac import pruning as pruning_lib
from safs_smac import sites
from safs_smac._version import __version__
from safs_smac.cache import CheckpointCache
from safs_smac.models import create_model
from safs_smac.problem.outcome import CACHE_VERSION
from safs_smac.space import TrialSpec
from safs_smac.training import evaluate, fit, resolve_device

logger = logging.getLogger(__name__)


class CheckpointsMixin:
    """Dense training and pruning of :class:`~safs_smac.problem.SAFSProblem`, cached."""

    def _fresh_model(self) -> nn.Module:
        if self._user_model is not None:
            return copy.deepcopy(self._user_model)
        kwargs = dict(self.model_kwargs)
        if self._dataset is not None:
            kwargs.setdefault("num_classes", self._dataset.num_classes)
            kwargs.setdefault("in_channels", self._dataset.in_channels)
            kwargs.setdefault("input_size", self._dataset.input_size)
        return self._seeded_model(**kwargs)

    def _model_for_data(self) -> nn.Module:
        data = self.dataset
        if self._user_model is not None:
            return copy.deepcopy(self._user_model)
        kwargs = {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "input_size": data.input_size,
            **self.model_kwargs,
        }
        return self._seeded_model(**kwargs)

    def _seeded_model(self, **kwargs: Any) -> nn.Module:
        # The initial weights come from the problem's seed, not from whatever state the global RNG
        # is in: the same seed must train the same dense model in any process, on a fresh cache.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return create_model(self.model_name, **kwargs)

    def _dense_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "cache_version": CACHE_VERSION,
            "package": __version__,
            "torch": torch.__version__.split("+")[0],
            "model": self.model_name,
            "model_kwargs": self.model_kwargs,
            "dataset": self.dataset.fingerprint(),
            "seed": self.seed,
            "recipe": self.recipe.to_dict(),
            "dense_epochs": self.dense_epochs,
        }
        if self._user_model is not None:
            fields["user_model"] = _module_fingerprint(self._user_model)
        return fields

    def dense_checkpoint(self) -> dict[str, Any]:
        """State dict and metrics of the trained dense model (trained once, then cached)."""
        if self._dense_state is None:
            cache = CheckpointCache(self.cache_dir)
            payload, _ = cache.get_or_create("dense", self._dense_fields(), self._train_dense)
            self._dense_state = payload
        return self._dense_state

    def _train_dense(self) -> dict[str, Any]:
        model = self._model_for_data()
        device = resolve_device(self.device)
        result = None
        if self.dense_epochs > 0:
            result = fit(
                model,
                self.dataset,
                self.recipe.replace(epochs=self.dense_epochs),
                device=device,
                seed=self.seed,
                evaluate_val=False,
            )
            if result.diverged:
                raise RuntimeError(
                    f"dense training of {self.model_name} diverged ({result.reason}); "
                    "lower the learning rate with finetune_recipe={'lr': ...}"
                )
        val = evaluate(model, self.dataset.val, self.dataset, device=device)
        test = evaluate(model, self.dataset.test, self.dataset, device=device)
        logger.info(
            "dense %s: val %.4f test %.4f (%d epochs)",
            self.model_name,
            val.accuracy,
            test.accuracy,
            self.dense_epochs,
        )
        return {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "metrics": {
                "val_accuracy": val.accuracy,
                "test_accuracy": test.accuracy,
                "epochs": self.dense_epochs,
                "seconds": 0.0 if result is None else result.seconds,
            },
        }

    def pruned_checkpoint(self, rate: float | None = None) -> dict[str, Any]:
        """Weights, masks and sparsity report of the dense model pruned at ``rate`` (cached)."""
        rate = self.pruning_rate if rate is None else float(rate)
        if rate not in self._pruned_states:
            fields = self._pruned_fields(rate)

            def build() -> dict[str, Any]:
                model = self._model_for_data()
                model.load_state_dict(self.dense_checkpoint()["state_dict"])
                start = time.perf_counter()
                report = self.prune_schedule.prune(
                    model, rate, scope=self.pruning, finetune=self._finetune_between_rounds
                )
                masks = pruning_lib.get_masks(model)
                pruning_lib.make_permanent(model)
                return {
                    "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "masks": masks,
                    "sparsity": report.sparsity,
                    "prune_epochs": self.prune_schedule.epochs,
                    "prune_seconds": time.perf_counter() - start,
                }

            payload, _ = CheckpointCache(self.cache_dir).get_or_create("pruned", fields, build)
            self._pruned_states[rate] = payload
        return self._pruned_states[rate]

    def _pruned_fields(self, rate: float) -> dict[str, Any]:
        """The cache key of the checkpoint pruned at ``rate``."""
        fields = {**self._dense_fields(), "pruning": self.pruning, "rate": rate}
        if self.prune_schedule.name != "one-shot":  # keeps one-shot cache keys unchanged
            fields["schedule"] = self.prune_schedule.settings()
        return fields

    def _finetune_between_rounds(
        self, model: nn.Module, epochs: int, overrides: Mapping[str, Any]
    ) -> None:
        """Fine-tuning between two rounds of a pruning schedule (default activation, no search)."""
        recipe = self.recipe.replace(**dict(overrides), epochs=int(epochs))
        result = fit(
            model,
            self.dataset,
            recipe,
            device=resolve_device(self.device),
            seed=self.seed,
            evaluate_val=False,
        )
        if result.diverged:
            raise RuntimeError(
                f"fine-tuning between pruning rounds diverged ({result.reason}); pass a schedule "
                "with a lower learning rate, e.g. Gradual(recipe={'lr': 0.001})"
            )

    @property
    def prune_epochs(self) -> int:
        """Fine-tuning epochs the pruning schedule spent before any search (0 for one-shot)."""
        return int(self.prune_schedule.epochs)

    def dense_metrics(self) -> dict[str, float]:
        """Validation and test accuracy of the dense model."""
        return dict(self.dense_checkpoint()["metrics"])

    def spec_model(self, spec: TrialSpec) -> nn.Module:
        """A fresh copy of the pruned model with the activations ``spec`` asks for."""
        model = sites.set_activations(
            self.pruned_model(spec.prune_rate),
            spec.operators,
            alpha=spec.alpha,
            beta=spec.beta,
            learnable=spec.learn_scales,
            example_input=self.example_input,
        )
        if spec.learn_operator_params:
            for act in sites.searchable_activations(model).values():
                act.op.requires_grad_(True)
        return model

    def finetune_model(
        self, spec: TrialSpec, *, seed: int, epochs: int
    ) -> tuple[nn.Module, Callable[[int, dict[str, float]], None] | None]:
        """:meth:`spec_model` set up by the pruning strategy for a fine-tune of ``epochs``.

        Returns the model and the strategy's per-epoch step: a strategy that trains sparse (SET)
        draws its topology here and changes it after every epoch; the others return None.
        """
        model = self.spec_model(spec)
        rate = self.pruning_rate if spec.prune_rate is None else float(spec.prune_rate)
        step = self.prune_schedule.begin_finetune(model, rate=rate, seed=seed, epochs=epochs)
        return model, step

    def pruned_model(self, rate: float | None = None) -> nn.Module:
        """A fresh copy of the pruned model with its masks attached (default activations)."""
        state = self.pruned_checkpoint(rate)
        model = self._model_for_data()
        model.load_state_dict(state["state_dict"])
        pruning_lib.apply_masks(model, state["masks"])
        return model


def _module_fingerprint(module: nn.Module) -> str:
    import hashlib

    digest = hashlib.sha256(repr(module).encode("utf-8"))
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]
