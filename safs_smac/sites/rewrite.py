"""Replacement: activation sites become ``SearchableActivation`` modules, in place or by fx.

Replacement swaps modules in place when every replaced site is a distinct module called once.
Otherwise (a module instance called at several sites, or a functional activation) the fx graph is
rewritten so that every site gets its own module, and a ``torch.fx.GraphModule`` is returned; the
rewritten modules remember their original path (``site_path``), so site names do not change. The
channel count of per-channel scales is measured on an example input or read from the layer that
feeds the site. Imports torch, :mod:`safs_smac.activations`, :mod:`.kinds` and :mod:`.discover`.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from safs_smac.activations import SearchableActivation, resolve_operator
from safs_smac.sites.discover import _call_model, _discover, _Discovery, _input_node, _Site
from safs_smac.sites.kinds import _FUNCTIONS, _METHODS, FunctionalActivation, _site_op

__all__ = ["set_activations"]


# ---------------------------------------------------------------------------------------------
# Replacement.
# ---------------------------------------------------------------------------------------------


def _per_site(
    value: Any, sites_by_key: Mapping[str, _Site], what: str, valid: list[str]
) -> dict[int, Any]:
    """Expand a scalar-or-mapping argument to {site index: value}, validating the keys."""
    if not isinstance(value, Mapping):
        return {}
    expanded = {}
    for key, item in value.items():
        site = sites_by_key.get(key)
        if site is None:
            raise ValueError(
                f"unknown activation site {key!r} in {what}; valid site names: {', '.join(valid)}"
            )
        expanded[site.index] = item
    return expanded


def _set_submodule(root: nn.Module, qualname: str, module: nn.Module) -> None:
    parent_name, _, attr = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


_CHANNEL_ATTRIBUTES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.conv._ConvNd, "out_channels"),
    (nn.Linear, "out_features"),
    (nn.modules.batchnorm._NormBase, "num_features"),
    (nn.GroupNorm, "num_channels"),
)
_SHAPE_PRESERVING_MODULES = (
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)
_SHAPE_PRESERVING_FUNCTIONS = {
    operator.add,
    operator.iadd,
    operator.mul,
    operator.imul,
    operator.sub,
    torch.add,
    torch.mul,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
}


def _channels_from_graph(model: nn.Module, site: _Site) -> int | None:
    """Walk back from a site's input to the layer that fixes its channel count (dim 1)."""
    node = _input_node(site.node) if site.node is not None else None
    for _ in range(32):
        if not isinstance(node, fx.Node):
            return None
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            for cls, attr in _CHANNEL_ATTRIBUTES:
                if isinstance(module, cls):
                    return int(getattr(module, attr))
            if not (_site_op(module) is not None or isinstance(module, _SHAPE_PRESERVING_MODULES)):
                return None
        elif not (
            (node.op == "call_function" and node.target in _SHAPE_PRESERVING_FUNCTIONS)
            or (node.op == "call_function" and node.target in _FUNCTIONS)
            or (node.op == "call_method" and node.target in _METHODS)
        ):
            return None
        node = next((a for a in node.args if isinstance(a, fx.Node)), None)
    return None


