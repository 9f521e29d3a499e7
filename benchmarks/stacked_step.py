"""Stacked weights on the CPU: do ``torch.func.vmap`` or grouped convolutions train ``M`` LeNet-5
members faster than ``M`` separate training steps?

``SAFSProblem.train_batch`` runs each member's own modules on its block of one batch
(``benchmarks/batched.py``). The other way to batch trials is to stack the members' weights and
run every layer once for all of them. This script times one training step (forward, backward,
Adam) of ``M`` LeNet-5 members at the main job's shape (MNIST 28x28, batch 128, 99% of every
layer's weights masked, ``alpha * silu(beta * x)`` at the four activation sites with per-member
learnable scales) three ways, side by side in one process:

* ``sequential``: ``M`` modules and ``M`` Adam optimizers, one step after the other (what ``M``
  trials do);
* ``vmap``: ``torch.func.stack_module_state`` + ``vmap(grad(functional_call))``, one Adam over the
  stacked parameters (torch's own recipe for model ensembles);
* ``grouped``: the members' weights stacked by hand; each convolution is one grouped convolution
  over member-stacked channels (``channels_last``), each linear layer one batched matmul, the
  activations one kernel with per-channel scales, one Adam over the stacked parameters.

The stacked arms use one learning rate for all members (real trials differ in it), which can only
favour them. Before timing, every arm computes the members' losses and gradients from the same
weights and data, and they must agree with the sequential arm (``rtol`` 1e-4), so the arms time the
same computation. The arms alternate within each repeat; each thread count runs its own repeats.

Example::

    python benchmarks/stacked_step.py --threads 1,2 --repeats 5

Results are printed and written (atomically) to ``benchmarks/results/stacked_step/``
(``table.md``, ``timings.csv``, ``meta.json``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from _common import (
    RESULTS_DIR,
    add_quick_argument,
    command_line,
    machine_description,
    markdown_table,
    parse_list,
    parse_with_quick,
    utc_now,
    write_timing_results,
)
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

SIDE, CLASSES, LR = 28, 10, 1e-3
LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")
QUICK = {
    "members": 2,
    "batch": 16,
    "steps": 2,
    "repeats": 1,
    "threads": "1",
    "out": Path("safs_runs/bench_stacked_step_quick"),
}


class Member(nn.Module):
    """One trial's LeNet-5: masked weights (``weight * mask``, as ``torch.nn.utils.prune``'s hook
    computes them) and ``alpha[i] * silu(beta[i] * x)`` at site ``i``."""

    def __init__(self, sparsity: float, generator: torch.Generator) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)
        scales = torch.rand(2, 4, generator=generator) + 0.5
        self.alpha, self.beta = nn.Parameter(scales[0]), nn.Parameter(scales[1])
        for name in LAYERS:
            weight = getattr(self, name).weight
            keep = torch.rand(weight.shape, generator=generator) >= sparsity
            self.register_buffer(f"{name}_mask", keep.float())

    def weight(self, name: str) -> torch.Tensor:
        return getattr(self, name).weight * getattr(self, f"{name}_mask")

    def act(self, x: torch.Tensor, site: int) -> torch.Tensor:
        return self.alpha[site] * F.silu(self.beta[site] * x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act(F.conv2d(x, self.weight("conv1"), self.conv1.bias), 0), 2)
        x = F.max_pool2d(self.act(F.conv2d(x, self.weight("conv2"), self.conv2.bias), 1), 2)
        x = self.act(F.linear(x.flatten(1), self.weight("fc1"), self.fc1.bias), 2)
        x = self.act(F.linear(x, self.weight("fc2"), self.fc2.bias), 3)
        return F.linear(x, self.weight("fc3"), self.fc3.bias)


class Sequential:
    """``M`` members, ``M`` optimizers, one step after the other."""

    def __init__(self, members: list[Member]) -> None:
        self.members = copy.deepcopy(members)
        self.optimizers = [torch.optim.Adam(m.parameters(), LR) for m in self.members]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([F.cross_entropy(m(xm), ym) for m, xm, ym in zip(self.members, x, y)])

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        for member in self.members:
            member.zero_grad()
        self.losses(x, y).sum().backward()
        return {
            name: torch.stack([getattr(m, name).weight.grad for m in self.members])
            for name in LAYERS
        }

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for member, optimizer, xm, ym in zip(self.members, self.optimizers, x, y):
            loss = F.cross_entropy(member(xm), ym)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


class Vmapped:
    """``torch.func``'s model-ensembling recipe: stacked state, ``vmap`` of ``functional_call``."""

    def __init__(self, members: list[Member]) -> None:
        self.params, self.buffers = stack_module_state(copy.deepcopy(members))
        base = copy.deepcopy(members[0]).to("meta")

        def loss(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(base, (params, buffers), (x,)), y)

        self._loss = vmap(loss)
        self._grad = vmap(grad(loss))
        self.optimizer = torch.optim.Adam(self.params.values(), LR)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(self.params, self.buffers, x, y)

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        grads = self._grad(self.params, self.buffers, x, y)
        return {name: grads[f"{name}.weight"] for name in LAYERS}

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for name, value in self._grad(self.params, self.buffers, x, y).items():
            self.params[name].grad = value
        self.optimizer.step()


