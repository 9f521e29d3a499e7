"""Tests for safs_smac.diagnostics: dead neuron rate on hand-built networks, and its tracker."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import TinyNet
from torch import nn

from safs_smac.activations import SearchableActivation
from safs_smac.diagnostics import (
    DNRReport,
    DNRTracker,
    dead_neuron_rate,
    probe_inputs,
)
from safs_smac.sites import activation_sites, set_activations

# Four 2-d inputs; unit 0 of the hand-built layer below copies x0, unit 3 copies x1.
X = torch.tensor([[1.0, 1.0], [-1.0, 2.0], [2.0, -3.0], [-1.0, -1.0]])


def _hand_built() -> nn.Sequential:
    """Linear(2, 5) + ReLU + Linear(5, 3) + Tanh with a known dead pattern on X.

    ReLU site: unit 0 = relu(x0) dead for 2 of 4 inputs, unit 1 = relu(-1) always dead, unit 2 =
    relu(1) never dead, unit 3 = relu(x1) dead for 2 of 4, unit 4 = relu(0) always dead:
    12 of 20 pairs dead, 2 of 5 units permanently dead.
    Tanh site: unit 0 = tanh(0) always zero, unit 1 = tanh(relu(1)) never, unit 2 =
    tanh(relu(x0)) zero for 2 of 4: 6 of 12 pairs, 1 of 3 units permanently.
    """
    first, second = nn.Linear(2, 5), nn.Linear(5, 3)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0], [0, 0], [0, 0], [0, 1], [0, 0]]))
        first.bias.copy_(torch.tensor([0.0, -1, 1, 0, 0]))
        second.weight.zero_()
        second.weight[1, 2] = 1.0
        second.weight[2, 0] = 1.0
        second.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), second, nn.Tanh())


@pytest.mark.parametrize("batch_size", [1, 3, 512])
def test_dead_neuron_rate_on_a_hand_built_network(batch_size):
    report = dead_neuron_rate(_hand_built(), X, batch_size=batch_size)
    relu, tanh = report.sites
    assert (relu.site, relu.op, relu.units) == ("00_1", "relu", 5)
    assert relu.dead_fraction == pytest.approx(12 / 20)
    assert relu.permanently_dead_fraction == pytest.approx(2 / 5)
    assert (tanh.site, tanh.op, tanh.units) == ("01_3", "tanh", 3)
    assert tanh.dead_fraction == pytest.approx(6 / 12)
    assert tanh.permanently_dead_fraction == pytest.approx(1 / 3)
    assert report.mean == pytest.approx((0.6 + 0.5) / 2)
    assert report.overall == pytest.approx(18 / 32)
    assert report.permanently_dead_mean == pytest.approx((2 / 5 + 1 / 3) / 2)
    assert report.permanently_dead_overall == pytest.approx(3 / 8)


@pytest.mark.parametrize("k", [0, 3, 17])
def test_permanently_dead_units_are_exactly_the_blocked_ones(k):
    torch.manual_seed(k)
    layer = nn.Linear(10, 40)
    with torch.no_grad():  # k units can never fire; the others see both signs
        layer.weight[:k] = 0.0
        layer.bias[:k] = -1.0
        layer.bias[k:] = 0.0
    model = nn.Sequential(layer, nn.ReLU())
    x = torch.randn(300, 10)
    site = dead_neuron_rate(model, x, batch_size=64).sites[0]
    assert site.permanently_dead_fraction == k / 40
    assert site.dead_fraction == pytest.approx(float((model(x) == 0).float().mean()))


class _Reused(nn.Module):
    """One ReLU module called twice: two sites."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 2)
        self.fc2 = nn.Linear(2, 4)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.fc1.weight.copy_(torch.eye(2))
            self.fc1.bias.zero_()
            self.fc2.bias.fill_(-100.0)  # the second call is dead for every input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc2(self.act(self.fc1(x))))


