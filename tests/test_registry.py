"""safs_smac.registry: the one lookup-by-name mechanism of operators, models, data sets and
optimizers."""

from __future__ import annotations

import pytest

from safs_smac.activations import resolve_operator
from safs_smac.data import load_dataset
from safs_smac.models import create_model
from safs_smac.registry import Registry


def test_names_aliases_separators_and_duplicates() -> None:
    registry: Registry[int] = Registry("widget")
    assert registry.add("Big-One", 1, aliases=("large",)) == "big_one"
    assert registry.resolve(" BIG_one ") == "big_one" == registry.resolve("LARGE")
    assert registry.get("big-one") == 1 and "big one" not in registry and "big-one" in registry
    with pytest.raises(ValueError, match="widget name 'large' is already registered"):
        registry.add("other", 2, aliases=("large",))
    copy = registry.copy()
    copy.add("temporary", 3)
    assert "temporary" not in registry and len(copy) == 2


def test_unknown_names_get_the_valid_ones_and_the_closest() -> None:
    registry: Registry[int] = Registry("widget", separator="-")
    registry.add("mnist-5k", 1)
    registry.add("cifar10", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'mnist5k'; valid widgets: cifar10, "):
        registry.resolve("mnist5k")
    with pytest.raises(ValueError, match=r"did you mean 'mnist-5k'\?"):
        registry.resolve("mnist5k")
    with pytest.raises(ValueError, match="unknown widget 3"):
        registry.resolve(3)


@pytest.mark.parametrize(
    ("lookup", "typo", "suggestion"),
    [
        (resolve_operator, "reluu", "'relu'"),
        (create_model, "lenet", "'lenet5'"),
        (load_dataset, "mnist5k", "'mnist-5k'"),
    ],
)
def test_every_registry_suggests_the_close_name(lookup, typo, suggestion) -> None:
    with pytest.raises(ValueError, match=f"did you mean {suggestion}"):
        lookup(typo)


def test_a_registered_optimizer_runs_through_optimize(make_problem, tmp_path, monkeypatch) -> None:
    import safs_smac.optimizers as optimizers
    from safs_smac.optimizers import OPTIMIZERS, RandomSearch, register_optimizer
    from safs_smac.search import optimize

    monkeypatch.setattr(optimizers, "_REGISTRY", optimizers._REGISTRY.copy())
    monkeypatch.setattr(optimizers, "OPTIMIZERS", OPTIMIZERS)  # restored below by setitem
    monkeypatch.setitem(OPTIMIZERS, "coin", RandomSearch)  # undone after the test

    @register_optimizer("coin")
    class CoinFlip(RandomSearch):
        """Random search under another name."""

    assert OPTIMIZERS["coin"] is CoinFlip
    result = optimize(
        make_problem(), "coin", n_trials=2, output_dir=tmp_path / "run", progress=False
    )
    assert len(result.trials) == 2
    with pytest.raises(TypeError, match="AskTellOptimizer subclass"):
        register_optimizer("bad")(int)
