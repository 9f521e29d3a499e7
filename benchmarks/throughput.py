"""Fine-tuning throughput of ``safs_smac.training.fit`` against two hand-written baselines.

For every zoo model, three training loops run side by side in one process, on the same pruned
weights, the same synthetic data, batch size, optimizer settings and number of steps:

* ``ours``: :func:`safs_smac.training.fit` on the pruned model whose activation sites were
  replaced by frozen :class:`~safs_smac.activations.SearchableActivation` modules (the model's
  default operator) with :func:`safs_smac.sites.set_activations`. This is exactly what one SAFS
  trial runs, per-fit set-up (device resolution, optimizer and scheduler construction) included.
* ``bare`` (a): the best case for plain PyTorch: the same pruned architecture with its default
  activation modules (``nn.ReLU`` / ``nn.SiLU``), ``torch.optim.SGD``, inputs normalised once up
  front and batches taken as contiguous slices. On CUDA it uses the same numerics as ``ours``
  (bf16 autocast, channels_last) so that only the engine differs.
* ``reference`` (b): the loop style of the SAFS reference code: a ``DataLoader`` over a
  ``TensorDataset`` (shuffle, no workers), per-sample normalisation (what its torchvision
  transforms do), running loss and accuracy read with ``.item()`` every step, fp32, and an
  activation module that allocates its scale tensors and picks its operator by
  comparing strings on every forward (:class:`ReferenceActivation`) at every site.

All three keep the same ``torch.nn.utils.prune`` masks (99% layer-wise L1 by default), so the
comparison measures engine overhead, not sparsity. Warm-up steps are excluded; the variants are
interleaved and repeated, and the best images/s over the repeats is reported (the JSON also
holds the median and every timing).

Example::

    python benchmarks/throughput.py --device cpu --models lenet5,resnet18 --repeats 3

Results are printed and written (atomically) as Markdown and JSON to
``benchmarks/results/throughput/``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _common import RESULTS_DIR, command_line, write_json, write_text
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from safs_smac.data import Dataset, Split, load_dataset
from safs_smac.models import create_model
from safs_smac.pruning import get_masks, magnitude_prune
from safs_smac.sites import activation_sites, set_activations
from safs_smac.training import Recipe, fit, resolve_device

# (channels, image size) each model is benchmarked at: LeNet-5 and the MLP on MNIST-shaped data,
# the CIFAR models on 3x32x32.
SHAPES: dict[str, tuple[int, int]] = {
    "lenet5": (1, 28),
    "mlp": (1, 28),
    "resnet18": (3, 32),
    "vgg16": (3, 32),
    "efficientnet_b0": (3, 32),
}
# On a small CPU the big models take seconds per step; the default CPU run stays a few minutes.
CPU_MODELS = ("lenet5", "mlp", "resnet18")
CPU_STEPS = {"lenet5": 100, "mlp": 50, "resnet18": 6, "vgg16": 4, "efficientnet_b0": 4}
ACCELERATOR_STEPS = 50
NUM_CLASSES = 10
VARIANTS = ("ours", "bare", "reference")


# The reference's operator chain, in its order (``relu`` near the end): (name, op(x, alpha, beta)).
# ``ReferenceActivation`` compares its name with each entry in turn, as the reference's if/elif
# chain does, and the lambdas build ``nn`` modules on the spot where the reference does.
_REFERENCE_CHAIN: tuple[tuple[str, Callable[..., torch.Tensor]], ...] = (
    ("linear", lambda x, alpha, beta: beta * x),
    ("tanhsoft1", lambda x, alpha, beta: nn.Tanh()(alpha * x) * nn.Softplus()(x)),
    ("srs", lambda x, alpha, beta: x / (x / alpha + torch.exp(-x / beta))),
    ("mish", lambda x, alpha, beta: alpha * nn.Mish()(beta * x)),
    ("relu6", lambda x, alpha, beta: alpha * nn.ReLU6()(beta * x)),
    ("hardswish", lambda x, alpha, beta: alpha * nn.Hardswish()(beta * x)),
    ("elu", lambda x, alpha, beta: alpha * F.elu(beta * x)),
    ("selu", lambda x, alpha, beta: alpha * F.selu(beta * x)),
    ("tanh", lambda x, alpha, beta: alpha * torch.tanh(beta * x)),
    ("sigmoid", lambda x, alpha, beta: alpha * torch.sigmoid(beta * x)),
    ("logsigmoid", lambda x, alpha, beta: alpha * F.logsigmoid(beta * x)),
    ("softplus", lambda x, alpha, beta: alpha * F.softplus(beta * x)),
    ("relu", lambda x, alpha, beta: alpha * F.relu(beta * x)),
    ("swish", lambda x, alpha, beta: alpha * torch.sigmoid(beta * x) * x),
    ("gelu", lambda x, alpha, beta: alpha * nn.GELU()(beta * x)),
)


class ReferenceActivation(nn.Module):
    """An activation written the way the SAFS reference writes it (deliberately slow).

    Every forward allocates fresh ``alpha``/``beta`` tensors, always multiplies by both, walks a
    chain of string comparisons (``_REFERENCE_CHAIN``, in the reference's order, ``relu`` near
    the end) and builds some operators as new modules on the spot; an unknown name silently
    becomes ReLU.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.tensor(1.0, device=x.device)
        beta = torch.tensor(1.0, device=x.device)
        for name, op in _REFERENCE_CHAIN:
            if self.name == name:
                return op(x, alpha, beta)
        return alpha * F.relu(beta * x)


