"""Dead neuron rate (DNR) of the activation sites of a network.

Operational definition used throughout this project (after Liu et al., "AP: Activating-while-
Pruning", TMLR 2023): for an activation site with ``N`` units, over a batch of inputs ``D``,

    DNR = fraction of (unit, input) pairs whose activation *output* is exactly zero
          (for ReLU-like operators: pre-activation <= 0),

averaged over the sites (:attr:`DNRReport.mean`) and tracked over training ("dynamic" DNR, see
:class:`DNRTracker`). The unit-weighted rate over all units of all sites is reported as well
(:attr:`DNRReport.overall`), and so is the fraction of *permanently dead* units: units whose output
is zero for every input of ``D``.

What a unit is
    ``unit="element"`` (default): one element of the per-sample activation tensor, i.e. one
    neuron of a fully connected layer, or one (channel, position) pair of a convolutional feature
    map. ``unit="channel"``: one channel (dim 1) of a feature map; it counts as dead for an input
    when its whole map is zero. Both coincide for ``(batch, features)`` outputs.

What zero means
    The output is compared with ``0`` exactly, as the definition says. For rectifiers this is the
    usual "dead ReLU"; smooth operators (swish, GELU, tanh, ...) are zero only where the
    pre-activation is exactly zero (or the output underflows), so their DNR is ~0 by design.

Sites are found by :func:`safs_smac.sites.activation_sites` and observed with forward hooks on their
modules (activation modules and :class:`~safs_smac.activations.SearchableActivation`). A module
called several times per forward is several sites; its k-th call in a forward is attributed to its
k-th site. Functional activations (``F.relu`` in a ``forward``) have no module to hook: convert them
first with :func:`safs_smac.sites.set_activations`, which replaces them by modules.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from safs_smac.sites import ActivationSite, activation_sites

if TYPE_CHECKING:
    import pandas as pd

    from safs_smac.data import Dataset

__all__ = [
    "UNITS",
    "DNRReport",
    "DNRTracker",
    "SiteDNR",
    "dead_neuron_rate",
    "probe_inputs",
]

#: Valid values of the ``unit`` argument.
UNITS = ("element", "channel")


@dataclass
class SiteDNR:
    """Dead neuron statistics of one activation site.

    Attributes
    ----------
    site:
        Site name (:attr:`safs_smac.sites.ActivationSite.name`).
    op:
        Operator at the site (canonical name, or class name when unknown).
    units:
        Units per input (elements or channels of one sample's output, see the module docstring).
    dead_fraction:
        Fraction of (unit, input) pairs whose output is exactly zero.
    permanently_dead_fraction:
        Fraction of units whose output is zero for every input.
    """

    site: str
    op: str
    units: int
    dead_fraction: float
    permanently_dead_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """The fields but ``site`` (the report keys sites by name), in field order."""
        fields = asdict(self)
        del fields["site"]
        return fields


@dataclass
class DNRReport:
    """Dead neuron rate of every activation site of a model, in forward order.

    Attributes
    ----------
    sites:
        One entry per activation site, in forward order.
    mean:
        Dead fraction averaged over the sites (each site weighs the same): the DNR of the
        definition.
    overall:
        Dead fraction over all (unit, input) pairs of all sites (large sites weigh more).
    """

    sites: list[SiteDNR]
    mean: float
    overall: float

    @property
    def permanently_dead_mean(self) -> float:
        """Permanently dead fraction averaged over the sites."""
        if not self.sites:
            return math.nan
        return sum(s.permanently_dead_fraction for s in self.sites) / len(self.sites)

    @property
    def permanently_dead_overall(self) -> float:
        """Fraction of all units of all sites that are zero for every input."""
        units = sum(s.units for s in self.sites)
        if units == 0:
            return math.nan
        return sum(s.permanently_dead_fraction * s.units for s in self.sites) / units

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: aggregates plus ``{"sites": {name: {...}}}`` in forward order."""
        aggregates = ("mean", "overall", "permanently_dead_mean", "permanently_dead_overall")
        return {
            **{name: getattr(self, name) for name in aggregates},
            "sites": {s.site: s.to_dict() for s in self.sites},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DNRReport:
        """Inverse of :meth:`to_dict` (derived aggregates are recomputed, not read)."""
        sites = [
            SiteDNR(
                site=name,
                op=str(entry["op"]),
                units=int(entry["units"]),
                dead_fraction=float(entry["dead_fraction"]),
                permanently_dead_fraction=float(entry["permanently_dead_fraction"]),
            )
            for name, entry in data["sites"].items()
        ]
        return cls(sites=sites, mean=float(data["mean"]), overall=float(data["overall"]))

    def __str__(self) -> str:
        width = max([len("site"), *(len(s.site) for s in self.sites)])
        lines = [f"{'site':<{width}}  {'op':<12} {'units':>9} {'dead':>7} {'perm.dead':>9}"]
        for s in self.sites:
            lines.append(
                f"{s.site:<{width}}  {s.op:<12} {s.units:>9,} {s.dead_fraction:>7.2%} "
                f"{s.permanently_dead_fraction:>9.2%}"
            )
        lines.append(
            f"DNR mean over sites {self.mean:.2%}, overall {self.overall:.2%}; permanently dead "
            f"units {self.permanently_dead_overall:.2%}"
        )
        return "\n".join(lines)


@dataclass
class _SiteStats:
    """Running counts of one site, kept on the model's device to avoid a sync per batch."""

    site: ActivationSite
    zeros: torch.Tensor | None = None  # int64 scalar: dead (unit, input) pairs
    ever_active: torch.Tensor | None = None  # bool, one entry per unit
    n_inputs: int = 0

    def update(self, out: torch.Tensor, unit: str) -> None:
        if out.dim() == 0:
            raise ValueError(
                f"activation site {self.site.name!r} returned a scalar; dead_neuron_rate needs a "
                "batch dimension, so pass inputs of shape (N, ...)"
            )
        dead = out.detach() == 0
        if unit == "channel" and dead.dim() > 2:
            dead = dead.flatten(2).all(dim=2)  # a channel is dead when its whole map is zero
        active = ~dead.all(dim=0)
        if self.ever_active is None:
            self.zeros = dead.sum()
            self.ever_active = active
        elif active.shape != self.ever_active.shape:
            raise ValueError(
                f"activation site {self.site.name!r} produced outputs of shape "
                f"{tuple(active.shape)} and {tuple(self.ever_active.shape)} per sample; pass "
                "inputs of one shape"
            )
        else:
            self.zeros += dead.sum()
            self.ever_active |= active
        self.n_inputs += out.shape[0]

    def result(self) -> SiteDNR:
        if self.ever_active is None or self.zeros is None or self.n_inputs == 0:
            raise ValueError(
                f"activation site {self.site.name!r} was never called during the forward pass; "
                "dead_neuron_rate needs models whose activations all run for every input"
            )
        units = self.ever_active.numel()
        pairs = units * self.n_inputs
        return SiteDNR(
            site=self.site.name,
            op=self.site.op,
            units=units,
            dead_fraction=int(self.zeros) / pairs if pairs else 0.0,
            permanently_dead_fraction=int((~self.ever_active).sum()) / units if units else 0.0,
        )


def _site_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Site path -> module, for :func:`_group_by_module`.

    A site's path is its module's ``site_path`` when :func:`~safs_smac.sites.set_activations`
    rewrote the model (the module then lives under another attribute name), else the module's
    attribute path; the k-th call of a reused module is ``"<path>#k"``.
    """
    modules = {name: module for name, module in model.named_modules() if name}
    for module in model.modules():
        site_path = getattr(module, "site_path", None)
        if isinstance(site_path, str):
            modules[site_path] = module  # rewritten sites: the path no longer is the attribute
    return modules


def _group_by_module(
    model: nn.Module, sites: list[ActivationSite]
) -> dict[nn.Module, list[ActivationSite]]:
    """Map every hooked module to its sites in forward order (several when it is reused)."""
    functional = [s for s in sites if s.kind != "module"]
    if functional:
        names = ", ".join(repr(s.name) for s in functional[:5])
        raise ValueError(
            f"dead_neuron_rate hooks activation modules, but {names} "
            f"{'is a functional call' if len(functional) == 1 else 'are functional calls'}; "
            "replace F.relu-style calls by nn.Module activations (nn.ReLU(), ...), or measure "
            "the model that safs_smac.sites.set_activations returns"
        )
    modules = _site_modules(model)
    groups: dict[nn.Module, list[ActivationSite]] = {}
    for site in sorted(sites, key=lambda s: s.index):
        module = modules.get(site.path)
        if module is None:  # k-th call of a reused module
            module = modules.get(site.path.partition("#")[0])
        if module is None:
            raise ValueError(
                f"cannot find the module of activation site {site.name!r}; measure a model "
                "whose activation modules are attributes of it"
            )
        groups.setdefault(module, []).append(site)
    return groups


def _model_sites(model: nn.Module, example_input: torch.Tensor) -> list[ActivationSite]:
    # example_input is only used when fx cannot trace the model (run-time discovery).
    sites = activation_sites(model, example_input=example_input)
    if not sites:
        raise ValueError(
            f"{type(model).__name__} has no activation sites, so it has no dead neuron rate; "
            "pass a model with activation modules (nn.ReLU, SearchableActivation, ...)"
        )
    return sites


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _check_inputs(inputs: torch.Tensor, batch_size: int, unit: str) -> None:
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1 or len(inputs) == 0:
        raise ValueError(
            "inputs must be a non-empty tensor with a batch dimension, got "
            f"{type(inputs).__name__} {tuple(getattr(inputs, 'shape', ()))}; pass a batch of "
            "normalised samples, e.g. probe_inputs(dataset)"
        )
    if not inputs.is_floating_point():
        raise ValueError(
            f"inputs must be normalised float tensors, got {inputs.dtype}; normalise uint8 images "
            "as training does, e.g. with safs_smac.diagnostics.probe_inputs(dataset)"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; valid units: {', '.join(UNITS)}")


def dead_neuron_rate(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int = 512,
    unit: str = "element",
) -> DNRReport:
    """Measure the dead neuron rate of every activation site of ``model`` on ``inputs``.

    The model runs in eval mode without gradients, on the device of its parameters; each
    submodule's train/eval mode is restored and the hooks are removed afterwards, also on error.

    Parameters
    ----------
    model:
        The network; its sites come from :func:`safs_smac.sites.activation_sites` and must be
        modules (see the module docstring for functional activations).
    inputs:
        Already-normalised float inputs ``(N, ...)``, e.g. from :func:`probe_inputs`.
    batch_size:
        Inputs per forward pass; the result does not depend on it.
    unit:
        ``"element"`` (default) or ``"channel"``, see the module docstring.

    Returns
    -------
    DNRReport
        Per-site rates in forward order, their mean over sites and the unit-weighted overall rate.
    """
    _check_inputs(inputs, batch_size, unit)
    device = _model_device(model)
    groups = _group_by_module(model, _model_sites(model, inputs[:2].to(device)))
    stats = {site.name: _SiteStats(site) for sites in groups.values() for site in sites}
    calls: dict[nn.Module, int] = dict.fromkeys(groups, 0)

    def make_hook(module: nn.Module, sites: list[ActivationSite]) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            k = calls[module]
            calls[module] = k + 1
            if k >= len(sites):
                raise ValueError(
                    f"activation module of site {sites[0].name!r} ran {k + 1} times in one "
                    f"forward pass but was traced as {len(sites)} site(s); the model's control "
                    "flow depends on the input, so give it one activation module per call"
                )
            if not isinstance(output, torch.Tensor):
                raise ValueError(
                    f"activation site {sites[k].name!r} returned {type(output).__name__}; "
                    "dead_neuron_rate expects activation modules that return one tensor"
                )
            stats[sites[k].name].update(output, unit)

        return hook

    handles = [m.register_forward_hook(make_hook(m, sites)) for m, sites in groups.items()]
    try:
        with _eval_mode(model), torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                calls.update(dict.fromkeys(calls, 0))
                model(inputs[start : start + batch_size].to(device, non_blocking=True))
                _check_calls(calls, groups)
    finally:
        for handle in handles:
            handle.remove()

    ordered = sorted(stats.values(), key=lambda s: s.site.index)
    results = [s.result() for s in ordered]
    dead_pairs = sum(int(s.zeros) for s in ordered if s.zeros is not None)
    pairs = sum(r.units for r in results) * len(inputs)  # every site saw every input
    return DNRReport(
        sites=results,
        mean=sum(r.dead_fraction for r in results) / len(results),
        overall=dead_pairs / pairs if pairs else 0.0,
    )


def _check_calls(
    calls: dict[nn.Module, int], groups: dict[nn.Module, list[ActivationSite]]
) -> None:
    """Every site must run once per forward pass, or outputs would go to the wrong site."""
    for module, sites in groups.items():
        if calls[module] != len(sites):
            raise ValueError(
                f"activation module of site {sites[0].name!r} ran {calls[module]} time(s) in one "
                f"forward pass but was traced as {len(sites)} site(s); the model's control flow "
                "depends on the input, so make every activation run once per forward pass"
            )


def probe_inputs(
    dataset: Dataset, *, split: str = "val", n: int | None = 512, seed: int = 0
) -> torch.Tensor:
    """A fixed, normalised batch of ``dataset`` images to measure the DNR on.

    Images are normalised exactly as :func:`safs_smac.training.fit` feeds them to the model,
    ``(x / 255 - mean) / std``, without augmentation.

    Parameters
    ----------
    dataset:
        A :class:`safs_smac.data.Dataset`.
    split:
        ``"train"``, ``"val"`` or ``"test"``.
    n:
        Number of images, drawn without replacement with ``seed``; ``None`` (or more than the
        split holds) takes the whole split in order.
    seed:
        Seed of the subset draw, so every call returns the same probe batch.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}; valid splits: train, val, test")
    x = getattr(dataset, split).x
    if len(x) == 0:
        raise ValueError(
            f"split {split!r} of dataset {dataset.name!r} is empty; pick another split"
        )
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer or None, got {n!r}")
        if n < len(x):
            generator = torch.Generator().manual_seed(seed)
            x = x[torch.randperm(len(x), generator=generator)[:n].sort().values]
    mean = torch.tensor(dataset.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


class DNRTracker:
    """Dynamic DNR: a :func:`dead_neuron_rate` report at the end of every training epoch.

    Use it as ``training.fit(..., on_epoch_end=tracker)``; call ``tracker(0, {})`` once before
    training to record the starting point. The model is hooked afresh on every call, so
    :attr:`model` may be replaced between epochs (e.g. by the model ``set_activations`` returns).

    Parameters
    ----------
    model:
        The network to measure.
    probe_inputs:
        Normalised inputs the DNR is measured on (the same batch every epoch), e.g. from
        :func:`probe_inputs`.
    batch_size, unit:
        Passed to :func:`dead_neuron_rate`.

    Attributes
    ----------
    history:
        ``(epoch, report)`` pairs in call order.
    """

    def __init__(
        self,
        model: nn.Module,
        probe_inputs: torch.Tensor,
        *,
        batch_size: int = 512,
        unit: str = "element",
    ) -> None:
        # Fail before training starts, not after the first epoch.
        _check_inputs(probe_inputs, batch_size, unit)
        example = probe_inputs[:2].to(_model_device(model))
        _group_by_module(model, _model_sites(model, example))
        self.model = model
        self.probe_inputs = probe_inputs
        self.batch_size = batch_size
        self.unit = unit
        self.history: list[tuple[int, DNRReport]] = []

    def __call__(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Record the DNR after ``epoch``; the signature of ``fit(on_epoch_end=...)``."""
        report = dead_neuron_rate(
            self.model, self.probe_inputs, batch_size=self.batch_size, unit=self.unit
        )
        self.history.append((epoch, report))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (epoch, site): epoch, site, op, units, dead_fraction,
        permanently_dead_fraction."""
        import pandas as pd

        columns = ["epoch", "site", "op", "units", "dead_fraction", "permanently_dead_fraction"]
        rows = [
            (epoch, s.site, s.op, s.units, s.dead_fraction, s.permanently_dead_fraction)
            for epoch, report in self.history
            for s in report.sites
        ]
        return pd.DataFrame(rows, columns=columns)
