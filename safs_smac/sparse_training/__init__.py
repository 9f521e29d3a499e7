"""Two sparse-training baselines related to SAFS: AP and SET.

AP, Activating-while-Pruning (Liu, Ghosh, Tan, Motani, TMLR 2023)
    Runs on top of iterative global magnitude pruning. Each cycle trains, then removes ``p`` % of
    the surviving weights: ``p - ap`` % by global magnitude and ``ap`` % among the surviving
    *negative* weights, those that changed least during the cycle (``|w_end - w_start|``).
    Removing negative incoming weights raises pre-activations, so fewer ReLUs are dead (a lower
    dead neuron rate, :mod:`safs_smac.diagnostics`). The weights are then rewound to their initial
    values (lottery-ticket style) and the next cycle starts. See :func:`ap_prune`, :func:`ap_step`.

SET, Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018)
    Every sparse layer starts from a random Erdos-Renyi mask of density
    ``epsilon * (n_in + n_out) / (n_in * n_out)``; after every epoch the fraction ``zeta`` of the
    active positive weights closest to zero and of the active negative weights closest to zero is
    removed, and as many connections are grown at random inactive positions, so the density stays
    constant. See :class:`SET`; :class:`SETPruning` (registered as ``"set"``) runs it inside
    every fine-tune of a :class:`~safs_smac.problem.SAFSProblem`.

Masks live in :mod:`torch.nn.utils.prune` reparametrisations and are read and written through
:mod:`safs_smac.pruning`, so they keep working in :func:`safs_smac.training.fit`, survive
``state_dict()`` and can be made permanent with :func:`safs_smac.pruning.make_permanent`.
"""

from safs_smac.sparse_training.ap import AP, ap_prune, ap_schedule, ap_step
from safs_smac.sparse_training.set import (
    REGROW_INITS,
    SET,
    SETPruning,
    erdos_renyi_density,
    erdos_renyi_epsilon,
)

__all__ = [
    "AP",
    "REGROW_INITS",
    "SET",
    "SETPruning",
    "ap_prune",
    "ap_schedule",
    "ap_step",
    "erdos_renyi_density",
    "erdos_renyi_epsilon",
]