class Grouped:
    """Weights stacked by hand: grouped convolutions, batched matmuls, per-channel scales."""

    def __init__(self, members: list[Member]) -> None:
        self.m = len(members)
        stack = lambda tensors: torch.stack([t.detach() for t in tensors])  # noqa: E731
        self.params: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        for name in LAYERS:
            weight = stack([getattr(m, name).weight for m in members])
            mask = stack([getattr(m, f"{name}_mask") for m in members])
            bias = stack([getattr(m, name).bias for m in members])
            if name.startswith("conv"):  # (M*out, in, k, k), groups=M
                weight, mask, bias = weight.flatten(0, 1), mask.flatten(0, 1), bias.flatten()
            else:  # (M, in, out) for x @ w, bias (M, 1, out)
                weight, mask, bias = weight.transpose(1, 2), mask.transpose(1, 2), bias[:, None]
            self.params[name], self.params[f"{name}.bias"] = weight.contiguous(), bias.contiguous()
            self.masks[name] = mask.contiguous()
        self.params["alpha"] = stack([m.alpha for m in members])
        self.params["beta"] = stack([m.beta for m in members])
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.params.values(), LR)

    def _act(self, x: torch.Tensor, site: int) -> torch.Tensor:
        alpha, beta = self.params["alpha"][:, site], self.params["beta"][:, site]
        if x.dim() == 4:  # member-stacked channels: one scale per channel
            channels = x.shape[1] // self.m
            alpha = alpha.repeat_interleave(channels).view(1, -1, 1, 1)
            beta = beta.repeat_interleave(channels).view(1, -1, 1, 1)
        else:  # (M, N, features)
            alpha, beta = alpha.view(-1, 1, 1), beta.view(-1, 1, 1)
        return alpha * F.silu(beta * x)

    def _conv(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight = self.params[name] * self.masks[name]
        return F.conv2d(x, weight, self.params[f"{name}.bias"], groups=self.m)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        weight = self.params[name] * self.masks[name]
        return torch.baddbmm(self.params[f"{name}.bias"], x, weight)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m, n = x.shape[:2]
        # (M, N, 1, H, W) -> (N, M, H, W): member m's image n in channel block m of sample n.
        h = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)
        h = F.max_pool2d(self._act(self._conv(h, "conv1"), 0), 2)
        h = F.max_pool2d(self._act(self._conv(h, "conv2"), 1), 2)
        h = h.reshape(n, m, -1).transpose(0, 1)  # (M, N, 16*4*4), each member's (C, H, W) order
        h = self._act(self._linear(h, "fc1"), 2)
        h = self._act(self._linear(h, "fc2"), 3)
        logits = self._linear(h, "fc3")
        return (
            F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(m, n).mean(1)
        )

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        for tensor in self.params.values():
            tensor.grad = None
        self.losses(x, y).sum().backward()
        out = {}
        for name in LAYERS:
            g = self.params[name].grad
            out[name] = g.view(self.m, -1, *g.shape[1:]) if name.startswith("conv") else g.mT
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        self.losses(x, y).sum().backward()  # each member's loss only reaches its own weights
        self.optimizer.step()


#: The arms, in the order of a repeat's first round; "sequential" is the reference.
ARMS: dict[str, Callable[[list[Member]], Sequential | Vmapped | Grouped]] = {
    "sequential": Sequential,
    "vmap": Vmapped,
    "grouped": Grouped,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8, help="trials trained together")
    parser.add_argument("--batch", type=int, default=128, help="samples per member and step")
    parser.add_argument("--sparsity", type=float, default=0.99, help="masked share of weights")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per arm and repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each arm")
    parser.add_argument("--threads", default="1,2", help="torch thread counts, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "stacked_step", help="where the results go"
    )
    add_quick_argument(parser, QUICK)
    return parser


