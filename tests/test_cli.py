"""The safs-smac command: bad input exits 2 with one clear line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from safs_smac.cli import build_parser, main


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "safs_smac", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "SAFS_SMAC_CACHE": str(cwd / "cache")},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet1000"], "unknown model"),
        (["--dataset", "mnist-7k"], "unknown dataset"),
        (["--operators", "relu,reluu"], "reluu"),
        (["--pruning-rate", "1.0"], "0 <= rate < 1"),
        (["--pruning-rate", "-0.5"], "0 <= rate < 1"),
        (["--min-budget", "5", "--max-budget", "2"], "min_budget <= max_budget"),
        (["--n-trials", "0"], "n_trials must be >= 1"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent/data"], "cifar-10-batches-py"),
        (["--optimizer", "lahc", "--n-workers", "0"], "n_workers must be >= 1"),
        (["--stage1-epochs", "3"], "do not apply to protocol='staged'"),
        (["--protocol", "paper", "--stage1-trials", "0"], "stage1_trials must be an int >= 1"),
        (["--protocol", "paper", "--stage2-epochs", "-1"], "stage2_epochs must be an int >= 1"),
        (["--protocol", "paper", "--n-trials", "1"], "at least one trial per stage"),
        (["--protocol", "paper", "--stage", "operators"], "leave stage at 'joint'"),
        (["--protocol", "paper", "--search-rate", "0.9,0.99"], "drop search_rate"),
        (
            [
                *("--protocol", "paper", "--optimizer", "smac-mf"),
                *("--min-budget", "5", "--stage2-epochs", "3"),
            ],
            "exceeds stage2_epochs",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["run", "--output-dir", str(out), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("safs-smac: error:")
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--optimizer", "--protocol"])
def test_unknown_optimizer_or_protocol_is_rejected_by_the_parser(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", option, "bogus", "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_help_lists_every_default():
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for option in ("--model", "--dataset", "--pruning-rate", "--optimizer", "--n-trials"):
        assert option in text
    for option in ("--protocol", "--stage1-trials", "--stage1-epochs", "--stage2-trials"):
        assert option in text
    assert "(default: lenet5)" in text
    assert "(default: smac-mf; with --protocol paper lahc then smac-hpo)" in " ".join(text.split())
    assert "(default: joint)" in text
    assert "(default: None)" not in text  # every option states a real default


def test_space_command_prints_a_loadable_space(tmp_path, capsys):
    from ConfigSpace import ConfigurationSpace

    assert main(["space", "--model", "lenet5", "--stage", "operators"]) == 0
    text = capsys.readouterr().out
    payload = json.loads(text)
    path = tmp_path / "space.json"
    path.write_text(text)
    space = ConfigurationSpace.from_json(path)
    assert sorted(space) == sorted(k for k in space if k.startswith("act:"))
    assert len(payload["hyperparameters"]) == 4


def test_run_and_report_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = [
        "run",
        "--dataset",
        "synthetic",
        "--n-trials",
        "3",
        "--max-budget",
        "1",
        "--dense-epochs",
        "1",
        "--optimizer",
        "random",
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    done = _run_cli(args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "magnitude pruning + fine-tuning" in done.stdout
    assert "SAFS (incumbent)" in done.stdout
    report = _run_cli(["report", str(out)], tmp_path)
    assert report.returncode == 0, report.stderr
    assert "dead neuron rate" in report.stdout
    assert (out / "dnr.png").exists()
    again = _run_cli([*args[:-1], "--n-trials", "4", "--no-progress"], tmp_path)
    assert again.returncode == 2
    assert "holds a different run" in again.stderr


def test_report_on_a_directory_without_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished safs-smac run" in capsys.readouterr().err
