"""Tests for safs_smac.models: registry, zoo architectures, traceability, activation sites."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.fx
from torch import nn

from safs_smac import models
from safs_smac.activations import activation_module_for
from safs_smac.models import ModelInfo, create_model, list_models, model_info, register_model

ZOO = ["efficientnet_b0", "lenet5", "mlp", "resnet18", "vgg16"]
# (model, input size) pairs that must build and run
SHAPES = [
    ("lenet5", 28),
    ("mlp", 28),
    ("vgg16", 32),
    ("vgg16", 16),
    ("resnet18", 32),
    ("resnet18", 16),
    ("efficientnet_b0", 32),
    ("efficientnet_b0", 16),
]
# activation call sites per model: lenet 4; vgg 13 convs; resnet stem + 8 blocks x 2;
# efficientnet stem + 16 blocks x (expand, depthwise, SE) - 1 (first block has no expand) + head
EXPECTED_SITES = {"lenet5": 4, "mlp": 2, "vgg16": 13, "resnet18": 17, "efficientnet_b0": 49}

ACTIVATION_TYPES = (nn.ReLU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.ELU)

# Registration facts of the tiny test models (4x4 single-channel inputs, the default recipe).
TINY_FACTS = {"default_activation": "relu", "in_channels": 1, "input_size": 4, "recipe": {}}


def activation_calls(model: nn.Module) -> list[str]:
    """Targets of traced activation-module calls, in forward order, without excluded gates."""
    graph = torch.fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    return [
        node.target
        for node in graph.nodes
        if node.op == "call_module"
        and isinstance(modules[node.target], ACTIVATION_TYPES)
        and not getattr(modules[node.target], "safs_exclude", False)
    ]


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, int], nn.Module]:
    """Each (model, size) built once in eval mode; the big ones take ~0.2 s each."""
    out = {}
    for name, size in SHAPES:
        torch.manual_seed(0)
        out[name, size] = create_model(name, input_size=size, num_classes=7).eval()
    return out


# ------------------------------------------------------------------ registry


def test_list_models():
    assert list_models() == ZOO


@pytest.mark.parametrize("name, size", SHAPES)
def test_forward_shape_and_fx_trace(built, name, size):
    model = built[name, size]
    info = model_info(name)
    x = torch.randn(2, info.in_channels, size, size)
    with torch.no_grad():
        y = model(x)
        traced = torch.fx.symbolic_trace(model)
        assert torch.equal(traced(x), y)
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()
    assert model.default_activation == info.default_activation


@pytest.mark.parametrize("name", ZOO)
def test_distinct_activation_module_per_site(built, name):
    size = model_info(name).input_size if name != "efficientnet_b0" else 16
    model = built[name, size]
    calls = activation_calls(model)
    assert len(calls) == EXPECTED_SITES[name]
    assert len(set(calls)) == len(calls), "an activation module is called twice"
    # and no activation module sits unused
    owned = [
        n
        for n, m in model.named_modules()
        if isinstance(m, ACTIVATION_TYPES) and not getattr(m, "safs_exclude", False)
    ]
    assert sorted(owned) == sorted(calls)


def test_site_count_matches_sites_module(built):
    sites = pytest.importorskip("safs_smac.sites")
    for (name, _), model in built.items():
        found = sites.activation_sites(model)
        assert len(found) == EXPECTED_SITES[name], name
        assert {s.op for s in found} == {model.default_activation}, name


def test_model_info_defaults_and_recipes():
    info = model_info("lenet5")
    assert isinstance(info, ModelInfo)
    assert (info.in_channels, info.input_size, info.num_classes) == (1, 28, 10)
    assert info.recipe == {
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 5e-4,
        "scheduler": "constant",
    }
    assert model_info("vgg16").recipe["lr"] == 0.05
    assert model_info("resnet18").recipe == {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "cosine",
    }
    assert model_info("efficientnet_b0").recipe["weight_decay"] == 5e-5
    assert model_info("efficientnet_b0").default_activation == "swish"
    assert model_info("mlp").recipe["scheduler"] == "constant"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.lr = 1.0
    info.recipe["lr"] = 99.0  # a copy: the registry is unaffected
    assert model_info("lenet5").recipe["lr"] == 1e-3


def test_names_are_case_and_dash_insensitive():
    assert model_info("EfficientNet-B0").name == "efficientnet_b0"
    assert isinstance(create_model("LeNet5"), models.LeNet5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet50'; valid models: efficientnet_b0"):
        create_model("resnet50")
    with pytest.raises(ValueError, match="lenet5, mlp, resnet18, vgg16"):
        model_info("alexnet")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes .* positive integer"),
        ({"in_channels": -1}, "in_channels .* positive integer"),
        ({"input_size": 2.5}, "input_size .* positive integer"),
        ({"num_classes": True}, "num_classes .* positive integer"),
        ({"input_size": 8}, r"input_size 8 is too small .* input_size >= 16"),
        ({"activation": "reluu"}, "reluu"),
        ({"widht": 2}, r"unknown option\(s\) 'widht' for model 'lenet5'; valid options: none"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("lenet5", **kwargs)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match="valid options: dropout, hidden"):
        create_model("mlp", hiden=(10,))
    with pytest.raises(ValueError, match="hidden must be a sequence of positive integers"):
        create_model("mlp", hidden=(10, 0))
    with pytest.raises(ValueError, match="dropout"):
        create_model("vgg16", dropout=1.0)


def test_register_model_adds_a_model(monkeypatch):
    monkeypatch.setattr(models.registry, "_REGISTRY", models.registry._REGISTRY.copy())

    @register_model(
        "tiny_mlp",
        default_activation="silu",
        in_channels=1,
        input_size=4,
        num_classes=3,
        recipe={"optimizer": "sgd", "lr": 0.1},
        description="test model",
    )
    def tiny_mlp(*, num_classes, in_channels, input_size, activation, width=5):
        return models.MLP(in_channels * input_size**2, (width,), num_classes, activation=activation)

    assert "tiny_mlp" in list_models()
    info = model_info("tiny_mlp")
    assert info.default_activation == "swish"  # alias resolved to the canonical name
    model = create_model("tiny_mlp", width=6)
    assert model.default_activation == "swish"
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)
    assert model.fc1.out_features == 6
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_mlp", **TINY_FACTS, num_classes=3)(tiny_mlp)


def test_other_activation_is_used_at_every_site():
    model = create_model("resnet18", activation="gelu", input_size=16).eval()
    assert model.default_activation == "gelu"
    gelu_type = type(activation_module_for("gelu"))
    assert sum(isinstance(m, gelu_type) for m in model.modules()) == 17
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


# ------------------------------------------------------------------ architectures


def test_lenet5_matches_reference_layers():
    model = create_model("lenet5")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 6, (5, 5), (0, 0)),
        (6, 16, (5, 5), (0, 0)),
    ]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (16 * 4 * 4, 120),
        (120, 84),
        (84, 10),
    ]
    # flatten size follows input_size: 32 -> 14 -> 5
    assert create_model("lenet5", input_size=32, in_channels=3).fc1.in_features == 16 * 5 * 5
    assert create_model("lenet5", input_size=16).fc1.in_features == 16


def test_vgg16_is_the_real_vgg16():
    model = create_model("vgg16")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    # at 16x16 the fifth pool would go below 1x1 and is left out
    small = create_model("vgg16", input_size=16)
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.modules()) == 4
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(512, 10)]


def test_vgg16_convs_use_kaiming_fan_out_init():
    torch.manual_seed(0)
    conv = create_model("vgg16").features[-4]
    assert isinstance(conv, nn.Conv2d)
    expected = (2.0 / (512 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)


def test_resnet18_blocks_are_standard(built):
    model = built["resnet18", 32]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    blocks = [m for m in model.modules() if isinstance(m, models.BasicBlock)]
    assert len(blocks) == 8
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(b.act1 is not b.act2 for b in blocks)
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert len(projections) == 3  # first block of stages 2-4
    # the second activation takes the residual sum
    graph = torch.fx.symbolic_trace(model).graph
    for node in graph.nodes:
        if node.op == "call_module" and node.target.endswith(".act2"):
            (arg,) = node.args
            assert arg.op == "call_function" and "add" in str(arg.target), node.target


def test_efficientnet_b0_structure(built):
    model = built["efficientnet_b0", 32]
    blocks = [m for m in model.modules() if isinstance(m, models.MBConv)]
    assert len(blocks) == 16
    assert [b.project[0].out_channels for b in blocks] == (
        [16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320]
    )
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.02e6, rel=0.01)
    gates = [m for m in model.modules() if isinstance(m, nn.Sigmoid)]
    assert len(gates) == 16 and all(g.safs_exclude for g in gates)
    acts = [m for m in model.modules() if isinstance(m, ACTIVATION_TYPES) and m not in gates]
    assert len(acts) == 49 and all(isinstance(m, nn.SiLU) for m in acts)
    assert model.stem.conv.stride == (1, 1)  # small inputs keep their resolution in the stem
    assert create_model("efficientnet_b0", input_size=224).stem.conv.stride == (2, 2)


def test_efficientnet_drop_path_is_traceable_and_off_in_eval():
    model = create_model("efficientnet_b0", num_classes=5, drop_path_rate=0.2).eval()
    assert any(isinstance(m, models.DropPath) for m in model.modules())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))
    with pytest.raises(ValueError, match="drop_path_rate"):
        create_model("efficientnet_b0", drop_path_rate=1.0)


def test_mlp_widths_are_configurable():
    model = create_model("mlp", in_channels=3, input_size=32, hidden=(40, 10, 40), dropout=0.1)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (3072, 40),
        (40, 10),
        (10, 40),
        (40, 10),
    ]
    assert len(activation_calls(model)) == 3
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    default = create_model("mlp")
    assert [m.out_features for m in default.modules() if isinstance(m, nn.Linear)] == [300, 100, 10]


# ------------------------------------------------------------------ per-model metadata


def test_each_zoo_model_carries_its_dense_epochs_and_the_zoo_lists_every_model():
    # The CPU-sized dense-training lengths the zoo has always used (they key cached checkpoints).
    expected = {"lenet5": 30, "mlp": 30, "vgg16": 60, "resnet18": 60, "efficientnet_b0": 60}
    assert {name: model_info(name).dense_epochs for name in ZOO} == expected
    assert sorted(models.ZOO_MODELS) == ZOO


def test_recipe_defaults_are_the_trainers_defaults():
    from safs_smac.training import Recipe

    recipe = Recipe()
    assert {key: getattr(recipe, key) for key in models.RECIPE_DEFAULTS} == dict(
        models.RECIPE_DEFAULTS
    )


def test_a_model_is_found_by_name_or_by_its_constructor(monkeypatch):
    monkeypatch.setattr(models.registry, "_REGISTRY", models.registry._REGISTRY.copy())

    @register_model(**TINY_FACTS, num_classes=2, dense_epochs=3)
    def Tiny_Net(*, num_classes, in_channels, input_size, activation):
        return models.MLP(in_channels * input_size**2, (3,), num_classes, activation=activation)

    assert "tiny_net" in list_models()  # the function's name, normalised
    assert model_info(Tiny_Net) == model_info("tiny-net")
    assert model_info(Tiny_Net).dense_epochs == 3
    assert create_model(Tiny_Net)(torch.randn(1, 1, 4, 4)).shape == (1, 2)
    with pytest.raises(ValueError, match="not a registered model constructor"):
        create_model(models.MLP)
    with pytest.raises(ValueError, match="dense_epochs for model 'bad' must be an integer >= 0"):
        register_model("bad", **TINY_FACTS, num_classes=2, dense_epochs=-1)(Tiny_Net)


def test_problem_reads_dense_epochs_from_the_registration(make_problem, monkeypatch):
    monkeypatch.setattr(models.registry, "_REGISTRY", models.registry._REGISTRY.copy())
    register_model(
        "lenet5_short",
        default_activation="relu",
        in_channels=1,
        input_size=28,
        num_classes=10,
        recipe={},
        dense_epochs=2,
    )(models.registry._REGISTRY.get("lenet5").constructor)
    problem = make_problem(model="lenet5_short", dense_epochs=None)
    assert problem.dense_epochs == 2