def check_same_computation(arms: dict[str, object], x: torch.Tensor, y: torch.Tensor) -> float:
    """Largest relative difference of the stacked arms' losses and weight gradients from the
    sequential arm's; raises if one is beyond 1e-4 (the arms would time different work)."""
    reference = arms["sequential"]
    want_loss = reference.losses(x, y).detach()
    want_grads = reference.gradients(x, y)
    worst = 0.0
    for name, arm in arms.items():
        if arm is reference:
            continue
        got = {"loss": arm.losses(x, y).detach(), **arm.gradients(x, y)}
        for key, want in {"loss": want_loss, **want_grads}.items():
            scale = want.abs().max().clamp_min(1e-12)
            error = float((got[key].detach() - want).abs().max() / scale)
            if error > 1e-4:
                raise AssertionError(f"arm {name!r} computes another {key}: rel. error {error:.1e}")
            worst = max(worst, error)
    return worst


def _timed(
    step: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor, steps: int
) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return (time.perf_counter() - start) / steps


def measure(args: argparse.Namespace) -> tuple[pd.DataFrame, float]:
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    members = [Member(args.sparsity, generator) for _ in range(args.members)]
    x = torch.randn(args.members, args.batch, 1, SIDE, SIDE, generator=generator)
    y = torch.randint(0, CLASSES, (args.members, args.batch), generator=generator)
    worst = check_same_computation({name: build(members) for name, build in ARMS.items()}, x, y)
    rows = []
    names = list(ARMS)
    for threads in parse_list(args.threads, int):
        torch.set_num_threads(threads)
        arms = {name: build(members) for name, build in ARMS.items()}  # fresh optimizer states
        for arm in arms.values():  # warm-up: first calls, allocator
            _timed(arm.step, x, y, 2)
        for repeat in range(args.repeats):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                load = os.getloadavg()[0]
                seconds = _timed(arms[name].step, x, y, args.steps)
                rows.append(
                    {
                        "threads": threads,
                        "repeat": repeat,
                        "arm": name,
                        "ms_per_step": seconds * 1e3,
                        "load_before": load,
                        "load_after": os.getloadavg()[0],
                    }
                )
                print(f"threads={threads} repeat={repeat} {name:10s} {seconds * 1e3:8.2f} ms/step")
    return pd.DataFrame(rows), worst


def summarise(frame: pd.DataFrame, members: int) -> str:
    """One row per thread count and arm: median ms per step and the paired speed-up."""
    lines = []
    for threads, group in frame.groupby("threads", sort=False):
        wide = group.pivot_table(index="repeat", columns="arm", values="ms_per_step")
        for arm in ARMS:
            speedups = (wide["sequential"] / wide[arm]).tolist()
            lines.append(
                [
                    threads,
                    arm,
                    f"{statistics.median(wide[arm]):.1f}",
                    f"{statistics.median(speedups):.2f}x ({min(speedups):.2f}-{max(speedups):.2f})",
                    f"{group['load_before'].min():.1f}-{group['load_after'].max():.1f}",
                ]
            )
    header = [
        "threads",
        "arm",
        f"ms per step of {members} members (median)",
        "speed-up vs sequential (median, min-max)",
        "load average (1 min)",
    ]
    return markdown_table(header, lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_with_quick(_parser(), argv, QUICK)
    started, start = utc_now(), time.perf_counter()
    frame, worst = measure(args)
    meta = {
        "command": command_line("stacked_step.py", argv),
        "machine": machine_description(),
        "started": started,
        "wall_seconds": time.perf_counter() - start,
        "max_relative_difference": worst,
    }
    note = (
        f"{args.members} members, batch {args.batch} each, {args.sparsity:.0%} of the weights "
        f"masked, {args.steps} steps per timing, {args.repeats} repeat(s) (arms alternate). "
        f"Losses and weight gradients of every arm agree with the sequential arm's to "
        f"{worst:.1e} (relative)."
    )
    title = "Stacked weights vs sequential training steps (LeNet-5)"
    write_timing_results(args.out, title, summarise(frame, args.members), note, meta, frame)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
