"""Tests for safs_smac.space: the SAFS configuration space, its variants, decoding and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ConfigSpace import Configuration, ConfigurationSpace, Float

from safs_smac import activations
from safs_smac.space import (
    FT_OPTIMIZERS,
    FT_SCHEDULERS,
    STAGES,
    ZOO_MODELS,
    TrialSpec,
    build_space,
    check_config,
    decode_config,
    load_space,
    save_space,
    space_to_text,
    write_zoo_spaces,
    zoo_space,
)

SITES = ["00_conv1", "01_conv2", "02_fc1"]
RECIPE = {
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "cosine",
}
FT_KEYS = {
    "ft:optimizer",
    "ft:lr",
    "ft:momentum",
    "ft:weight_decay",
    "ft:scheduler",
    "ft:label_smoothing",
}
CONFIGSPACES = Path(__file__).resolve().parents[1] / "configspaces"


def space(**kwargs) -> ConfigurationSpace:
    kwargs.setdefault("default_activation", "relu")
    kwargs.setdefault("recipe", RECIPE)
    return build_space(kwargs.pop("sites", SITES), **kwargs)


def keys(prefix: str, sites=SITES) -> set[str]:
    return {f"{prefix}:{site}" for site in sites}


# ------------------------------------------------------------------------------------------
# Keys of every variant
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("joint", keys("act") | keys("alpha") | keys("beta") | FT_KEYS | {"ft:learn_scales"}),
        ("operators", keys("act")),
        ("scales_hpo", keys("alpha") | keys("beta") | FT_KEYS),
    ],
)
def test_each_stage_has_exactly_its_keys(stage, expected):
    cs = space(stage=stage)
    assert set(cs) == expected
    assert cs.name == f"safs_{stage}_layer"


@pytest.mark.parametrize("stage", STAGES)
def test_network_granularity_shares_one_operator_and_scale_pair(stage):
    cs = space(stage=stage, granularity="network")
    site_keys = {k for k in cs if k.split(":")[0] in ("act", "alpha", "beta")}
    expected = {"operators": {"act:all"}, "scales_hpo": {"alpha:all", "beta:all"}}
    assert site_keys == expected.get(stage, {"act:all", "alpha:all", "beta:all"})
    assert cs.name == f"safs_{stage}_network"


@pytest.mark.parametrize("stage", STAGES)
def test_prune_rate_is_searched_only_on_request(stage):
    assert "prune:rate" not in space(stage=stage)
    hp = space(stage=stage, search_rate=(0.9, 0.98))["prune:rate"]
    assert (hp.lower, hp.upper) == (0.9, 0.98)
    assert hp.default_value == 0.98  # default_rate 0.99 clipped into the range
    assert space(search_rate=(0.5, 0.99), default_rate=0.8)["prune:rate"].default_value == 0.8


@pytest.mark.parametrize("bad", [(0.99, 0.9), (0.5, 1.0), (-0.1, 0.5), (0.5,), "high"])
def test_invalid_search_rate_is_rejected(bad):
    with pytest.raises(ValueError, match="search_rate"):
        space(search_rate=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage": "stage1"}, "unknown stage 'stage1'; use one of: joint, operators"),
        ({"granularity": "channel"}, "unknown granularity 'channel'"),
        ({"sites": []}, "no activation sites"),
        ({"sites": ["00_a", "00_a"]}, "duplicate site name"),
        ({"sites": ["9_conv", "10_fc"]}, "do not sort in forward order"),
        ({"sites": "00_a"}, "wrap it in a list"),
        ({"sites": ["all"]}, "reserved"),
        ({"operators": ["relu", "reluu"]}, "reluu"),
        ({"recipe": {"optimizer": "rmsprop"}}, "unknown recipe optimizer 'rmsprop'"),
        ({"recipe": {"scheduler": "warmup"}}, "unknown recipe scheduler 'warmup'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        space(**kwargs)


# ------------------------------------------------------------------------------------------
# Conditions, defaults, order, determinism
# ------------------------------------------------------------------------------------------
def test_momentum_is_active_only_for_sgd():
    cs = space(seed=3)
    assert [str(c) for c in cs.conditions] == ["ft:momentum | ft:optimizer == 'sgd'"]
    configs = cs.sample_configuration(60)
    assert {c["ft:optimizer"] for c in configs} == set(FT_OPTIMIZERS)
    for config in configs:
        assert ("ft:momentum" in config) == (config["ft:optimizer"] == "sgd")


def test_flat_variant_has_no_conditions_and_always_carries_momentum():
    cs = space(flat=True, seed=3)
    assert cs.name == "safs_joint_layer_flat"
    assert not cs.conditions
    assert all("ft:momentum" in config for config in cs.sample_configuration(20))


def test_defaults_reproduce_the_unmodified_network_and_its_recipe():
    default = dict(space(default_activation="swish").get_default_configuration())
    assert {default[k] for k in keys("act")} == {"swish"}
    assert {default[k] for k in keys("alpha") | keys("beta")} == {1.0}
    assert default["ft:optimizer"] == "sgd"
    assert default["ft:lr"] == pytest.approx(0.05)
    assert default["ft:momentum"] == pytest.approx(0.9)
    assert default["ft:weight_decay"] == pytest.approx(5e-4)
    assert default["ft:scheduler"] == "cosine"
    assert default["ft:label_smoothing"] == 0.0
    assert default["ft:learn_scales"] is True


def test_recipe_defaults_are_clipped_and_missing_keys_use_recipe_defaults():
    cs = space(recipe={"optimizer": "Adam", "lr": 1.0, "weight_decay": 0.0, "label_smoothing": 0.5})
    assert cs["ft:optimizer"].default_value == "adam"
    assert cs["ft:lr"].default_value == 0.1  # the top of LR_RANGE
    assert cs["ft:weight_decay"].default_value == 1e-6
    assert cs["ft:label_smoothing"].default_value == 0.2
    assert cs["ft:scheduler"].default_value == "constant"
    assert cs["ft:momentum"].default_value == 0.9


def test_plateau_recipe_keeps_its_scheduler_as_an_extra_choice():
    assert tuple(space()["ft:scheduler"].choices) == FT_SCHEDULERS
    hp = space(recipe={**RECIPE, "scheduler": "plateau"})["ft:scheduler"]
    assert tuple(hp.choices) == (*FT_SCHEDULERS, "plateau")
    assert hp.default_value == "plateau"


def test_operator_choices_default_order_aliases_and_default_activation():
    assert tuple(space()["act:00_conv1"].choices) == activations.SAFS_OPERATORS
    mish = space(default_activation="mish")["act:00_conv1"]
    assert tuple(mish.choices) == (*activations.SAFS_OPERATORS, "mish")
    custom = space(operators=["silu", "swish", "gelu"])["act:00_conv1"]
    assert tuple(custom.choices) == ("swish", "gelu", "relu")


def test_site_keys_follow_forward_order_with_ten_or_more_sites():
    sites = [f"{i:02d}_layer{i}" for i in range(12)]
    cs = space(sites=sites)
    assert [k for k in cs if k.startswith("act:")] == [f"act:{s}" for s in sites]
    assert [k for k in cs if k.startswith("beta:")] == [f"beta:{s}" for s in sites]


def test_space_is_deterministic_and_seedable():
    assert space(seed=1) == space(seed=1)
    first = space(seed=7).sample_configuration(5)
    again = space(seed=7).sample_configuration(5)
    other = space(seed=8).sample_configuration(5)
    assert first == again
    assert first != other


# ------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------
def test_decode_joint_configuration():
    cs = space(search_rate=(0.9, 0.99))
    values = dict(cs.get_default_configuration())
    values.update({"act:01_conv2": "gelu", "alpha:02_fc1": 2.0, "beta:00_conv1": 0.5})
    values.update({"ft:optimizer": "adamw", "ft:learn_scales": False, "prune:rate": 0.95})
    values.pop("ft:momentum")
    spec = decode_config(check_config(values, cs), SITES, default_activation="relu")
    assert spec.operators == {"00_conv1": "relu", "01_conv2": "gelu", "02_fc1": "relu"}
    assert spec.alpha == {"00_conv1": 1.0, "01_conv2": 1.0, "02_fc1": 2.0}
    assert spec.beta == {"00_conv1": 0.5, "01_conv2": 1.0, "02_fc1": 1.0}
    assert spec.learn_scales is False
    assert spec.prune_rate == pytest.approx(0.95)
    assert spec.recipe_overrides == {
        "optimizer": "adamw",
        "lr": pytest.approx(0.05),
        "weight_decay": pytest.approx(5e-4),
        "scheduler": "cosine",
        "label_smoothing": 0.0,
    }


def test_decode_operators_stage_freezes_unit_scales_and_keeps_the_recipe():
    config = {"act:00_conv1": "elu", "act:01_conv2": "tanh", "act:02_fc1": "relu"}
    spec = decode_config(config, SITES, default_activation="relu")
    assert spec == TrialSpec(
        operators={"00_conv1": "elu", "01_conv2": "tanh", "02_fc1": "relu"},
        alpha=dict.fromkeys(SITES, 1.0),
        beta=dict.fromkeys(SITES, 1.0),
        learn_scales=False,
        recipe_overrides={},
        prune_rate=None,
    )


def test_decode_scales_hpo_uses_fixed_operators_and_learns_scales():
    cs = space(stage="scales_hpo")
    fixed = {"00_conv1": "silu", "02_fc1": "gelu"}
    spec = decode_config(
        cs.get_default_configuration(), SITES, default_activation="relu", fixed_operators=fixed
    )
    assert spec.operators == {"00_conv1": "swish", "01_conv2": "relu", "02_fc1": "gelu"}
    assert spec.learn_scales is True
    assert spec.recipe_overrides["momentum"] == pytest.approx(0.9)


def test_decode_network_granularity_expands_to_every_site():
    config = {"act:all": "hardswish", "alpha:all": 1.5, "beta:all": 0.8, "act:02_fc1": "tanh"}
    spec = decode_config(config, SITES, default_activation="relu")
    assert spec.operators == {"00_conv1": "hardswish", "01_conv2": "hardswish", "02_fc1": "tanh"}
    assert spec.alpha == dict.fromkeys(SITES, 1.5)
    assert spec.beta == dict.fromkeys(SITES, 0.8)


@pytest.mark.parametrize(("optimizer", "has_momentum"), [("sgd", True), ("adam", False)])
def test_decode_flat_drops_momentum_unless_sgd(optimizer, has_momentum):
    cs = space(flat=True)
    values = {**cs.get_default_configuration(), "ft:optimizer": optimizer, "ft:momentum": 0.5}
    spec = decode_config(check_config(values, cs), SITES, default_activation="relu")
    assert ("momentum" in spec.recipe_overrides) is has_momentum


@pytest.mark.parametrize(
    ("stage", "granularity", "flat"),
    [(s, g, f) for s in STAGES for g in ("layer", "network") for f in (False, True)],
)
def test_every_sampled_configuration_decodes_to_a_full_spec(stage, granularity, flat):
    cs = space(stage=stage, granularity=granularity, flat=flat, search_rate=(0.9, 0.99), seed=5)
    for config in cs.sample_configuration(10):
        spec = decode_config(config, SITES, default_activation="relu")
        assert list(spec.operators) == list(spec.alpha) == list(spec.beta) == SITES
        assert all(type(op) is str for op in spec.operators.values())
        assert type(spec.learn_scales) is bool
        assert spec.learn_scales == (stage != "operators" and config.get("ft:learn_scales", True))
        assert 0.9 <= spec.prune_rate <= 0.99


def test_decode_reads_string_booleans():
    spec = decode_config({"ft:learn_scales": "False"}, SITES, default_activation="relu")
    assert spec.learn_scales is False
    with pytest.raises(ValueError, match="ft:learn_scales must be true or false"):
        decode_config({"ft:learn_scales": "maybe"}, SITES, default_activation="relu")


@pytest.mark.parametrize(
    ("config", "fixed", "match"),
    [
        ({"act:05_conv9": "relu"}, None, r"key\(s\) \['act:05_conv9'\]"),
        ({"lr": 0.1}, None, r"key\(s\) \['lr'\]"),
        ({}, {"07_x": "relu"}, "fixed_operators names unknown site"),
        ({"act:00_conv1": "reluu"}, None, "reluu"),
    ],
)
def test_decode_rejects_keys_and_values_it_does_not_know(config, fixed, match):
    with pytest.raises(ValueError, match=match):
        decode_config(config, SITES, default_activation="relu", fixed_operators=fixed)


# ------------------------------------------------------------------------------------------
# check_config
# ------------------------------------------------------------------------------------------
def test_check_config_accepts_a_member():
    cs = space()
    config = check_config(dict(cs.get_default_configuration()), cs)
    assert isinstance(config, Configuration)
    assert config == cs.get_default_configuration()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ft:lrr": 0.1}, r"unknown key 'ft:lrr' \(did you mean 'ft:lr'\?\)"),
        ({"ft:lr": 3.0}, r"ft:lr=3.0 is outside \[0.001, 0.1\]"),
        ({"alpha:00_conv1": 0.0}, r"alpha:00_conv1=0.0 is outside \[0.2, 5.0\]"),
        ({"act:01_conv2": "reluu"}, "act:01_conv2='reluu' is not one of relu, relu6"),
        ({"act:01_conv2": "silu"}, "use the canonical name 'swish'"),
        ({"ft:learn_scales": "yes"}, "'yes' is not one of True, False"),
        ({"ft:optimizer": "adam"}, "'ft:momentum' is inactive here .*drop that key"),
    ],
)
def test_check_config_names_the_offending_key_and_the_fix(change, match):
    cs = space()
    with pytest.raises(ValueError, match=match) as info:
        check_config({**cs.get_default_configuration(), **change}, cs)
    assert "does not belong to space 'safs_joint_layer'" in str(info.value)


def test_check_config_reports_missing_keys():
    cs = space()
    values = dict(cs.get_default_configuration())
    del values["beta:02_fc1"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['beta:02_fc1'\]"):
        check_config(values, cs)
    values = dict(space(recipe={**RECIPE, "optimizer": "adam"}).get_default_configuration())
    values["ft:optimizer"] = "sgd"
    with pytest.raises(ValueError, match="'ft:momentum' has no value but is required"):
        check_config(values, cs)


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stage": "operators"},
        {"granularity": "network", "flat": True},
        {"search_rate": (0, 0.5)},
    ],
)
def test_save_and_load_round_trip(tmp_path, suffix, kwargs):
    cs = space(**kwargs)
    path = tmp_path / "sub" / f"space{suffix}"
    save_space(cs, path)
    assert load_space(path) == cs
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_space_to_text_is_what_save_space_writes(tmp_path, fmt):
    cs = space(stage="scales_hpo")
    save_space(cs, tmp_path / f"space.{fmt}")
    assert space_to_text(cs, fmt) == (tmp_path / f"space.{fmt}").read_text()


def test_save_space_explicit_format_and_bad_suffix(tmp_path):
    cs = space()
    save_space(cs, tmp_path / "space.txt", format="YAML")
    assert ConfigurationSpace.from_yaml(tmp_path / "space.txt") == cs
    assert load_space(tmp_path / "space.txt", format="yaml") == cs
    with pytest.raises(ValueError, match=r"name it \*.json, \*.yaml or \*.yml"):
        save_space(cs, tmp_path / "space.txt")
    with pytest.raises(ValueError, match="unknown format 'toml'"):
        save_space(cs, tmp_path / "space.json", format="toml")


def test_load_space_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json' not found; regenerate it"):
        load_space(tmp_path / "missing.json")

    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "hyperparameters": [')
    with pytest.raises(ValueError, match=r"broken\.json' is not valid JSON .*regenerate it"):
        load_space(broken)

    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("hyperparameters: [a, b\nname: {")
    with pytest.raises(ValueError, match=r"broken\.yaml' is not valid YAML"):
        load_space(broken_yaml)

    not_a_space = tmp_path / "list.json"
    not_a_space.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="is not a serialised ConfigSpace"):
        load_space(not_a_space)

    bad_hp = tmp_path / "bad_hp.json"
    bad_hp.write_text(json.dumps({"hyperparameters": [{"name": "act:00_a", "type": "quantum"}]}))
    with pytest.raises(ValueError, match=r"bad_hp\.json' holds a malformed configuration space"):
        load_space(bad_hp)

    foreign = tmp_path / "foreign.json"
    ConfigurationSpace({"learning_rate": (1e-4, 1e-1), "depth": (1, 5)}).to_json(foreign)
    with pytest.raises(
        ValueError, match=r"foreign\.json' holds a configuration space without SAFS"
    ):
        load_space(foreign)


def test_load_space_accepts_configspace_native_files(tmp_path):
    cs = space(stage="scales_hpo")
    cs.to_yaml(tmp_path / "native.yaml")
    assert load_space(tmp_path / "native.yaml") == cs
    cs.add(Float("extra", (0.0, 1.0)))  # a space extended by a user still loads
    cs.to_json(tmp_path / "extended.json")
    assert "extra" in load_space(tmp_path / "extended.json")


# ------------------------------------------------------------------------------------------
# Model zoo and the checked-in files
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo() -> dict[tuple[str, str], ConfigurationSpace]:
    """zoo_space for every model and stage, built once (building models is the slow part)."""
    return {
        (model, stage): zoo_space(model, stage=stage) for model in ZOO_MODELS for stage in STAGES
    }


def test_zoo_spaces_have_one_key_triple_per_activation_site(zoo):
    from safs_smac import models

    counts = {model: sum(k.startswith("act:") for k in zoo[model, "joint"]) for model in ZOO_MODELS}
    assert counts["lenet5"] == 4
    assert counts["resnet18"] == 17
    assert counts["vgg16"] >= 13
    for model in ZOO_MODELS:
        cs = zoo[model, "joint"]
        info = models.model_info(model)
        assert cs.name == f"safs_{model}_joint_layer"
        assert cs[next(iter(cs))].default_value == activations.resolve_operator(
            info.default_activation
        )
        assert sum(k.startswith("alpha:") for k in cs) == counts[model]


def test_write_zoo_spaces_names_files_by_model_and_stage(tmp_path):
    written = write_zoo_spaces(tmp_path, models=("lenet5",), stages=("operators",))
    assert written == [tmp_path / "lenet5_operators.json", tmp_path / "lenet5_operators.yaml"]
    assert load_space(written[1]) == zoo_space("lenet5", stage="operators")


def test_checked_in_configspaces_match_code(zoo, tmp_path):
    expected = {f"{m}_{s}.{fmt}" for m, s in zoo for fmt in ("json", "yaml")}
    found = {p.name for p in CONFIGSPACES.iterdir() if p.suffix in (".json", ".yaml")}
    assert found == expected, "regenerate with safs_smac.space.write_zoo_spaces('configspaces')"
    for (model, stage), built in zoo.items():
        for fmt in ("json", "yaml"):
            name = f"{model}_{stage}.{fmt}"
            checked_in = load_space(CONFIGSPACES / name)
            assert checked_in == built, f"configspaces/{name} is stale; regenerate it"
            copy = tmp_path / name
            save_space(checked_in, copy)
            assert load_space(copy) == checked_in