def test_a_reused_module_is_two_sites_with_their_own_rates():
    model = _Reused()
    report = dead_neuron_rate(model, X, batch_size=3)
    assert [s.site for s in report.sites] == ["00_act", "01_act#1"]
    first, second = report.sites
    assert (first.units, second.units) == (2, 4)
    assert first.dead_fraction == pytest.approx(4 / 8)  # relu(x): x <= 0 in 4 of 8 entries
    assert first.permanently_dead_fraction == 0.0
    assert second.dead_fraction == 1.0 and second.permanently_dead_fraction == 1.0


def test_rewritten_models_keep_their_site_names_and_rates():
    # set_activations gives the second call its own module under another attribute name
    model = _Reused()
    before = dead_neuron_rate(model, X)
    rewritten = set_activations(_Reused(), "relu")
    assert isinstance(rewritten, torch.fx.GraphModule)
    after = dead_neuron_rate(rewritten, X)
    assert after.to_dict() == before.to_dict()


def test_searchable_activation_sites_are_measured_once():
    model = nn.Sequential(nn.Linear(2, 3), SearchableActivation("relu", alpha=0.0))
    report = dead_neuron_rate(model, X)
    assert len(report.sites) == 1  # the ReLU inside the SearchableActivation is not a site
    assert report.sites[0].dead_fraction == 1.0  # alpha = 0 zeroes every output


def _conv_model() -> nn.Sequential:
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([-1.0, 0.0]))
    return nn.Sequential(conv, nn.ReLU())  # channel 0 dead everywhere, channel 1 = relu(x)


def test_conv_units_are_elements_by_default_and_channels_on_request():
    x = torch.randn(6, 1, 3, 3)
    x[0] = -x[0].abs() - 0.1  # sample 0: every position of channel 1 is dead
    model = _conv_model()
    element = dead_neuron_rate(model, x).sites[0]
    assert element.units == 2 * 3 * 3
    assert element.dead_fraction == pytest.approx(float((model(x) == 0).float().mean()))
    assert element.permanently_dead_fraction == pytest.approx(
        float((model(x) == 0).all(dim=0).float().mean())
    )
    channel = dead_neuron_rate(model, x, unit="channel").sites[0]
    assert channel.units == 2
    assert channel.dead_fraction == pytest.approx((6 + 1) / 12)
    assert channel.permanently_dead_fraction == 0.5


def test_eval_mode_is_used_and_each_modules_mode_restored():
    model = nn.Sequential(nn.Linear(2, 64), nn.Dropout(0.99), nn.ReLU())
    model.train()
    model[0].eval()  # mixed modes must come back as they were
    report = dead_neuron_rate(model, X)
    expected = (model[2](model[0](X)) == 0).float().mean()  # dropout is off in eval mode
    assert report.sites[0].dead_fraction == pytest.approx(float(expected))
    assert model.training and model[1].training and not model[0].training


