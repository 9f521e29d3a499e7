"""The SAFS problem: settings, search space, target function and final evaluation."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ConfigSpace import Configuration, ConfigurationSpace
from torch import nn

from safs_smac import pruning as pruning_lib
from safs_smac import sites
from safs_smac import sparse_training as _sparse_training  # noqa: F401 (registers "ap", "set")
from safs_smac.cache import default_cache_dir
from safs_smac.data import Dataset, load_dataset
from safs_smac.diagnostics import dead_neuron_rate, probe_inputs
from safs_smac.models import model_info
from safs_smac.problem.arguments import check_arguments, resolve_pruning
from safs_smac.problem.batched import BatchedTrialsMixin
from safs_smac.problem.checkpoints import CheckpointsMixin
from safs_smac.problem.continuation import ContinuationMixin
from safs_smac.problem.outcome import (
    CONTINUATION_MAX_BYTES,
    WORST_COST,
    FinalEvaluation,
    _jsonable,
    _scalar_or_list,
    trial_cost,
)
from safs_smac.space import (
    TrialSpec,
    build_space,
    check_config,
    check_config_values,
    decode_config,
)
from safs_smac.training import Recipe, evaluate, fit, resolve_device
from safs_smac.workers import configure_worker


class SAFSProblem(CheckpointsMixin, ContinuationMixin, BatchedTrialsMixin):
    """Sparse activation function search on one pruned model and data set.

    Parameters
    ----------
    model
        A zoo name (see :func:`safs_smac.models.list_models`) or your own ``nn.Module``. A module is
        deep-copied; with ``dense_epochs=0`` its weights are taken as the trained dense model.
    dataset
        A data set name (see :func:`safs_smac.data.list_datasets`) or a
        :class:`~safs_smac.data.Dataset`.
    pruning_rate
        Fraction of prunable weights set to zero, ``0 <= rate < 1`` (paper: 0.99).
    pruning
        ``"layerwise"`` (the paper's LWM: every layer at ``pruning_rate``) or ``"global"``; or a
        pruning strategy (a ``prune_schedule`` value other than ``"one-shot"``), which then runs at
        the first scope it supports: ``pruning="ap"`` means ``pruning="global",
        prune_schedule="ap"`` (same settings), ``pruning=SETPruning(epsilon=20)`` SET.
    prune_schedule
        How the dense model reaches ``pruning_rate``: ``"one-shot"`` (the paper), ``"gradual"``
        (gradual magnitude pruning, 6 rounds with 3 fine-tuning epochs between them), ``"ap"``
        (Activating-while-Pruning, global only), ``"set"`` (sparse evolutionary training: every
        fine-tune starts from Erdos-Renyi masks and rewires them after each epoch, see
        :class:`~safs_smac.sparse_training.SETPruning`), or a
        :class:`~safs_smac.pruning.PruningSchedule` such as ``Gradual(rounds=4)``. The search
        starts from the checkpoint it produces; its epochs are reported as ``prune_epochs``.
    objective
        ``"accuracy"`` (default: ``1 - val accuracy`` with a validation-loss tie-break, see
        :func:`trial_cost`) or ``"error"`` (plain ``1 - val accuracy``, as in the paper).
    data_root
        Directory holding the on-disk data sets; not needed for ``mnist-5k`` and ``synthetic``.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``.
    cache_dir
        Where dense and pruned checkpoints are cached (default ``$SAFS_SMAC_CACHE`` or
        ``~/.cache/safs-smac``).
    seed
        Seed of dense training; trials get their own seed from the optimizer.
    dense_epochs
        Epochs of dense training (``None``: the model's default for CPU-sized runs).
    max_budget
        Fine-tuning epochs of a trial evaluated with ``budget=None`` (the full fidelity).
    stage, granularity, operators, flat, search_rate, fixed_operators
        Shape of the search space, see :func:`safs_smac.space.build_space`. ``fixed_operators``
        (site -> operator) are the operators used where the space has none (stage ``scales_hpo``).
    finetune_recipe
        Overrides of the model's default fine-tuning recipe (the "dense recipe"),
        e.g. ``{"lr": 0.01}``.
    dataset_kwargs, model_kwargs
        Passed to :func:`~safs_smac.data.load_dataset` / :func:`~safs_smac.models.create_model`.
    num_threads
        Torch threads of a trial (``None``: torch's default; on a Dask worker, the worker's share
        of the cores, see :mod:`safs_smac.workers`). ``optimize`` sets it for the workers it
        starts. Not part of :meth:`settings`: it changes speed, not results.
    continue_trials
        Budget continuation (default on): every fine-tuning schedule spans ``max_budget`` epochs,
        so a trial at budget ``b`` is the first ``b`` epochs of the full fine-tune; the state at
        its end is kept in the cache, and a later trial of the same configuration and seed at a
        higher budget (a promotion, or a revisit) continues from it instead of starting again.
        The result is the same as without it (bit for bit on CPU), so it is not part of
        :meth:`settings` either; only the epochs run (the ``epochs`` a trial reports) drop.
    continuation_max_bytes
        Cap on the bytes of continuation states in ``cache_dir``: the least recently used are
        evicted beyond it. States of a configuration that reached ``max_budget`` are deleted at
        once; :meth:`release_continuations` deletes the rest of this problem's at the end of a run.
    example_input
        An input batch of your own ``model`` (e.g. ``torch.zeros(1, 3, 32, 32)``), needed only when
        torch.fx cannot trace it: its activation modules are then found by running it once (they
        must be distinct ``nn.Module`` instances). Not part of :meth:`settings`.
    """

    def __init__(
        self,
        model: str | nn.Module = "lenet5",
        dataset: str | Dataset = "mnist-5k",
        *,
        pruning_rate: float = 0.99,
        pruning: str | pruning_lib.PruningSchedule = "layerwise",
        prune_schedule: str | pruning_lib.PruningSchedule = "one-shot",
        objective: str = "accuracy",
        data_root: str | Path | None = None,
        device: str = "auto",
        cache_dir: str | Path | None = None,
        seed: int = 0,
        dense_epochs: int | None = None,
        max_budget: int = 9,
        stage: str = "joint",
        granularity: str = "layer",
        operators: Sequence[str] | None = None,
        flat: bool = False,
        search_rate: tuple[float, float] | None = None,
        fixed_operators: Mapping[str, str] | None = None,
        finetune_recipe: Mapping[str, Any] | None = None,
        default_activation: str | None = None,
        dataset_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        dnr_probe_size: int = 256,
        num_threads: int | None = None,
        continue_trials: bool = True,
        continuation_max_bytes: int = CONTINUATION_MAX_BYTES,
        example_input: torch.Tensor | None = None,
    ) -> None:
        check_arguments(
            pruning_rate, max_budget, dense_epochs, objective, num_threads, continuation_max_bytes
        )
        self.pruning_rate = float(pruning_rate)
        self.pruning, self.prune_schedule = resolve_pruning(pruning, prune_schedule)
        self.objective = objective
        self.data_root = None if data_root is None else str(data_root)
        self.device = device
        resolve_device(device)  # fail early on an unavailable device
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.seed = int(seed)
        self.max_budget = int(max_budget)
        self.dnr_probe_size = int(dnr_probe_size)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.continue_trials = bool(continue_trials)
        self.continuation_max_bytes = int(continuation_max_bytes)
        self.stage = stage
        self.granularity = granularity
        self.flat = flat
        self.search_rate = None if search_rate is None else tuple(map(float, search_rate))
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.model_kwargs = dict(model_kwargs or {})

        # A Dataset object travels with the pickle; a named one is reloaded where it is needed.
        self._dataset_given = isinstance(dataset, Dataset)
        self._dataset: Dataset | None = dataset if isinstance(dataset, Dataset) else None
        self.dataset_name = dataset.name if isinstance(dataset, Dataset) else str(dataset)
        if isinstance(model, nn.Module):
            self.model_name = type(model).__name__
            self._user_model: nn.Module | None = copy.deepcopy(model).cpu()
            recipe_defaults: dict[str, Any] = {}
            self.default_activation = default_activation or getattr(
                model, "default_activation", "relu"
            )
            self._default_dense_epochs = 0 if dense_epochs is None else int(dense_epochs)
        else:
            info = model_info(model)  # unknown name -> ValueError listing the zoo
            self.model_name = info.name
            self._user_model = None
            recipe_defaults = dict(info.recipe)
            self.default_activation = default_activation or info.default_activation
            self._default_dense_epochs = info.dense_epochs
        self.dense_epochs = (
            self._default_dense_epochs if dense_epochs is None else int(dense_epochs)
        )
        self.recipe = Recipe(**{**recipe_defaults, **dict(finetune_recipe or {})})

        # Sites are discovered on a throw-away instance so that the space can be built without data.
        self.example_input = example_input
        self.sites: list[str] = [
            s.name for s in sites.activation_sites(self._fresh_model(), example_input=example_input)
        ]
        if not self.sites:
            raise ValueError(
                f"model {self.model_name!r} has no activation sites to search; "
                "use nn.ReLU-style modules or functional activations in forward"
            )
        self.fixed_operators = self._known_sites(fixed_operators or {})
        self.operators = None if operators is None else list(operators)
        self._space = self._build_space(stage, granularity)
        self._pruned_states: dict[float, dict[str, Any]] = {}
        self._dense_state: dict[str, Any] | None = None
        self._dense_metrics: dict[str, float] | None = None

    # ------------------------------------------------------------------ identity and pickling
    @property
    def configspace(self) -> ConfigurationSpace:
        """The search space (see :mod:`safs_smac.space`)."""
        return self._space

    def with_space(
        self,
        *,
        stage: str | None = None,
        fixed_operators: Mapping[str, str] | None = None,
        granularity: str | None = None,
    ) -> SAFSProblem:
        """A copy of this problem searching another space variant; this problem is unchanged.

        The copy shares the data set and the loaded checkpoints (both read-only), so deriving the
        two stages of the paper's protocol costs no retraining. ``None`` keeps the current value.
        """
        clone = copy.copy(self)
        clone.stage = self.stage if stage is None else stage
        clone.granularity = self.granularity if granularity is None else granularity
        clone.fixed_operators = self._known_sites(
            self.fixed_operators if fixed_operators is None else fixed_operators
        )
        clone._space = self._build_space(clone.stage, clone.granularity)
        return clone

    def _known_sites(self, fixed_operators: Mapping[str, str]) -> dict[str, str]:
        """``fixed_operators`` as a dict, after checking that it names sites of the model."""
        unknown = sorted(set(fixed_operators) - set(self.sites))
        if unknown:
            raise ValueError(
                f"fixed_operators names unknown sites {unknown}; "
                f"valid sites: {', '.join(self.sites)}"
            )
        return dict(fixed_operators)

    def _build_space(self, stage: str, granularity: str) -> ConfigurationSpace:
        """The search space of a variant (``stage``, ``granularity``) of this problem."""
        return build_space(
            self.sites,
            default_activation=self.default_activation,
            recipe=self.recipe.to_dict(),
            stage=stage,
            granularity=granularity,
            operators=self.operators,
            flat=self.flat,
            search_rate=self.search_rate,
            default_rate=self.pruning_rate,
            seed=self.seed,
        )

    def settings(self) -> dict[str, Any]:
        """Everything that determines this problem's results, JSON-able (used to detect reruns)."""
        # Settings stored under their attribute's own name, in run.json's order.
        plain = ("objective", "seed", "dense_epochs", "max_budget", "stage", "granularity")
        plain += ("operators", "flat", "search_rate", "fixed_operators")
        return {
            "model": self.model_name,
            "dataset": self.dataset_name,
            "pruning_rate": self.pruning_rate,
            "pruning": self.pruning,
            "prune_schedule": self.prune_schedule.settings(),
            **{name: getattr(self, name) for name in plain},
            "recipe": self.recipe.to_dict(),
            "default_activation": self.default_activation,
            "dataset_kwargs": self.dataset_kwargs,
            "model_kwargs": self.model_kwargs,
            # Learning-rate schedules span max_budget epochs, whatever a trial's budget (results
            # differ from runs whose schedules spanned the budget; those lack this key).
            "schedule_horizon": "max_budget",
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # Workers rebuild tensors from the disk cache; shipping them through Dask would be slow.
        state["_pruned_states"] = {}
        state["_dense_state"] = None
        if not self._dataset_given:
            state["_dataset"] = None
        return state

    # ------------------------------------------------------------------ data and checkpoints
    @property
    def dataset(self) -> Dataset:
        """The data set, loaded on first use (missing files raise a clear error)."""
        if self._dataset is None:
            self._dataset = load_dataset(self.dataset_name, self.data_root, **self.dataset_kwargs)
        return self._dataset

    def decode(self, config: Configuration | Mapping[str, Any]) -> TrialSpec:
        """What a configuration means for this problem (operators, scales, recipe changes)."""
        return decode_config(
            config,
            self.sites,
            default_activation=self.default_activation,
            fixed_operators=self.fixed_operators,
        )

    def baseline_spec(self) -> TrialSpec:
        """Magnitude pruning + fine-tuning with the default activation and the dense recipe."""
        return TrialSpec(
            operators={s: self.default_activation for s in self.sites},
            alpha={s: 1.0 for s in self.sites},
            beta={s: 1.0 for s in self.sites},
            learn_scales=False,
            recipe_overrides={},
            prune_rate=None,
        )

    def epochs_for(self, budget: float | None) -> int:
        """Fine-tuning epochs of a trial: SMAC's float budget rounded, ``None`` = max budget."""
        if budget is None:
            return self.max_budget
        if not math.isfinite(budget) or budget <= 0:
            raise ValueError(f"budget must be a positive number of epochs, got {budget}")
        return max(1, round(float(budget)))

    def finetune(
        self, spec: TrialSpec, *, seed: int, epochs: int, continuation: bool | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Fine-tune the pruned model as ``spec`` says; returns the model and a result dict.

        The learning-rate schedule spans ``max(max_budget, epochs)`` epochs, so ``epochs`` below
        the maximum budget are the first epochs of the full fine-tune. With ``continuation``
        (``None``: ``continue_trials``) the fine-tune starts from the cached state of the same
        ``spec`` and ``seed`` if it has at most ``epochs`` epochs, and leaves its own state for a
        later, longer one; the result is the same either way. The result dict holds validation
        accuracy/loss and diagnostics, ``epochs`` (epochs run by this call) and ``resumed_from``
        (epochs it continued from, 0 from scratch); it never raises on divergence. A pruning
        strategy with a per-epoch step (SET) runs it after every epoch, and continues nothing.
        """
        start = time.perf_counter()
        continuation = self.continue_trials if continuation is None else bool(continuation)
        device = resolve_device(self.device)
        model, step = self.finetune_model(spec, seed=seed, epochs=epochs)
        if step is not None:  # the step's topology and random stream are not in a FitState
            continuation = False
        recipe = self.recipe.replace(**spec.recipe_overrides, epochs=epochs)
        horizon = max(self.max_budget, epochs)
        entry = self._continuation_entry(spec, seed, recipe, horizon, device)
        saved = self._fetch_continuation(entry) if continuation else None
        result = fit(
            model,
            self.dataset,
            recipe,
            device=device,
            seed=seed,
            evaluate_val=False,
            on_epoch_end=step,
            horizon=horizon,
            resume=saved if saved is not None and saved.epochs <= epochs else None,
            keep_state=continuation and epochs < horizon,
        )
        if continuation and not result.diverged:
            self._store_continuation(entry, result.state, saved)
        info: dict[str, Any] = {
            "epochs": result.epochs_run,
            "resumed_from": result.start_epoch,
            "diverged": bool(result.diverged),
            "reason": result.reason,
        }
        val_accuracy = 0.0
        if not result.diverged:
            val = evaluate(model, self.dataset.val, self.dataset, device=device)
            if math.isfinite(val.loss):
                val_accuracy = val.accuracy
                info["val_loss"] = val.loss
            else:
                info.update(diverged=True, reason="non-finite validation loss")
        info["val_accuracy"] = val_accuracy
        info["sparsity"] = pruning_lib.sparsity_report(model).sparsity
        if not info["diverged"]:
            probe = probe_inputs(self.dataset, n=self.dnr_probe_size)
            dnr = dead_neuron_rate(model.to(device), probe.to(device))
            info["dnr_mean"] = dnr.mean
            info["dnr"] = {s.site: s.dead_fraction for s in dnr.sites}
        info["seconds"] = time.perf_counter() - start
        return model, info

    def train(
        self, config: Configuration | Mapping[str, Any], seed: int = 0, budget: float | None = None
    ) -> tuple[float, dict[str, Any]]:
        """SMAC target function: the cost of ``budget`` fine-tuning epochs (see :func:`trial_cost`).

        Returns ``(cost, additional_info)``; the info holds ``val_accuracy`` and ``val_loss``,
        ``epochs`` (fine-tuning epochs this call ran: fewer than the budget when the trial
        continued an earlier one of the same configuration and seed, see ``continue_trials``)
        and ``resumed_from`` (the epochs it continued from, 0 from scratch). A configuration that
        diverges gets the worst cost (1.0) with ``diverged=True`` and the reason, instead of an
        exception.
        """
        check_config_values(config, self._space)  # a configuration outside the space: ValueError
        # On a Dask worker: its share of the cores and, with several GPUs, its own GPU.
        self.device = configure_worker(self.device, self.num_threads)
        spec = self.decode(config)
        _, info = self.finetune(spec, seed=int(seed), epochs=self.epochs_for(budget))
        return self.result_cost(info), _jsonable(info)

    def result_cost(self, info: Mapping[str, Any]) -> float:
        """The trial cost of a fine-tune's result dict (:meth:`finetune`): the worst if it
        diverged, else :func:`trial_cost` of its validation accuracy and loss."""
        if info["diverged"]:
            return float(WORST_COST)
        n_val = int(self.dataset.val.y.shape[0])
        return float(trial_cost(info["val_accuracy"], info["val_loss"], n_val, self.objective))

    def check(self, config: Mapping[str, Any]) -> Configuration:
        """Validate a user-supplied configuration against this problem's space."""
        return check_config(config, self._space)

    def final_evaluation(
        self, spec: TrialSpec, *, seed: int = 0, epochs: int | None = None
    ) -> FinalEvaluation:
        """Fine-tune ``spec`` at ``epochs`` (default: max budget) and report validation and test."""
        epochs = self.max_budget if epochs is None else int(epochs)
        model, info = self.finetune(spec, seed=seed, epochs=epochs)
        device = resolve_device(self.device)
        test_accuracy = 0.0
        if not info["diverged"]:
            test_accuracy = evaluate(model, self.dataset.test, self.dataset, device=device).accuracy
        learned = sites.searchable_activations(model)
        return FinalEvaluation(
            val_accuracy=info["val_accuracy"],
            test_accuracy=test_accuracy,
            epochs=info["epochs"],
            seconds=info["seconds"],
            diverged=info["diverged"],
            reason=info["reason"],
            operators={name: act.op_name for name, act in learned.items()},
            alpha={name: _scalar_or_list(act.alpha) for name, act in learned.items()},
            beta={name: _scalar_or_list(act.beta) for name, act in learned.items()},
            sparsity=info["sparsity"],
            extra={"dnr_mean": info.get("dnr_mean"), "dnr": info.get("dnr")},
        )
