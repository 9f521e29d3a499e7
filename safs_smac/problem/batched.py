"""Many trials at once: :meth:`~BatchedTrialsMixin.train_batch` fine-tunes a batch of
configurations of the problem's network as one batched model (a mixin of
:class:`~safs_smac.problem.SAFSProblem`), and :func:`evaluate_trials` feeds it from an ask/tell
loop's batch of asks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ConfigSpace import Configuration

from safs_smac import pruning as pruning_lib
from safs_smac.diagnostics import dead_neuron_rate, probe_inputs
from safs_smac.problem.outcome import _jsonable
from safs_smac.space import TrialSpec, check_config_values
from safs_smac.training import BatchingUnsupported, fit_batched, resolve_device
from safs_smac.workers import configure_worker

#: Members of one batched model unless ``train_batch(max_members=...)`` says otherwise. Eight
#: LeNet-5 members fit any machine; the batch's memory grows linearly with it.
DEFAULT_MAX_MEMBERS = 8


class BatchedTrialsMixin:
    """Batched trials of :class:`~safs_smac.problem.SAFSProblem`."""

    def train_batch(
        self,
        configs: Sequence[Configuration | Mapping[str, Any]],
        seeds: int | Sequence[int] = 0,
        budget: float | Sequence[float | None] | None = None,
        *,
        max_members: int = DEFAULT_MAX_MEMBERS,
    ) -> list[tuple[float, dict[str, Any]]]:
        """Evaluate several configurations at once; one ``(cost, info)`` per configuration.

        Each result is what :meth:`train` returns for ``(config, seed, budget)`` (the same cost
        and info keys, the same schedule spanning ``max_budget``), up to floating-point rounding:
        the configurations that share a budget (and batch size) are fine-tuned together as one
        batched model by :func:`~safs_smac.training.fit_batched`, at most ``max_members`` at a
        time. Members may differ in everything the space searches: operators, scales,
        ``ft:learn_scales``, ``ft:optimizer``, learning rate, momentum, weight decay, schedule,
        label smoothing and the pruning rate.

        Batched members do **not** use budget continuation: they neither continue a cached state
        nor leave one, so a later, longer trial of the same configuration and seed starts from
        scratch (same result, more epochs); ``info["resumed_from"]`` is 0. A group of one, and
        every group of a model that cannot be batched (see
        :class:`~safs_smac.training.BatchingUnsupported`), runs as :meth:`train` instead (with
        continuation). ``info["batched"]`` is the number of members trained together (1 for a
        sequential trial); ``info["seconds"]`` is this member's share of the batch's wall time, so
        the trials' seconds still add up to the time spent.

        Parameters
        ----------
        configs
            Configurations of :attr:`configspace`.
        seeds
            One seed for all, or one per configuration.
        budget
            One budget (epochs) for all, or one per configuration; ``None`` is ``max_budget``.
        max_members
            Most members of one batched model (memory grows linearly with it).

        Returns
        -------
        list[tuple[float, dict]]
            In the order of ``configs``.

        Raises
        ------
        ValueError
            A configuration outside the space (before any work) or mismatched argument lengths.
        """
        configs = list(configs)
        n = len(configs)
        seed_list = _per_config("seeds", seeds, n)
        budget_list = _per_config("budget", budget, n)
        if isinstance(max_members, bool) or not isinstance(max_members, int) or max_members < 1:
            raise ValueError(f"max_members must be an integer >= 1, got {max_members!r}")
        for config in configs:
            check_config_values(config, self._space)
        self.device = configure_worker(self.device, self.num_threads)
        specs = [self.decode(config) for config in configs]
        epochs = [self.epochs_for(b) for b in budget_list]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, spec in enumerate(specs):
            batch_size = int(spec.recipe_overrides.get("batch_size", self.recipe.batch_size))
            groups.setdefault((epochs[i], batch_size), []).append(i)
        results: list[tuple[float, dict[str, Any]] | None] = [None] * n
        for (group_epochs, _), members in groups.items():
            for begin in range(0, len(members), max_members):
                chunk = members[begin : begin + max_members]
                infos = None
                if len(chunk) > 1:
                    try:
                        infos = self._finetune_batch(
                            [specs[i] for i in chunk], [seed_list[i] for i in chunk], group_epochs
                        )
                    except BatchingUnsupported:
                        infos = None  # this network cannot be batched: one trial at a time
                if infos is None:
                    for i in chunk:
                        cost, info = self.train(configs[i], seed_list[i], budget_list[i])
                        results[i] = (cost, {**info, "batched": 1})
                    continue
                for i, info in zip(chunk, infos, strict=True):
                    results[i] = (self.result_cost(info), _jsonable(info))
        return [result for result in results if result is not None]

    def _finetune_batch(
        self, specs: Sequence[TrialSpec], seeds: Sequence[int], epochs: int
    ) -> list[dict[str, Any]]:
        """:meth:`finetune`'s result dict for every spec, fine-tuned together (no continuation)."""
        start = time.perf_counter()
        device = resolve_device(self.device)
        models = []
        for spec, seed in zip(specs, seeds, strict=True):
            # As in finetune(); a strategy that steps after every epoch runs one trial at a time.
            model, step = self.finetune_model(spec, seed=int(seed), epochs=epochs)
            if step is not None:
                raise BatchingUnsupported(
                    f"the pruning strategy {self.prune_schedule.label!r} changes the masks "
                    "after every epoch"
                )
            models.append(model)
        recipes = [self.recipe.replace(**spec.recipe_overrides, epochs=epochs) for spec in specs]
        results = fit_batched(
            models,
            self.dataset,
            recipes,
            seeds=[int(s) for s in seeds],
            epochs=epochs,
            horizon=max(self.max_budget, epochs),
            device=device,
            evaluate_val=True,
        )
        probe = None
        infos = []
        for model, result in zip(models, results, strict=True):
            info: dict[str, Any] = {
                "epochs": result.fit.epochs_run,
                "resumed_from": 0,
                "diverged": bool(result.fit.diverged),
                "reason": result.fit.reason,
                "batched": len(specs),
            }
            val_accuracy = 0.0
            if not result.fit.diverged and result.val is not None:
                if math.isfinite(result.val.loss):
                    val_accuracy = result.val.accuracy
                    info["val_loss"] = result.val.loss
                else:
                    info.update(diverged=True, reason="non-finite validation loss")
            info["val_accuracy"] = val_accuracy
            info["sparsity"] = pruning_lib.sparsity_report(model).sparsity
            if not info["diverged"]:
                if probe is None:
                    probe = probe_inputs(self.dataset, n=self.dnr_probe_size).to(device)
                dnr = dead_neuron_rate(model.to(device), probe)
                info["dnr_mean"] = dnr.mean
                info["dnr"] = {s.site: s.dead_fraction for s in dnr.sites}
            infos.append(info)
        share = (time.perf_counter() - start) / len(specs)
        for info in infos:
            info["seconds"] = share
        return infos


