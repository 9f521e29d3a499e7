"""benchmarks/stacked_step.py: the stacked arms time the same computation as sequential steps."""

from __future__ import annotations

import importlib

import pandas as pd
import pytest
import torch


@pytest.fixture()
def bench():
    return importlib.import_module("stacked_step")  # benchmarks/ is on pytest's path


def _members_and_batch(bench, members: int = 3, batch: int = 4):
    generator = torch.Generator().manual_seed(0)
    nets = [bench.Member(0.5, generator) for _ in range(members)]
    x = torch.randn(members, batch, 1, bench.SIDE, bench.SIDE, generator=generator)
    y = torch.randint(0, bench.CLASSES, (members, batch), generator=generator)
    return nets, x, y


def test_stacked_arms_compute_each_members_loss_and_gradients(bench) -> None:
    nets, x, y = _members_and_batch(bench)
    arms = {"sequential": bench.Sequential(nets), "vmap": bench.Vmapped(nets)}
    arms["grouped"] = bench.Grouped(nets)
    assert bench.check_same_computation(arms, x, y) < 1e-4
    # One optimizer step of every arm moves the members' weights the same way.
    for arm in arms.values():
        arm.step(x, y)
    want = torch.stack([m.fc1.weight for m in arms["sequential"].members]).detach()
    torch.testing.assert_close(arms["vmap"].params["fc1.weight"].detach(), want)
    torch.testing.assert_close(arms["grouped"].params["fc1"].detach().mT, want)


def test_an_arm_that_mixes_members_is_caught(bench) -> None:
    nets, x, y = _members_and_batch(bench)
    grouped = bench.Grouped(nets)
    with torch.no_grad():  # member 1 gets member 0's first-layer weights
        grouped.params["conv1"][6:12] = grouped.params["conv1"][0:6]
    arms = {"sequential": bench.Sequential(nets), "grouped": grouped}
    with pytest.raises(AssertionError, match="grouped"):
        bench.check_same_computation(arms, x, y)


def test_quick_run_writes_every_arm(bench, tmp_path) -> None:
    out = tmp_path / "out"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    timings = pd.read_csv(out / "timings.csv")
    assert set(timings["arm"]) == {"sequential", "vmap", "grouped"}
    assert (timings["ms_per_step"] > 0).all()
    assert "speed-up vs sequential" in (out / "table.md").read_text()
