"""Tests for activation site discovery and replacement."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from tiny_nets import TinyNet
from torch import fx, nn
from torch.nn.utils import prune

from safs_smac import models
from safs_smac.activations import SearchableActivation
from safs_smac.sites import (
    FunctionalActivation,
    activation_sites,
    searchable_activations,
    set_activations,
)


def _names(model: nn.Module, **kwargs) -> list[str]:
    return [site.name for site in activation_sites(model, **kwargs)]


class ConvNet(nn.Module):
    """Plain CNN: four distinct activation modules, one of them in place."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 6, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc1 = nn.Linear(6, 5)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(5, 3)
        self.out_act = nn.Tanh()
        self.default_activation = "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.fc2(self.act(self.fc1(self.features(x)))))


class ReusedBlock(nn.Module):
    """torchvision-style residual block: one ReLU instance called twice."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv2(out) + x
        return self.relu(out)


class ReusedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = ReusedBlock()
        self.head = nn.Linear(4, 2)
        self.default_activation = "relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean((2, 3)))


class FunctionalBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(F.relu(x)))


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.block = FunctionalBlock()
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.fc(x))
        return self.out(torch.tanh(h)) + F.leaky_relu(x[:, :2], 0.3)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, 2, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(2, channels, 1)
        self.gate = nn.Sigmoid()
        self.gate.safs_exclude = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SiLU()
        self.se = SqueezeExcite(4)
        self.excluded = nn.Sequential(nn.ReLU(), nn.Tanh())
        self.excluded.safs_exclude = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.excluded(self.se(self.act(self.conv(x))))


class Untraceable(nn.Module):
    """Data-dependent control flow defeats fx; activations are distinct modules."""

    def __init__(self, functional: bool = False, reuse: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(4, 4)
        self.act2 = self.act1 if reuse else nn.ELU()
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn(self.fc1(x)))
        if h.sum() > -1e9:  # always true, but fx cannot know
            h = self.act2(self.fc2(h))
        return F.relu(h) if self.functional else h


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_conv_model_sites_in_forward_order():
    sites = activation_sites(ConvNet())
    assert [s.name for s in sites] == [
        "00_features.2",
        "01_features.4",
        "02_act",
        "03_out_act",
    ]
    assert [s.op for s in sites] == ["relu", "gelu", "swish", "tanh"]
    assert {s.kind for s in sites} == {"module"}
    assert [s.index for s in sites] == [0, 1, 2, 3]


def test_name_width_grows_with_site_count():
    model = nn.Sequential(*[nn.ReLU() for _ in range(101)])
    names = _names(model)
    assert names[0] == "000_0" and names[-1] == "100_100"
    assert names == sorted(names)


def test_in_place_swap_keeps_model_and_computes_alpha_op_beta():
    model = ConvNet().eval()
    x = torch.randn(2, 3, 6, 6)
    features = model.features(x.clone())
    h = model.fc1(features)
    result = set_activations(
        model,
        {"02_act": "tanhsoft1", "out_act": "srs"},
        alpha={"02_act": 2.0},
        beta={"03_out_act": 0.5},
        learnable=True,
    )
    assert result is model and type(model) is ConvNet
    assert isinstance(model.act, SearchableActivation) and model.act.op_name == "tanhsoft1"
    assert isinstance(model.features[2], nn.ReLU)  # sites not named stay as they were
    expected = 2.0 * (torch.tanh(0.87 * h) * F.softplus(h))
    z = model.fc2(expected)
    expected = 0.5 * z / (0.5 * z / 2 + torch.exp(-0.5 * z / 3))
    torch.testing.assert_close(model(x), expected)
    assert model.act.alpha.requires_grad and model.out_act.beta.item() == 0.5
    assert [s.op for s in activation_sites(model)] == ["relu", "gelu", "tanhsoft1", "srs"]


def test_string_operator_applies_to_every_site_and_inplace_is_replaced_out_of_place():
    model = ConvNet().eval()
    x = torch.randn(2, 3, 6, 6)
    set_activations(model, "relu")
    assert all(m.op_name == "relu" for m in searchable_activations(model).values())
    assert list(searchable_activations(model)) == _names(model)
    pre = model.features[1](model.features[0](x))
    before = pre.clone()
    model.features[2](pre)
    torch.testing.assert_close(pre, before)  # the replacement no longer modifies its input


def test_reused_module_gives_two_independent_sites():
    model = ReusedNet().eval()
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 5, 5)
    sites = activation_sites(model)
    assert [s.name for s in sites] == ["00_block.relu", "01_block.relu#1"]
    assert all(s.kind == "module" for s in sites)

    result = set_activations(model, {"01_block.relu#1": "tanh"})
    assert isinstance(result, fx.GraphModule)
    block = model.block
    stem = model.stem(x)
    expected = torch.tanh(block.conv2(torch.relu(block.conv1(stem))) + stem)
    expected = model.head(expected.mean((2, 3)))
    torch.testing.assert_close(result(x), expected)
    assert [s.op for s in activation_sites(result)] == ["relu", "tanh"]
    # The original model is not modified: it still reuses its ReLU.
    assert model.block.relu is not None and isinstance(model.block.relu, nn.ReLU)
    torch.testing.assert_close(model(x), original(x))

    both = set_activations(model, {"block.relu": "sin", "block.relu#1": "cos"}, alpha=2.0)
    mods = searchable_activations(both)
    assert [m.op_name for m in mods.values()] == ["sin", "cos"]
    first, second = mods.values()
    assert first is not second
    expected = 2.0 * torch.cos(block.conv2(2.0 * torch.sin(block.conv1(stem))) + stem)
    torch.testing.assert_close(both(x), model.head(expected.mean((2, 3))))


def test_names_are_stable_after_replacement():
    for factory in (ReusedNet, FunctionalNet, ConvNet):
        model = factory()
        names = _names(model)
        replaced = set_activations(model, {names[-1]: "elish"})
        assert _names(replaced) == names
        everything = set_activations(replaced, "hard_elish", learnable=True)
        assert _names(everything) == names
        # A rewritten model has one module per site, so a further call swaps in place.
        assert set_activations(everything, "swish") is everything
        assert list(searchable_activations(everything)) == names


def test_functional_activations_are_sites():
    model = FunctionalNet().eval()
    sites = activation_sites(model)
    assert [s.name for s in sites] == [
        "00_block.relu",
        "01_block.relu#1",
        "02_tanh",
        "03_leaky_relu",
    ]
    assert [s.kind for s in sites] == ["functional"] * 4
    assert [s.op for s in sites] == ["relu", "relu", "tanh", "leaky_relu"]

    x = torch.randn(3, 4)
    reference = model(x)
    result = set_activations(model, {"02_tanh": "sigmoid"})
    assert isinstance(result, fx.GraphModule)
    h = model.block(model.fc(x))
    torch.testing.assert_close(result(x), model.out(torch.sigmoid(h)) + F.leaky_relu(x[:, :2], 0.3))
    # Unchanged functional calls keep their exact arguments (leaky_relu's slope of 0.3).
    assert isinstance(result.leaky_relu, FunctionalActivation)
    assert [s.op for s in activation_sites(result)] == ["relu", "relu", "sigmoid", "leaky_relu"]
    identity = set_activations(model, {"02_tanh": "tanh"})
    torch.testing.assert_close(identity(x), reference)


def test_tensor_methods_and_inplace_functionals():
    class Methods(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            F.relu_(h)  # result ignored: relies on the in-place side effect
            return h.sigmoid() + h

    model = Methods(3)
    assert [(s.name, s.op) for s in activation_sites(model)] == [
        ("00_relu", "relu"),
        ("01_sigmoid", "sigmoid"),
    ]
    x = torch.randn(4, 3)
    h = model.fc(x)
    result = set_activations(model, {"00_relu": "tanh"})
    torch.testing.assert_close(result(x), torch.sigmoid(torch.tanh(h)) + torch.tanh(h))
    unchanged = set_activations(model, {"01_sigmoid": "sigmoid"})
    torch.testing.assert_close(unchanged(x), model(x))


def test_inplace_module_whose_input_is_read_again():
    class SideEffect(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            self.act(h)
            return h * 2

    model = SideEffect(3, act=nn.ReLU(inplace=True))
    x = torch.randn(5, 3)
    result = set_activations(model, "swish")
    assert isinstance(result, fx.GraphModule)  # an in-place swap would lose the side effect
    torch.testing.assert_close(result(x), 2 * F.silu(model.fc(x)))


def test_excluded_modules_are_not_sites():
    model = SENet()
    sites = activation_sites(model)
    assert [s.name for s in sites] == ["00_act", "01_se.act"]
    result = set_activations(model, "tanh")
    assert result is model
    assert isinstance(model.se.gate, nn.Sigmoid)
    assert isinstance(model.excluded[0], nn.ReLU)


def test_unknown_site_and_operator_raise_without_modifying():
    model = ConvNet()
    with pytest.raises(ValueError, match="unknown activation site 'nope'") as info:
        set_activations(model, {"nope": "relu"})
    assert "00_features.2, 01_features.4, 02_act, 03_out_act" in str(info.value)
    with pytest.raises(ValueError, match="unknown activation site 'x' in alpha"):
        set_activations(model, "relu", alpha={"x": 2.0})
    with pytest.raises(ValueError, match="unknown operator 'reluu'; valid operators"):
        set_activations(model, {"02_act": "swish", "03_out_act": "reluu"})
    assert not searchable_activations(model)
    with pytest.raises(ValueError, match="no activation sites"):
        set_activations(nn.Linear(2, 2), "relu")


def test_alpha_beta_mapping_alone_wraps_current_operator():
    model = ConvNet().eval()
    result = set_activations(model, {}, alpha={"02_act": 3.0})
    assert result is model
    assert model.act.op_name == "swish" and model.act.alpha.item() == 3.0
    assert list(searchable_activations(model)) == ["02_act"]


def test_per_channel_scales_from_graph_and_from_example_input():
    model = ConvNet()
    set_activations(model, {"00_features.2": "relu", "02_act": "swish"}, per_channel=True)
    assert model.features[2].alpha.shape == (4,)  # from BatchNorm2d(4)
    assert model.act.alpha.shape == (5,)  # from Linear(6, 5)

    functional = FunctionalNet()
    with pytest.raises(ValueError, match="example_input"):
        set_activations(functional, {"03_leaky_relu": "relu"}, per_channel=True)
    x = torch.randn(3, 4)
    result = set_activations(functional, "relu", per_channel=True, learnable=True, example_input=x)
    channels = [m.num_channels for m in searchable_activations(result).values()]
    assert channels == [6, 6, 6, 2]
    result(x).sum().backward()
    assert all(
        m.alpha.grad.shape == (m.num_channels,)
        for m in result.modules()
        if isinstance(m, SearchableActivation)
    )


def test_graph_module_shares_layers_and_keeps_attributes():
    model = ReusedNet()
    prune.l1_unstructured(model.block.conv1, "weight", amount=0.5)
    result = set_activations(model, "gelu", learnable=True)
    assert result.default_activation == "relu"
    assert result.block.conv1 is model.block.conv1
    conv_keys = {k for k in model.state_dict() if "conv" in k or "stem" in k or "head" in k}
    assert conv_keys <= set(result.state_dict())
    x = torch.randn(2, 3, 5, 5)
    result(x).sum().backward()
    assert all(m.alpha.grad is not None for m in searchable_activations(result).values())
    assert model.block.conv1.weight_orig.grad is not None  # pruning hooks still apply
    assert (model.block.conv1.weight == 0).float().mean() == 0.5
    result.eval()
    assert not result.block.relu.training


def test_untraceable_model_needs_example_input():
    model = Untraceable()
    with pytest.raises(ValueError, match="could not trace Untraceable") as info:
        activation_sites(model)
    assert "example_input" in str(info.value)
    x = torch.randn(3, 4)
    model.train()
    running = model.bn.running_mean.clone()
    sites = activation_sites(model, example_input=x)
    assert [(s.name, s.op) for s in sites] == [("00_act1", "relu"), ("01_act2", "elu")]
    assert model.training and torch.equal(model.bn.running_mean, running)  # no side effects
    result = set_activations(model, {"01_act2": "tanh"}, example_input=x)
    assert result is model and model.act2.op_name == "tanh"
    assert _names(model, example_input=x) == ["00_act1", "01_act2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"functional": True}, "calls the activation function relu in module '<root>'"),
        ({"reuse": True}, "calls the activation module 'act1' 2 times"),
    ],
)
def test_untraceable_model_with_functional_or_reused_activation_is_rejected(kwargs, message):
    model = Untraceable(**kwargs)
    with pytest.raises(ValueError, match=message) as info:
        set_activations(model, "relu", example_input=torch.randn(3, 4))
    assert "nn.ReLU()" in str(info.value)


def test_untraceable_functional_inside_submodule_names_the_module():
    class Inner(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(x) if x.sum() > -1e9 else x

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), Inner())
    with pytest.raises(ValueError, match="function tanh in module '2'"):
        activation_sites(model, example_input=torch.randn(2, 2))


def test_zoo_models_sites():
    expected_counts = {"lenet5": 4}
    for name in models.list_models():
        info = models.model_info(name)
        model = models.create_model(name, input_size=16 if name != "lenet5" else 28)
        names = _names(model)
        assert names, name
        assert len(names) == expected_counts.get(name, len(names))
        assert all(s.kind == "module" for s in activation_sites(model))
        result = set_activations(model, "symlog")
        assert result is model, name  # zoo models use one distinct module per site
        assert _names(model) == names
        size = 28 if name == "lenet5" else 16
        out = model.eval()(torch.randn(2, info.in_channels, size, size))
        assert out.shape == (2, info.num_classes)


def test_rewritten_model_copies_pickles_and_reloads():
    x = torch.randn(2, 4)
    model = FunctionalNet()
    operators = {"00_block.relu": "srs", "02_tanh": "acon_c"}
    result = set_activations(model, operators, alpha=1.5, learnable=True)
    names = _names(result)
    assert _names(copy.deepcopy(result)) == names
    buffer = io.BytesIO()
    torch.save(result, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert _names(loaded) == names
    torch.testing.assert_close(loaded(x), result(x))
    # A fresh rewrite of the same model has the same state-dict layout (checkpoint reload).
    fresh = set_activations(FunctionalNet(), operators, learnable=True)
    fresh.load_state_dict(result.state_dict())
    torch.testing.assert_close(fresh(x), result(x))


def _calling(fn) -> nn.Module:
    class Net(nn.Module):
        def forward(self, x):
            return fn(x)

    return Net()


def test_every_functional_spelling_of_the_torch_table_is_a_site():
    # sites reads what PyTorch calls an activation from activations.TORCH_ACTIVATIONS: each
    # row's first function is found, named after the function and reported as the operator.
    from safs_smac.activations import TORCH_ACTIVATIONS

    for row in TORCH_ACTIVATIONS:
        namespace, _, attr = row.functions[0].partition(".")
        (site,) = activation_sites(_calling(getattr({"F": F, "torch": torch}[namespace], attr)))
        assert (site.kind, site.path, site.op) == (
            "functional",
            row.function,
            row.operator or row.function,
        )