# --------------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------------


def build_variants(name: str, rate: float, seed: int) -> dict[str, nn.Module]:
    """Three copies of one pruned model: plain activations, reference-style ones, ours."""
    channels, size = SHAPES[name]
    torch.manual_seed(seed)
    base = create_model(name, num_classes=NUM_CLASSES, in_channels=channels, input_size=size)
    magnitude_prune(base, rate, scope="layerwise")

    reference = copy.deepcopy(base)
    for site in activation_sites(reference):
        reference.set_submodule(site.path, ReferenceActivation(site.op))
    ours = set_activations(copy.deepcopy(base), base.default_activation, learnable=False)

    variants = {"ours": ours, "bare": base, "reference": reference}
    masks = get_masks(base)
    for variant, model in variants.items():
        other = get_masks(model)
        if other.keys() != masks.keys() or any(not torch.equal(masks[k], other[k]) for k in masks):
            raise RuntimeError(f"{name}/{variant}: pruning masks differ from the bare model's")
    return variants


def make_data(name: str, batch_size: int, steps: int, warmup: int, seed: int) -> Dataset:
    """Synthetic data with at least ``batch_size * max(steps, warmup)`` training images."""
    channels, size = SHAPES[name]
    return load_dataset(
        "synthetic",
        n_train=batch_size * max(steps, warmup, 1),
        n_val=batch_size,
        n_test=1,
        num_classes=NUM_CLASSES,
        channels=channels,
        size=size,
        seed=seed,
    )


def first(split: Split, n: int) -> Split:
    return Split(x=split.x[:n], y=split.y[:n])