def test_hooks_are_removed_and_mode_restored_on_error():
    class Fails(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.act(self.fc(x))
            if out.shape[0] == 1:  # fails on the trailing batch, after a good one
                raise RuntimeError("boom")
            return out

    model = Fails(act=nn.ReLU()).train()
    with pytest.raises(RuntimeError, match="boom"):
        dead_neuron_rate(model, X[:3], batch_size=2)
    assert model.training and model.act.training
    assert not model.act._forward_hooks


def test_untraceable_models_are_discovered_at_run_time():
    class Branchy(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > -1e9:  # data-dependent control flow: torch.fx cannot trace this
                x = self.fc(x)
            return self.act(x)

    model = Branchy(2, 5, act=nn.ReLU())
    with pytest.raises(ValueError, match="could not trace"):
        activation_sites(model)
    site = dead_neuron_rate(model, X).sites[0]
    assert site.site == "00_act"
    assert site.dead_fraction == pytest.approx(float((model(X) == 0).float().mean()))


def test_activations_skipped_by_control_flow_are_refused():
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(x) if x.sum() > 0 else x  # not traceable, found at run time

    x = torch.cat([torch.ones(2, 3), -torch.ones(2, 3)])
    with pytest.raises(ValueError, match="ran 0 time"):
        dead_neuron_rate(Skips(), x, batch_size=2)


def test_functional_activations_are_refused_with_the_fix():
    class Functional(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.relu(self.fc(x))

    with pytest.raises(ValueError, match=r"'00_relu' is a functional call; replace .*nn\.ReLU"):
        dead_neuron_rate(Functional(), X)


@pytest.mark.parametrize(
    ("inputs", "kwargs", "match"),
    [
        (X.to(torch.uint8), {}, "normalised float"),
        (X[:0], {}, "non-empty"),
        (X, {"unit": "neuron"}, "unknown unit 'neuron'; valid units: element, channel"),
        (X, {"batch_size": 0}, "batch_size"),
    ],
)
def test_dead_neuron_rate_rejects_bad_input(inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dead_neuron_rate(_hand_built(), inputs, **kwargs)


def test_model_without_activations_is_refused():
    with pytest.raises(ValueError, match="no activation sites"):
        dead_neuron_rate(nn.Linear(2, 2), X)


def test_report_round_trips_through_json():
    report = dead_neuron_rate(_hand_built(), X)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data["sites"]) == ["00_1", "01_3"]
    assert data["sites"]["00_1"]["permanently_dead_fraction"] == pytest.approx(0.4)
    assert DNRReport.from_dict(data) == report
    text = str(report)
    assert "00_1" in text and "60.00%" in text


def test_tracker_records_one_report_per_epoch():
    model = _hand_built()
    tracker = DNRTracker(model, X)
    for epoch in (0, 1, 2):
        if epoch == 2:
            with torch.no_grad():
                model[0].bias.fill_(-5.0)  # "training" kills every ReLU unit
        tracker(epoch, {"train_loss": 0.0})
    assert [epoch for epoch, _ in tracker.history] == [0, 1, 2]
    frame = tracker.to_dataframe()
    assert list(frame.columns) == [
        "epoch",
        "site",
        "op",
        "units",
        "dead_fraction",
        "permanently_dead_fraction",
    ]
    assert len(frame) == 3 * 2
    relu = frame[frame.site == "00_1"].set_index("epoch")
    assert relu.loc[1, "dead_fraction"] == pytest.approx(0.6)
    assert relu.loc[2, "dead_fraction"] == 1.0


def test_tracker_fails_fast_and_has_an_empty_frame():
    with pytest.raises(ValueError, match="normalised float"):
        DNRTracker(_hand_built(), X.long())
    assert DNRTracker(_hand_built(), X).to_dataframe().empty


def test_tracker_during_fit_with_probe_inputs():
    data = pytest.importorskip("safs_smac.data")
    training = pytest.importorskip("safs_smac.training")
    models = pytest.importorskip("safs_smac.models")
    dataset = data.load_dataset("synthetic", n_train=64, n_val=32, n_test=32, size=28)
    model = models.create_model("lenet5", num_classes=dataset.num_classes)
    probe = probe_inputs(dataset, n=16)
    tracker = DNRTracker(model, probe)
    recipe = training.Recipe(epochs=2, batch_size=32, optimizer="adam", lr=1e-3)
    training.fit(model, dataset, recipe, device="cpu", on_epoch_end=tracker)
    assert [epoch for epoch, _ in tracker.history] == [1, 2]
    sites = [s.name for s in activation_sites(model)]
    assert [s.site for s in tracker.history[-1][1].sites] == sites
    assert all(0.0 <= s.dead_fraction <= 1.0 for _, r in tracker.history for s in r.sites)


def test_probe_inputs_are_normalised_like_training_and_reproducible():
    data = pytest.importorskip("safs_smac.data")
    dataset = data.load_dataset("synthetic", n_train=32, n_val=16, n_test=8, channels=3, size=8)
    probe = probe_inputs(dataset, n=10, seed=1)
    assert probe.shape == (10, 3, 8, 8) and probe.dtype == torch.float32
    assert torch.equal(probe, probe_inputs(dataset, n=10, seed=1))
    whole = probe_inputs(dataset, split="test", n=None)
    mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
    std = torch.tensor(dataset.std).view(1, -1, 1, 1)
    assert torch.allclose(whole, (dataset.test.x.float() / 255 - mean) / std)
    assert torch.equal(probe_inputs(dataset, split="test", n=100), whole)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        probe_inputs(dataset, split="dev")
