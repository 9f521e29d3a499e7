"""Site discovery: the activation call sites of a model in forward order, with stable names.

Discovery traces the model with ``torch.fx``, treating activation modules (and ``safs_exclude``
modules) as leaves; an untraceable model is run once on ``example_input`` instead, with hooks and
a ``TorchFunctionMode`` recording the calls. Imports torch, :mod:`safs_smac.activations` and
:mod:`.kinds`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode

from safs_smac.activations import SearchableActivation
from safs_smac.sites.kinds import (
    _FUNCTIONS,
    _METHODS,
    _RUNTIME,
    _Functional,
    _is_opaque,
    _site_op,
    _SiteTracer,
)

__all__ = ["ActivationSite", "activation_sites", "searchable_activations"]


@dataclass(frozen=True)
class ActivationSite:
    """One activation call in forward order.

    Attributes
    ----------
    index
        Position in forward order, 0-based.
    name
        ``f"{index:0{w}d}_{path}"`` with ``w = max(2, len(str(n_sites - 1)))``; sorts in forward
        order and is the key :func:`set_activations` expects.
    path
        Readable owner path: ``"features.2"`` for a module, ``"layer1.0.relu#1"`` for the second
        call of a reused module, ``"block.relu"`` for ``F.relu`` called in ``block.forward``.
    kind
        ``"module"`` or ``"functional"``. After :func:`set_activations` rewrote a model, every
        site is a module (functional calls become :class:`FunctionalActivation` or
        :class:`~safs_smac.activations.SearchableActivation` modules); names and paths stay.
    op
        Current operator's canonical name, or the class/function name if it is not an operator.
    """

    index: int
    name: str
    path: str
    kind: str
    op: str


# ---------------------------------------------------------------------------------------------
# Discovery.
# ---------------------------------------------------------------------------------------------


@dataclass
class _Site:
    kind: str
    path: str
    op: str
    node: fx.Node | None = None
    qualname: str | None = None  # module sites: attribute path of the called module
    module: nn.Module | None = None
    call: int = 0  # number of earlier calls of the same module
    reused: bool = False
    inplace: bool = False
    later_users: bool = False  # the input is read again after an in-place call
    functional: _Functional | None = None
    index: int = 0
    name: str = ""


@dataclass
class _Discovery:
    sites: list[_Site]
    graph: fx.Graph | None  # None when the sites were found at run time


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _discover(model: nn.Module, example_input: Any = None) -> _Discovery:
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected an nn.Module, got {type(model).__name__}; pass the model")
    try:
        graph = _SiteTracer().trace(model)
    except Exception as exc:  # fx raises many exception types for untraceable code
        if example_input is None:
            raise ValueError(
                f"torch.fx could not trace {type(model).__name__} ({_first_line(exc)}); pass "
                "an input batch as example_input=... (to SAFSProblem or activation_sites) to "
                "find its activation modules by running it once (this supports models whose "
                "activations are distinct nn.Module instances)"
            ) from exc
        sites = _runtime_sites(model, example_input, _first_line(exc))
        return _Discovery(_number(sites), None)
    return _Discovery(_number(_graph_sites(model, graph)), graph)


def _number(sites: list[_Site]) -> list[_Site]:
    width = max(2, len(str(len(sites) - 1)))
    for index, site in enumerate(sites):
        site.index = index
        site.name = f"{index:0{width}d}_{site.path}"
    return sites


def _input_node(node: fx.Node) -> Any:
    return node.args[0] if node.args else node.kwargs.get("input")


def _has_later_users(node: fx.Node, value: Any) -> bool:
    """Whether ``value`` (the input of an in-place call ``node``) is read after ``node``."""
    if not isinstance(value, fx.Node):
        return False
    position = {n: i for i, n in enumerate(node.graph.nodes)}
    return any(position[user] > position[node] for user in value.users if user is not node)


def _functional_inplace(spec: _Functional, node: fx.Node) -> bool:
    if spec.always_inplace:
        return True
    bound = dict(zip(spec.params, node.args[1:]))
    bound.update(node.kwargs)
    return bound.get("inplace", False) is True


def _graph_sites(model: nn.Module, graph: fx.Graph) -> list[_Site]:
    call_totals = Counter(
        id(model.get_submodule(n.target)) for n in graph.nodes if n.op == "call_module"
    )
    calls_seen: Counter[int] = Counter()
    sites: list[_Site] = []
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            op = _site_op(module)
            if op is None:
                continue
            call = calls_seen[id(module)]
            calls_seen[id(module)] += 1
            base = getattr(module, "site_path", None) or node.target
            inplace = getattr(module, "inplace", False) is True
            sites.append(
                _Site(
                    kind="module",
                    path=base if call == 0 else f"{base}#{call}",
                    op=op,
                    node=node,
                    qualname=node.target,
                    module=module,
                    call=call,
                    reused=call_totals[id(module)] > 1,
                    inplace=inplace,
                    later_users=inplace and _has_later_users(node, _input_node(node)),
                )
            )
        elif node.op in ("call_function", "call_method"):
            table = _FUNCTIONS if node.op == "call_function" else _METHODS
            spec = table.get(node.target)
            if spec is None:
                continue
            inplace = _functional_inplace(spec, node)
            stack = node.meta.get("nn_module_stack") or {}
            owner = next(reversed(stack.values()))[0] if stack else ""
            sites.append(
                _Site(
                    kind="functional",
                    path=f"{owner}.{spec.name}" if owner else spec.name,  # made unique below
                    op=spec.op,
                    node=node,
                    inplace=inplace,
                    later_users=inplace and _has_later_users(node, _input_node(node)),
                    functional=spec,
                )
            )
    _make_functional_paths_unique(sites)
    return sites


def _make_functional_paths_unique(sites: list[_Site]) -> None:
    """Number repeated functional calls ("block.relu", "block.relu#1") around module paths."""
    taken = {site.path for site in sites if site.kind == "module"}
    next_call: Counter[str] = Counter()
    for site in sites:
        if site.kind != "functional":
            continue
        base, call = site.path, next_call[site.path]
        while (candidate := base if call == 0 else f"{base}#{call}") in taken:
            call += 1
        next_call[base] = call + 1
        taken.add(candidate)
        site.path = candidate


def _call_model(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, tuple):
        return model(*example_input)
    if isinstance(example_input, dict):
        return model(**example_input)
    return model(example_input)


class _RuntimeRecorder(TorchFunctionMode):
    """Records module and functional activation calls outside opaque modules during a forward."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = {id(m): name for name, m in model.named_modules()}
        self.stack: list[str] = []
        self.opaque_depth = 0
        self.module_calls: list[tuple[str, nn.Module]] = []
        self.functional_calls: list[tuple[str, str]] = []
        self.handles = []
        for module in model.modules():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module: nn.Module, args: Any) -> None:
        if self.opaque_depth == 0 and _site_op(module) is not None:
            self.module_calls.append((self.names[id(module)], module))
        self.stack.append(self.names[id(module)])
        self.opaque_depth += _is_opaque(module)

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        self.stack.pop()
        self.opaque_depth -= _is_opaque(module)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        spec = _RUNTIME.get(func)
        if spec is not None and self.opaque_depth == 0:
            self.functional_calls.append((self.stack[-1] if self.stack else "", spec.name))
        return func(*args, **(kwargs or {}))

    def remove_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()


