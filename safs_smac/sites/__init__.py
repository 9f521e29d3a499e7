"""Find the activation call sites of a model and replace each one independently.

A *site* is one call of an activation in the forward pass: a call of an activation module
(``nn.ReLU``, ``nn.SiLU``, ..., :class:`~safs_smac.activations.SearchableActivation`) or of an
activation function (``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ...). Sites are numbered in
execution order, so "layer *l*" of SAFS is simply site *l*, whatever the architecture.

Discovery (:mod:`.discover`) traces the model with ``torch.fx``, treating activation modules as
leaves. A module that carries ``safs_exclude = True`` (for example the sigmoid gate of a
squeeze-excitation block) is a leaf too and is not a site, and neither is anything inside it.

Replacement (:mod:`.rewrite`) swaps modules in place when every replaced site is a distinct
module called once. Otherwise (a module instance called at several sites, as in torchvision's
``BasicBlock``, or a functional activation) the fx graph is rewritten so that every site gets its
own module, and a ``torch.fx.GraphModule`` is returned. The rewritten modules remember their
original path, so site names do not change when a model goes through :func:`set_activations`
again.

Example
-------
>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10), nn.ReLU())
>>> [s.name for s in activation_sites(model)]
['00_1', '01_4']
>>> model = set_activations(model, {"00_1": "swish", "01_4": "srs"}, learnable=True)
>>> sorted(searchable_activations(model))
['00_1', '01_4']

What counts as an activation is decided in :mod:`.kinds`.
"""

from safs_smac.sites.discover import ActivationSite, activation_sites, searchable_activations
from safs_smac.sites.kinds import FunctionalActivation
from safs_smac.sites.rewrite import set_activations

__all__ = [
    "ActivationSite",
    "FunctionalActivation",
    "activation_sites",
    "searchable_activations",
    "set_activations",
]