def sgd(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of one timed block: elapsed (``wall``) and CPU time of this process (``cpu``)."""

    wall: float
    cpu: float


class Stopwatch:
    """Times a block after draining the device queue on entry and exit.

    CPU time (all threads of this process) complements wall time on a shared machine: time
    slices lost to other processes do not count, so with one torch thread it measures the work
    done rather than the time waited.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.timing = Timing(math.nan, math.nan)

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


# --------------------------------------------------------------------------------------------------
# The three loops. Each returns the seconds taken by ``steps`` steps after ``warmup`` steps.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Job:
    """What every loop runs: the data, the recipe, the steps timed and untimed, the device."""

    data: Dataset
    recipe: Recipe
    steps: int
    warmup: int
    device: torch.device


def time_steps(step: Callable[[int], None], job: Job) -> Timing:
    """``step(i)`` for ``i < job.warmup`` untimed, then timed for ``i < job.steps``."""
    for i in range(job.warmup):
        step(i)
    with Stopwatch(job.device) as watch:
        for i in range(job.steps):
            step(i)
    return watch.timing


def time_bare(model: nn.Module, job: Job) -> Timing:
    """(a) Plain PyTorch: pre-normalised tensors on the device, contiguous batches."""
    data, recipe, device = job.data, job.recipe, job.device
    cuda = device.type == "cuda"
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    model.to(device, memory_format=memory_format).train()
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x = ((data.train.x.float() / 255 - mean) / std).to(device, memory_format=memory_format)
    y = data.train.y.to(device)
    optimizer = sgd(model, recipe)
    bs = recipe.batch_size

    def step(i: int) -> None:
        xb, yb = x[i * bs : (i + 1) * bs], y[i * bs : (i + 1) * bs]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return time_steps(step, job)


def time_reference(model: nn.Module, job: Job) -> Timing:
    """(b) Reference style: DataLoader, per-sample normalisation, two ``.item()`` every step."""
    data, recipe, device = job.data, job.recipe, job.device
    model.to(device).train()
    mean = torch.tensor(data.mean).view(-1, 1, 1)
    std = torch.tensor(data.std).view(-1, 1, 1)
    n = recipe.batch_size * (job.steps + job.warmup)
    x, y = data.train.x, data.train.y
    repeat = -(-n // len(y))
    loader = DataLoader(
        TensorDataset(x.repeat(repeat, 1, 1, 1)[:n], y.repeat(repeat)[:n]),
        batch_size=recipe.batch_size,
        shuffle=True,
        num_workers=0,
    )
    optimizer = sgd(model, recipe)
    criterion = nn.CrossEntropyLoss()
    running, correct = 0.0, 0
    batches = iter(loader)

    def step(_: int) -> None:
        nonlocal running, correct
        images, labels = next(batches)
        images = torch.stack([(img.float() / 255 - mean) / std for img in images])
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        output = model(images)
        loss = criterion(output, labels)
        running += loss.item()
        loss.backward()
        optimizer.step()
        correct += output.max(1)[1].eq(labels).sum().item()  # running accuracy, as logged there

    return time_steps(step, job)


def time_ours(model: nn.Module, job: Job) -> Timing:
    """(c) ``safs_smac.training.fit`` for one epoch of exactly ``steps`` batches."""
    data, recipe, device = job.data, job.recipe, job.device
    bs = recipe.batch_size
    if job.warmup:
        warm = dataclasses.replace(data, train=first(data.train, bs * job.warmup))
        fit(model, warm, recipe, epochs=1, device=device, evaluate_val=False)
    timed = dataclasses.replace(data, train=first(data.train, bs * job.steps))
    with Stopwatch(device) as watch:
        result = fit(model, timed, recipe, epochs=1, device=device, evaluate_val=False)
    if result.diverged:  # a fit that stopped early would look fast: report it, never time it
        raise Diverged(result.reason or "non-finite loss")
    return watch.timing


class Diverged(Exception):
    """``fit`` stopped on a non-finite loss, so its timing is meaningless."""


TIMERS: dict[str, Callable[[nn.Module, Job], Timing]] = {
    "ours": time_ours,
    "bare": time_bare,
    "reference": time_reference,
}


# --------------------------------------------------------------------------------------------------
# Driver and report
# --------------------------------------------------------------------------------------------------


def bench_model(
    name: str,
    *,
    device: torch.device,
    batch_size: int,
    steps: int,
    warmup: int,
    repeats: int,
    rate: float,
    seed: int,
    clock: str = "wall",
) -> dict[str, Any]:
    recipe = Recipe(
        epochs=1, batch_size=batch_size, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4
    )
    variants = build_variants(name, rate, seed)
    job = Job(make_data(name, batch_size, steps, warmup, seed), recipe, steps, warmup, device)
    timings: dict[str, list[Timing]] = {v: [] for v in VARIANTS}
    channels, size = SHAPES[name]
    row: dict[str, Any] = {
        "model": name,
        "input": f"{channels}x{size}x{size}",
        "batch_size": batch_size,
        "steps": steps,
        "clock": clock,
    }
    try:
        for r in range(repeats):
            # Rotate the order so that no variant always runs first (caches, neighbours).
            for variant in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                timings[variant].append(TIMERS[variant](variants[variant], job))
    except Diverged as err:
        return {**row, "diverged": str(err)}
    images = batch_size * steps
    seconds = {
        kind: {v: [getattr(t, kind) for t in ts] for v, ts in timings.items()}
        for kind in ("wall", "cpu")
    }
    # Best of the repeats, as timeit recommends: other processes can only make a run slower, so
    # the fastest repeat is the least disturbed estimate. The median is kept for reference.
    best = {v: images / min(s) for v, s in seconds[clock].items()}
    return {
        **row,
        "images_per_s": best,
        "median_images_per_s": {
            v: images / statistics.median(s) for v, s in seconds[clock].items()
        },
        "seconds": seconds,
        "ours_over_bare": best["ours"] / best["bare"],
        "ours_over_reference": best["ours"] / best["reference"],
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| model | input | batch | steps | ours img/s | (a) bare img/s | (b) reference img/s "
        "| ours/(a) | ours/(b) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "diverged" in row:
            lines.append(
                f"| {row['model']} | {row['input']} | {row['batch_size']} | {row['steps']} "
                f"| diverged: {row['diverged']} | | | | |"
            )
            continue
        ips = row["images_per_s"]
        lines.append(
            f"| {row['model']} | {row['input']} | {row['batch_size']} | {row['steps']} "
            f"| {ips['ours']:,.0f} | {ips['bare']:,.0f} | {ips['reference']:,.0f} "
            f"| {row['ours_over_bare']:.2f}x | {row['ours_over_reference']:.2f}x |"
        )
    return "\n".join(lines)


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return (
        f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
        f"{threads} torch thread{'' if threads == 1 else 's'}"
    )


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {', '.join(SHAPES)} or 'all' "
        f"(default: {', '.join(CPU_MODELS)} on CPU, all on an accelerator)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per repeat (default: per model)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each timing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.99, help="layer-wise pruning rate")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time the table reports: elapsed, or CPU time of this process (CPU device only; "
        "robust on a busy machine with --threads 1)",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "throughput", help="results directory"
    )
    args = parser.parse_args(argv)
    for option in ("steps", "batch_size", "repeats", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        raise SystemExit("--clock cpu measures host CPU time; use it with --device cpu only")
    if args.models in (None, ""):
        models = list(CPU_MODELS if device.type == "cpu" else SHAPES)
    elif args.models == "all":
        models = list(SHAPES)
    else:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in SHAPES]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; valid models: {', '.join(SHAPES)}")

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # What every model is timed with (the steps depend on the model and the device).
    timing = {
        key: getattr(args, key)
        for key in ("batch_size", "warmup", "repeats", "rate", "seed", "clock")
    }
    rows = []
    for name in models:
        if args.steps is not None:
            steps = args.steps
        else:
            steps = CPU_STEPS[name] if device.type == "cpu" else ACCELERATOR_STEPS
        started = time.perf_counter()
        row = bench_model(name, device=device, steps=steps, **timing)
        rows.append(row)
        if "diverged" in row:
            print(f"{name:>16}: fit diverged ({row['diverged']}), not timed", flush=True)
            continue
        ips = row["images_per_s"]
        print(
            f"{name:>16}: ours {ips['ours']:8.0f}  bare {ips['bare']:8.0f}  "
            f"reference {ips['reference']:8.0f} img/s  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

    command = command_line("throughput.py", argv)
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "device": str(device),
        "machine": describe_machine(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "pruning_rate": args.rate,
        "clock": args.clock,
        "statistic": "best images/s over repeats (median also in the JSON)",
        # Other processes on a small machine distort timings; record how busy it was.
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}
        if load_before is not None
        else None,
    }
    table = markdown_table(rows)
    print()
    print(table)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = args.out / f"{device.type}-{stamp}"
    header = "\n".join(f"- {key}: `{_plain(value)}`" for key, value in meta.items())
    write_text(stem.with_suffix(".md"), f"# Throughput\n\n{header}\n\n{table}\n")
    write_json(stem.with_suffix(".json"), {"meta": meta, "results": rows})
    print(f"\nwrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
