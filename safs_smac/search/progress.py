"""The progress bar of a search and the user's per-trial callbacks (both backends)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from smac.callback import Callback
from smac.runhistory import TrialInfo, TrialValue

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):
    """Progress bar (trials done, best validation accuracy so far, ETA) and user callbacks."""

    def __init__(
        self,
        n_trials: int,
        show: bool,
        callbacks: Sequence[Callable[[TrialInfo, TrialValue], None]],
        *,
        desc: str = "trials",
        initial: int = 0,
    ) -> None:
        super().__init__()
        self._callbacks = list(callbacks)
        self._best = math.inf
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=n_trials, initial=initial, desc=desc, unit="trial", dynamic_ncols=True
            )

    def on_tell_end(self, smbo: Any, info: TrialInfo, value: TrialValue) -> bool | None:
        cost = value.cost if not isinstance(value.cost, list) else value.cost[0]
        if math.isfinite(cost):
            self._best = min(self._best, cost)
        if self._bar is not None:
            postfix = {"budget": info.budget}
            if math.isfinite(self._best):
                postfix["best_val_acc"] = f"{100 * (1 - self._best):.2f}%"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
        for callback in self._callbacks:
            callback(info, value)
        return None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