@torch.no_grad()
def _measured_channels(
    model: nn.Module, discovery: _Discovery, example_input: Any
) -> dict[int, int]:
    """Run the model once and read dimension 1 of every site's output."""
    modes = {module: module.training for module in model.modules()}
    shapes: dict[int, torch.Size] = {}
    handles = []
    try:
        model.eval()
        if discovery.graph is not None:
            gm = fx.GraphModule(model, discovery.graph)
            args = example_input if isinstance(example_input, tuple) else (example_input,)
            ShapeProp(gm).propagate(*args)
            for site in discovery.sites:
                meta = site.node.meta.get("tensor_meta")
                if meta is not None and hasattr(meta, "shape"):
                    shapes[site.index] = meta.shape
        else:
            for site in discovery.sites:

                def record(_m, _args, out, index=site.index):
                    shapes[index] = out.shape

                handles.append(site.module.register_forward_hook(record))
            _call_model(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
    return {index: shape[1] for index, shape in shapes.items() if len(shape) >= 2}


def _channel_counts(
    model: nn.Module, discovery: _Discovery, selected: Iterable[_Site], example_input: Any
) -> dict[int, int]:
    measured = (
        _measured_channels(model, discovery, example_input) if example_input is not None else {}
    )
    counts = {}
    for site in selected:
        channels = measured.get(site.index)
        if channels is None and example_input is None and discovery.graph is not None:
            channels = _channels_from_graph(model, site)
        if channels is None:
            raise ValueError(
                f"cannot determine the number of channels (dimension 1) of activation site "
                f"{site.name!r} for per_channel=True; pass example_input=... so that it can be "
                "measured, or use per_channel=False"
            )
        counts[site.index] = channels
    return counts


def _free_attribute(owner: nn.Module, name: str) -> str:
    candidate, suffix = name, 0
    while hasattr(owner, candidate):
        suffix += 1
        candidate = f"{name}_site{suffix}"
    return candidate


def _new_target(gm: fx.GraphModule, site: _Site) -> str:
    """Attribute path in ``gm`` for the module that will own ``site``."""
    if site.kind == "module":
        if site.call == 0:
            return site.qualname  # replace the shared module inside gm's own container
        owner, _, attr = site.qualname.rpartition(".")
        attr = f"{attr}_{site.call}"
    else:
        owner, _, attr = site.path.partition("#")[0].rpartition(".")
        call = site.path.partition("#")[2]
        attr = f"{attr}_{call}" if call else attr
    try:
        owner_module = gm.get_submodule(owner) if owner else gm
    except AttributeError:
        owner_module = None  # add_submodule creates the missing containers
    if owner_module is not None:
        attr = _free_attribute(owner_module, attr)
    return f"{owner}.{attr}" if owner else attr


def _functional_call_args(node: fx.Node) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = tuple(node.args), dict(node.kwargs)
    if not args:
        args = (kwargs.pop("input"),)
    return args, kwargs


def _rewrite(
    model: nn.Module, discovery: _Discovery, replacements: Mapping[int, nn.Module]
) -> fx.GraphModule:
    """Give every site its own module in a GraphModule; the replaced ones get ``replacements``."""
    assert discovery.graph is not None
    gm = fx.GraphModule(model, discovery.graph, class_name=type(model).__name__)
    graph = gm.graph
    for site in discovery.sites:
        new = replacements.get(site.index)
        node = site.node
        assert node is not None
        if site.kind == "module" and not site.reused:
            if new is not None:
                gm.add_submodule(site.qualname, new)
                if site.later_users:
                    _redirect_inplace_readers(node, _input_node(node), node)
            continue
        if new is None:
            if site.kind == "module":
                if site.call == 0:
                    continue  # the first call keeps the original module and its path
                new = copy.deepcopy(site.module)
            else:
                spec = site.functional
                fn = node.target if node.op == "call_function" else spec.fn
                if node.op == "call_method" and spec.always_inplace:
                    fn = getattr(torch, f"{spec.name}_")
                new = FunctionalActivation(fn, spec.op, site.inplace)
        new.site_path = site.path
        new.train(model.training)
        target = _new_target(gm, site)
        gm.add_submodule(target, new)
        if site.kind == "module":
            node.target = target
            new_node = node
        else:
            if isinstance(new, FunctionalActivation):
                args, kwargs = _functional_call_args(node)
            else:
                args, kwargs = (_functional_call_args(node)[0][0],), {}
            with graph.inserting_after(node):
                new_node = graph.call_module(target, args, kwargs)
            node.replace_all_uses_with(new_node)
            graph.erase_node(node)
        if site.later_users and not isinstance(new, FunctionalActivation):
            # The original call modified its input in place; the replacement does not, so
            # later readers of the input must read the replacement's output instead.
            _redirect_inplace_readers(new_node, _input_node(new_node), new_node)
    for node in graph.nodes:
        if isinstance(node.type, str):
            # String annotations (``from __future__ import annotations``) break pickling of
            # the generated code; they carry no information the graph needs.
            node.type = None
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    _copy_model_state(model, gm)
    return gm


def _redirect_inplace_readers(node: fx.Node, value: Any, replacement: fx.Node) -> None:
    if not isinstance(value, fx.Node):
        return
    position = {n: i for i, n in enumerate(node.graph.nodes)}
    value.replace_all_uses_with(
        replacement,
        delete_user_cb=lambda user: user is not node and position[user] > position[node],
    )


def _copy_model_state(model: nn.Module, gm: fx.GraphModule) -> None:
    """Carry training modes and plain attributes (e.g. ``default_activation``) over to ``gm``."""
    gm.training = model.training
    for name, module in gm.named_modules():
        try:
            original = model.get_submodule(name) if name else model
        except AttributeError:
            continue
        if original is not module and not isinstance(module, SearchableActivation):
            module.training = original.training
    for key, value in vars(model).items():
        if key.startswith("_") or key == "training" or hasattr(gm, key):
            continue
        if isinstance(value, str | int | float | bool | tuple | type(None)):
            setattr(gm, key, value)


def set_activations(
    model: nn.Module,
    operators: Mapping[str, str] | str,
    *,
    alpha: float | Mapping[str, float] = 1.0,
    beta: float | Mapping[str, float] = 1.0,
    learnable: bool = False,
    per_channel: bool = False,
    example_input: Any = None,
) -> nn.Module:
    """Replace activation sites by :class:`SearchableActivation` modules.

    Parameters
    ----------
    model
        The model; it is modified in place when that is possible (see Returns).
    operators
        One operator for every site, or ``{site name or path: operator}``. Sites missing from
        the mapping keep their activation unless ``alpha``/``beta`` name them (they then get a
        ``SearchableActivation`` of their current operator).
    alpha, beta
        Initial scales: one value for every replaced site, or ``{site: value}`` (default 1.0).
    learnable
        Whether the scales and operator parameters of the replaced sites are trained.
    per_channel
        One scale per channel (dimension 1) instead of one per site. The channel count is
        measured on ``example_input`` if given, otherwise read from the layer feeding the site.
    example_input
        See :func:`activation_sites`; also used to measure channel counts.

    Returns
    -------
    The model to use: ``model`` itself when every replaced site is a distinct module called
    once (swapped in place); otherwise a ``torch.fx.GraphModule`` in which every site has its own
    module. The GraphModule shares the parameters and non-activation layers of ``model``, like
    ``torch.fx.symbolic_trace``; deep-copy ``model`` first if the original must stay independent.
    Replacements always compute out of place, also for ``inplace=True`` activations.

    Raises
    ------
    ValueError
        For an unknown site name or operator (listing the valid ones), a model without sites,
        or a model that cannot be analysed (see :func:`activation_sites`).
    """
    discovery = _discover(model, example_input)
    sites = discovery.sites
    if not sites:
        raise ValueError(
            f"{type(model).__name__} has no activation sites; build it with nn.Module activations "
            "(nn.ReLU, nn.SiLU, ...) or functional ones (F.relu, torch.tanh, ...)"
        )
    by_key: dict[str, _Site] = {site.path: site for site in sites}
    by_key.update({site.name: site for site in sites})
    valid = [site.name for site in sites]

    if isinstance(operators, str):
        chosen = {site.index: operators for site in sites}
    elif isinstance(operators, Mapping):
        chosen = _per_site(operators, by_key, "operators", valid)
    else:
        raise ValueError(
            f"operators must be an operator name or a mapping site -> operator, got "
            f"{type(operators).__name__}"
        )
    alphas = _per_site(alpha, by_key, "alpha", valid)
    betas = _per_site(beta, by_key, "beta", valid)
    default_alpha = 1.0 if isinstance(alpha, Mapping) else alpha
    default_beta = 1.0 if isinstance(beta, Mapping) else beta

    selected = [s for s in sites if s.index in chosen or s.index in alphas or s.index in betas]
    # Validate every operator before anything is modified.
    op_names = {site.index: resolve_operator(chosen.get(site.index, site.op)) for site in selected}
    channels = _channel_counts(model, discovery, selected, example_input) if per_channel else {}
    replacements: dict[int, nn.Module] = {}
    for site in selected:
        new = SearchableActivation(
            op_names[site.index],
            alpha=alphas.get(site.index, default_alpha),
            beta=betas.get(site.index, default_beta),
            learnable=learnable,
            num_channels=channels.get(site.index),
        )
        new.site_path = site.path
        replacements[site.index] = new

    in_place = all(
        site.kind == "module" and not site.reused and not site.later_users for site in selected
    )
    if not in_place:
        return _rewrite(model, discovery, replacements)
    for site in selected:
        new = replacements[site.index]
        new.train(site.module.training)
        _set_submodule(model, site.qualname, new)
    return model