def _runtime_sites(model: nn.Module, example_input: Any, trace_error: str) -> list[_Site]:
    """Find module sites of an untraceable model by running it once (eval mode, no grad)."""
    modes = {module: module.training for module in model.modules()}
    recorder = _RuntimeRecorder(model)
    try:
        model.eval()
        with torch.no_grad(), recorder:
            _call_model(model, example_input)
    finally:
        recorder.remove_hooks()
        for module, mode in modes.items():
            module.training = mode

    fix = "or make the model torch.fx traceable"
    if recorder.functional_calls:
        owner, fname = recorder.functional_calls[0]
        raise ValueError(
            f"{type(model).__name__} is not torch.fx traceable ({trace_error}) and calls the "
            f"activation function {fname} in module {owner or '<root>'!r}; replace it with a "
            f"distinct nn.Module activation per call (e.g. nn.ReLU()) {fix}"
        )
    counts = Counter(id(module) for _, module in recorder.module_calls)
    sites: list[_Site] = []
    for qualname, module in recorder.module_calls:
        if counts[id(module)] > 1:
            raise ValueError(
                f"{type(model).__name__} is not torch.fx traceable ({trace_error}) and calls "
                f"the activation module {qualname!r} {counts[id(module)]} times; give each call "
                f"its own module instance (e.g. nn.ReLU()) {fix}"
            )
        op = _site_op(module)
        assert op is not None
        path = getattr(module, "site_path", None) or qualname
        sites.append(_Site("module", path, op, qualname=qualname, module=module))
    return sites


def activation_sites(model: nn.Module, *, example_input: Any = None) -> list[ActivationSite]:
    """List the activation call sites of ``model`` in forward order.

    Parameters
    ----------
    model
        Any module; it is traced with ``torch.fx`` and not modified.
    example_input
        Only used when fx tracing fails: the model is then run once on it (eval mode, no grad)
        to find activation modules. A tuple is unpacked into positional arguments, a dict into
        keyword arguments.

    Raises
    ------
    ValueError
        If the model cannot be traced and no ``example_input`` is given, or if an untraceable
        model uses functional activations or calls one activation module more than once.
    """
    return [
        ActivationSite(site.index, site.name, site.path, site.kind, site.op)
        for site in _discover(model, example_input).sites
    ]


def searchable_activations(
    model: nn.Module, *, example_input: Any = None
) -> dict[str, SearchableActivation]:
    """Map site name -> :class:`SearchableActivation` for the sites that are one, forward order."""
    return {
        site.name: site.module
        for site in _discover(model, example_input).sites
        if isinstance(site.module, SearchableActivation)
    }
