"""The SAFS problem: dense training -> pruning -> a SMAC target function.

:class:`SAFSProblem` owns the whole pipeline of the paper (section 2 of the method notes) with the
reference's state-flow bugs fixed: the dense model is *trained* before it is pruned, every trial
starts from the same cached pruned checkpoint, fitness is the validation accuracy at the end of
fine-tuning (never a max over epochs, never the test set), and the test set is touched only by
:meth:`SAFSProblem.final_evaluation`.

``problem.train`` is the target function. It is a bound method of a picklable object that carries
settings, not tensors: a Dask worker that unpickles the problem reloads the data set and the pruned
checkpoint from the on-disk cache.
"""

from safs_smac.problem.core import SAFSProblem
from safs_smac.problem.outcome import (
    CACHE_VERSION,
    CONTINUATION_MAX_BYTES,
    CONTINUATION_VERSION,
    OBJECTIVES,
    PRUNING_SCOPES,
    WORST_COST,
    FinalEvaluation,
    trial_cost,
)

__all__ = [
    "CACHE_VERSION",
    "CONTINUATION_MAX_BYTES",
    "CONTINUATION_VERSION",
    "OBJECTIVES",
    "PRUNING_SCOPES",
    "WORST_COST",
    "FinalEvaluation",
    "SAFSProblem",
    "trial_cost",
]