def _per_config(name: str, value: Any, n: int) -> list[Any]:
    """``value`` for every configuration: a sequence of ``n`` items, or one value repeated."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if len(items) != n:
            raise ValueError(
                f"{name} has {len(items)} items for {n} configurations; pass one per "
                "configuration or a single value"
            )
        return items
    return [value] * n


def evaluate_trials(
    problem: BatchedTrialsMixin,
    trials: Sequence[Any],
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[tuple[float, dict[str, Any]]]:
    """Evaluate an ask/tell loop's batch of asks with :meth:`~BatchedTrialsMixin.train_batch`.

    Parameters
    ----------
    problem
        The :class:`~safs_smac.problem.SAFSProblem`.
    trials
        SMAC ``TrialInfo`` objects (``config``, ``seed``, ``budget`` attributes) or
        ``(config, seed, budget)`` tuples; a ``None`` seed is 0, a ``None`` budget the maximum.
    max_members
        See :meth:`~BatchedTrialsMixin.train_batch`.

    Returns
    -------
    list[tuple[float, dict]]
        ``(cost, info)`` per trial, in order: what to ``tell`` the optimizer.

    Examples
    --------
    With SMAC's ask/tell interface (``smac`` is a facade built on ``problem.configspace``)::

        from smac.runhistory import TrialValue

        asks = [smac.ask() for _ in range(8)]
        for info, (cost, extra) in zip(asks, evaluate_trials(problem, asks)):
            smac.tell(info, TrialValue(cost=cost, additional_info=extra))
    """
    configs, seeds, budgets = [], [], []
    for trial in trials:
        if isinstance(trial, tuple):
            config, seed, budget = trial
        else:
            config, seed, budget = trial.config, trial.seed, trial.budget
        configs.append(config)
        seeds.append(0 if seed is None else int(seed))
        budgets.append(budget)
    return problem.train_batch(configs, seeds, budgets, max_members=max_members)
