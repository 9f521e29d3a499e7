"""Pruning schedules: how a dense network reaches its sparsity before the search (one-shot,
gradual with fine-tuning between rounds; AP and SET live in :mod:`safs_smac.sparse_training`),
and how a strategy may keep changing the sparse topology during fine-tuning (SET)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from safs_smac.pruning.magnitude import (
    SCOPES,
    SparsityReport,
    iterative_magnitude_prune,
    magnitude_prune,
)

# --------------------------------------------------------------------------------------------
# Schedules: how a dense model reaches its final sparsity
# --------------------------------------------------------------------------------------------

#: A fine-tuning recipe (``training.Recipe`` changes) that recovers highly sparse networks robustly:
#: gradual pruning fine-tunes with it between rounds, the staged search screens operators with it.
SPARSE_FINETUNE: tuple[tuple[str, object], ...] = (
    ("optimizer", "adam"),
    ("lr", 0.01),
    ("scheduler", "cosine"),
)

#: Fine-tunes a model in place between pruning rounds:
#: ``finetune(model, epochs, recipe_overrides)``.
Finetune = Callable[[nn.Module, int, Mapping[str, object]], None]

#: A strategy's step after every fine-tuning epoch: ``step(epoch, record)``, the signature of
#: ``training.fit(on_epoch_end=...)`` (``epoch`` is 1-based, ``record`` the epoch's history entry).
EpochStep = Callable[[int, dict[str, float]], None]


class PruningSchedule:
    """How a dense model is brought to its final sparsity (the pruning *method*).

    A schedule prunes in place with :func:`magnitude_prune` (``scope`` as there) and may fine-tune
    between rounds through the ``finetune`` callable it is given, so this module stays free of any
    training code. :meth:`settings` is JSON-able and identifies the schedule in caches and runs;
    :attr:`epochs` counts the fine-tuning epochs the schedule itself spends.

    A strategy that trains sparse (SET) also overrides :meth:`begin_finetune`, which every
    fine-tune of the pruned model calls before its first epoch; the default returns ``None`` and
    the fine-tune is then plain training with no callback, exactly as without the hook.
    """

    name: str = ""
    #: How tables and headers name the pruning this schedule does.
    label: str = ""
    #: The pruning scopes (``SAFSProblem(pruning=...)``) the schedule supports.
    scopes: tuple[str, ...] = SCOPES

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        raise NotImplementedError

    @property
    def epochs(self) -> int:
        return 0

    def settings(self) -> dict[str, object]:
        return {"name": self.name}

    def begin_finetune(
        self, model: nn.Module, *, rate: float, seed: int, epochs: int
    ) -> EpochStep | None:
        """Prepare one fine-tune of the pruned ``model`` (its activations already set).

        Parameters
        ----------
        model
            The network about to be fine-tuned, pruned by :meth:`prune` (from the cache).
        rate
            The pruning rate of this fine-tune (the problem's, or the configuration's).
        seed
            The fine-tune's seed; randomness of the strategy should come from it.
        epochs
            Epochs this fine-tune trains for.

        Returns
        -------
        EpochStep or None
            What to run after every epoch (``fit(on_epoch_end=...)``), or ``None`` (the default:
            the schedule only prunes before the search).
        """
        return None


@dataclass(frozen=True)
class OneShot(PruningSchedule):
    """Prune to the rate in one step (the SAFS paper's protocol)."""

    name = "one-shot"
    label = "one-shot magnitude pruning"

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        return magnitude_prune(model, rate, scope=scope)


@dataclass(frozen=True)
class Gradual(PruningSchedule):
    """Gradual magnitude pruning (Zhu & Gupta 2017): ``rounds`` steps, fine-tuning in between.

    Round ``r`` prunes to ``1 - (1 - rate) ** (r / rounds)`` (see :func:`iterative_magnitude_prune`)
    and is followed by ``epochs_per_round`` epochs of fine-tuning with the problem's recipe changed
    by ``recipe`` (default: Adam, lr 0.01, cosine decay within the round), except after the last
    round: the fine-tuning after that is the search's (or the baseline's) job.
    """

    rounds: int = 6
    epochs_per_round: int = 3
    recipe: tuple[tuple[str, object], ...] = SPARSE_FINETUNE
    name = "gradual"
    label = "gradual magnitude pruning"

    def __post_init__(self) -> None:
        for what, value, minimum in (
            ("rounds", self.rounds, 1),
            ("epochs_per_round", self.epochs_per_round, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(
                    f"Gradual {what} must be an integer >= {minimum}, got {value!r}; "
                    "e.g. Gradual(rounds=6, epochs_per_round=3)"
                )
        if isinstance(self.recipe, Mapping):
            object.__setattr__(self, "recipe", tuple(sorted(self.recipe.items())))

    @property
    def epochs(self) -> int:
        return (self.rounds - 1) * self.epochs_per_round

    def prune(
        self, model: nn.Module, rate: float, *, scope: str, finetune: Finetune | None = None
    ) -> SparsityReport:
        if finetune is None and self.epochs:
            raise ValueError(
                "gradual pruning fine-tunes between rounds; pass finetune=, or use "
                "Gradual(epochs_per_round=0) to prune iteratively without training"
            )

        def between_rounds(pruned: nn.Module, _round: int) -> None:
            if self.epochs_per_round and finetune is not None:
                finetune(pruned, self.epochs_per_round, dict(self.recipe))

        return iterative_magnitude_prune(
            model, rate, rounds=self.rounds, scope=scope, between_rounds=between_rounds
        )

    def settings(self) -> dict[str, object]:
        return {
            "name": self.name,
            "rounds": self.rounds,
            "epochs_per_round": self.epochs_per_round,
            "recipe": dict(self.recipe),
        }


PRUNING_SCHEDULES: dict[str, type[PruningSchedule]] = {"one-shot": OneShot, "gradual": Gradual}


def resolve_schedule(schedule: str | PruningSchedule) -> PruningSchedule:
    """A :class:`PruningSchedule` from a name (``"one-shot"``, ``"gradual"``, ``"ap"``, ``"set"``,
    or any name registered in :data:`PRUNING_SCHEDULES`) or an instance.

    ``"ap"`` and ``"set"`` are registered by :mod:`safs_smac.sparse_training`, which builds on
    this module (so this module never imports it); :mod:`safs_smac.problem` imports both.
    """
    if isinstance(schedule, PruningSchedule):
        return schedule
    key = schedule_key(schedule)
    if key not in PRUNING_SCHEDULES:
        raise ValueError(
            f"unknown pruning schedule {schedule!r}; valid schedules: "
            f"{', '.join(PRUNING_SCHEDULES)} (or a safs_smac.pruning.PruningSchedule instance)"
        )
    return PRUNING_SCHEDULES[key]()


def schedule_key(name: object) -> str:
    """The registry key of a schedule name (``"One_Shot"`` and ``"oneshot"`` -> ``"one-shot"``)."""
    key = str(name).strip().lower().replace("_", "-")
    return {"oneshot": "one-shot"}.get(key, key)
