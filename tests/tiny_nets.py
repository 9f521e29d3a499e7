"""The one-layer network that tests of activation sites give their own ``forward``.

A test that probes how activation calls are found, hooked or rewritten writes only the
``forward`` it is about and subclasses :class:`TinyNet` for the layers: ``fc`` and, when given,
``act`` (so its site is named ``..._act``).
"""

from __future__ import annotations

from torch import nn


class TinyNet(nn.Module):
    """``fc = nn.Linear(n_in, n_out or n_in)`` and, when given, the activation module ``act``."""

    def __init__(self, n_in: int = 2, n_out: int | None = None, act: nn.Module | None = None):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out or n_in)
        if act is not None:
            self.act = act
