"""Every bad input of the README's table: one line naming the problem and the fix, exit code 2,
and the results of an earlier run in the same output directory untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from safs_smac.cli import main
from safs_smac.runs.lock import LOCK_NAME

# A tiny but complete run: its directory is the "earlier results" every case must leave alone.
BASE = [
    *("--dataset", "synthetic", "--dense-epochs", "1", "--optimizer", "random"),
    *("--n-trials", "2", "--max-budget", "1", "--no-progress"),
]


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    # The lock file says who last held the directory: a refused command may have held it.
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != LOCK_NAME
    }


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("earlier")
    out, cache = root / "run", root / "cache"
    assert main(["run", *BASE, "--output-dir", str(out), "--cache-dir", str(cache)]) == 0
    assert (out / "summary.json").exists()
    return out, cache


def _corrupt_mnist(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"this is not an IDX file")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00" * 16)
    return root


# (case, extra arguments, what the message must say). Later arguments override BASE.
CASES = [
    ("unknown model", ["--model", "resnet1000"], "unknown model 'resnet1000'"),
    ("unknown dataset", ["--dataset", "mnist-7k"], "unknown dataset 'mnist-7k'"),
    ("unknown operator", ["--operators", "relu,reluu"], "unknown operator 'reluu'"),
    ("no operator", ["--operators", ","], "expected comma-separated operator names"),
    ("trial walltime under a second", ["--trial-walltime", "0.5"], "at least 1 second"),
    ("empty output directory", ["--output-dir", ""], "got an empty name"),
    ("unknown optimizer", ["--optimizer", "bogus"], "invalid choice: 'bogus'"),
    ("pruning rate 1", ["--pruning-rate", "1.0"], "0 <= rate < 1"),
    ("negative pruning rate", ["--pruning-rate", "-0.5"], "0 <= rate < 1"),
    ("min budget > max budget", ["--min-budget", "5", "--max-budget", "2"], "min_budget <="),
    ("infinite max budget", ["--max-budget", "inf"], "a number of epochs > 0, finite, got inf"),
    ("nan max budget", ["--max-budget", "nan"], "a number of epochs > 0, finite, got nan"),
    ("nan walltime", ["--walltime", "nan"], "seconds > 0 (or inf for no limit), got nan"),
    ("eta 0", ["--eta", "0"], "eta must be an integer >= 2, got 0"),
    ("eta 1", ["--eta", "1"], "eta must be an integer >= 2, got 1"),
    ("zero trials", ["--n-trials", "0"], "n_trials must be >= 1"),
    ("negative trials", ["--n-trials", "-3"], "n_trials must be >= 1"),
    ("zero workers", ["--n-workers", "0"], "n_workers must be >= 1"),
    ("zero trial walltime", ["--trial-walltime", "0"], "trial_walltime_limit must be"),
    ("negative trial memory", ["--trial-memory", "-1"], "trial_memory_limit must be"),
    ("not a number", ["--n-trials", "many"], "invalid int value: 'many'"),
    (
        "missing data directory",
        ["--dataset", "cifar10", "--data-root", "/nonexistent/data"],
        "cifar-10-batches-py",
    ),
    ("corrupt dataset file", ["--dataset", "mnist", "--data-root", "{mnist}"], "IDX file"),
    ("missing scheduler file", ["--scheduler-file", "{tmp}/nope.json"], "does not exist"),
    ("different run in the directory", ["--n-trials", "3"], "holds a different run"),
]


@pytest.mark.parametrize(("case", "extra", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_earlier_results_untouched(
    earlier_run, tmp_path, capsys, case, extra, message
) -> None:
    out, cache = earlier_run
    before = _snapshot(out)
    mnist = _corrupt_mnist(tmp_path / "data") if "{mnist}" in extra else None
    extra = [arg.replace("{mnist}", str(mnist)).replace("{tmp}", str(tmp_path)) for arg in extra]
    capsys.readouterr()
    code = _exit_code(["run", *BASE, "--output-dir", str(out), "--cache-dir", str(cache), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("safs-smac"), err
    assert message in err, err
    assert _snapshot(out) == before


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse errors
        return int(exit_.code)


def test_an_output_directory_inside_a_file_is_refused(earlier_run, tmp_path, capsys) -> None:
    _, cache = earlier_run
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = main(["run", *BASE, "--output-dir", str(blocker / "run"), "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "is not writable" in err and "choose another --output-dir" in err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes through chmod 500; the case above gives a real error as root",
)
def test_a_read_only_output_directory_is_refused(earlier_run, tmp_path, capsys) -> None:
    _, cache = earlier_run
    parent = tmp_path / "read_only"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code = main(["run", *BASE, "--output-dir", str(parent / "run"), "--cache-dir", str(cache)])
    finally:
        parent.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "is not writable" in err
    assert not (parent / "run").exists()


# Bad input of the Python API that the command line never builds: a configuration space file and
# a configuration given by the user.
def test_a_malformed_or_foreign_configspace_file_is_refused(tmp_path) -> None:
    from ConfigSpace import ConfigurationSpace, Float

    from safs_smac.space import load_space

    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"hyperparameters": [')
    with pytest.raises(ValueError, match="is not valid JSON.*regenerate it with `safs-smac space"):
        load_space(malformed)
    foreign = tmp_path / "foreign.json"
    ConfigurationSpace(space=[Float("learning_rate", (1e-4, 1.0))]).to_json(foreign)
    with pytest.raises(ValueError, match="without SAFS hyperparameters"):
        load_space(foreign)


def test_a_configuration_from_another_space_is_refused(make_problem) -> None:
    problem = make_problem()
    config = dict(problem.configspace.get_default_configuration())
    with pytest.raises(ValueError, match="unknown key 'act:99_act9'"):
        problem.check({**config, "act:99_act9": "relu"})
    with pytest.raises(ValueError, match="start from space.get_default_configuration"):
        problem.check({**config, next(iter(config)): "reluu"})


# problem.train refuses a configuration its own space does not allow before any training: one
# test per README row. The problem searches relu and swish only.
@pytest.fixture
def two_operator_problem(make_problem) -> object:
    return make_problem(operators=["relu", "swish"])


def _train_refuses(problem, change: dict, *match: str) -> None:
    config = {**problem.configspace.get_default_configuration(), **change}
    with pytest.raises(ValueError) as info:
        problem.train(config, seed=0, budget=1)
    message = str(info.value)
    assert "\n" not in message
    for text in match:
        assert text in message
    # Refused before the checkpoint pipeline ran: nothing was trained or cached.
    assert problem._dense_state is None and not problem._pruned_states


def test_train_refuses_an_operator_outside_the_problems_operators(two_operator_problem) -> None:
    problem = two_operator_problem
    site = next(k for k in problem.configspace if k.startswith("act:"))
    _train_refuses(problem, {site: "gelu"}, f"{site}='gelu' is not one of relu, swish")


def test_train_refuses_a_scale_outside_its_range(two_operator_problem) -> None:
    problem = two_operator_problem
    site = next(k for k in problem.configspace if k.startswith("alpha:"))
    _train_refuses(problem, {site: -1000.0}, f"{site}=-1000.0 is outside [0.2, 5.0]")


def test_train_refuses_a_learning_rate_outside_its_range(two_operator_problem) -> None:
    _train_refuses(two_operator_problem, {"ft:lr": 7}, "ft:lr=7 is outside [0.001, 0.1]")


def test_train_refuses_an_unknown_key(two_operator_problem) -> None:
    _train_refuses(
        two_operator_problem, {"ft:lrr": 0.01}, "unknown key 'ft:lrr' (did you mean 'ft:lr'?)"
    )


# load_space refuses a space the trainer cannot run, naming the file and the key.
@pytest.mark.parametrize(
    ("name", "edit", "match"),
    [
        (
            "act:00_a",
            lambda hp: hp.update(choices=[*hp["choices"], "reluu"]),
            r"edited\.json'?: act:00_a offers the unknown operator",
        ),
        (
            "ft:lr",
            lambda hp: hp.update(lower=-0.1, log=False),
            r"edited\.json'?: ft:lr has the range \[-0\.1, 0\.1\]",
        ),
        (
            "ft:label_smoothing",
            lambda hp: hp.update(name="ft:label_smooth"),
            r"unknown fine-tuning key 'ft:label_smooth'.*did you mean",
        ),
    ],
    ids=["unknown-operator", "negative-lr-bound", "unknown-finetuning-key"],
)
def test_load_space_refuses_an_edited_file(tmp_path, name, edit, match) -> None:
    import json

    from safs_smac.space import build_space, load_space, save_space

    space = build_space(
        ["00_a", "01_b"], default_activation="relu", recipe={"optimizer": "sgd", "lr": 0.01}
    )
    data = space.to_serialized_dict()
    (hp,) = (hp for hp in data["hyperparameters"] if hp["name"] == name)
    edit(hp)
    path = tmp_path / "edited.json"
    save_space(space, path)  # then overwrite with the edited serialisation
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        load_space(path)


def test_a_directory_in_use_is_one_line_exit_2(earlier_run, capsys) -> None:
    from safs_smac.runs import RunLock

    out, cache = earlier_run
    before = _snapshot(out)
    with RunLock(out):
        code = _exit_code(["run", *BASE, "--output-dir", str(out), "--cache-dir", str(cache)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "is in use by process" in err and "choose another --output-dir" in err
    assert _snapshot(out) == before


@pytest.mark.parametrize("content", [b"{}", b"\x89PNG\x00\xff"])
def test_a_damaged_summary_is_one_line_and_the_run_command_rewrites_it(
    earlier_run, tmp_path, capsys, content
) -> None:
    import shutil

    source, cache = earlier_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    (out / "summary.json").write_bytes(content)
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "summary.json" in err, err
    assert "rerun the `safs-smac run` command" in err
    # The advice works: the run's own command retrains the incumbent and writes it again.
    assert main(["run", *BASE, "--output-dir", str(out), "--cache-dir", str(cache)]) == 0
    assert main(["report", str(out)]) == 0
