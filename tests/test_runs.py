"""A run's identity, directory, lock and result files (safs_smac.runs)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import SYNTHETIC
from fault_targets import faulty_problem

from safs_smac.runs import RunLock, check_identity, clear_run_dir, prepare_run_dir, read_state
from safs_smac.runs.directory import check_output_dir
from safs_smac.runs.lock import LOCK_NAME
from safs_smac.runs.results import load_result
from safs_smac.runs.state import drop_unfinished_trials
from safs_smac.search import optimize
from safs_smac.search.run import identity

IDENTITY = {"safs_smac": "0.1.0", "problem": {"model": "lenet5"}, "optimizer": "random", "seed": 0}


# ---------------------------------------------------------------------------------- identity
def test_identity_is_compared_as_json_and_ignores_the_environment() -> None:
    stored = {**IDENTITY, "search_rate": [0.9, 0.99], "walltime": None, "environment": {"a": 1}}
    new = {**IDENTITY, "search_rate": (0.9, 0.99), "walltime": None, "environment": {"a": 2}}
    assert check_identity(stored, new).same


def test_a_changed_setting_is_named() -> None:
    verdict = check_identity(IDENTITY, {**IDENTITY, "problem": {"model": "vgg16"}})
    assert not verdict.same and verdict.changed == ["problem.model"]
    assert not verdict.earlier_version


def test_a_run_made_before_the_data_was_recorded_resumes_and_gains_it() -> None:
    verdict = check_identity(IDENTITY, {**IDENTITY, "data": "abc"})
    assert verdict.same and verdict.upgraded == {**IDENTITY, "data": "abc"}
    assert not check_identity({**IDENTITY, "data": "abc"}, {**IDENTITY, "data": "xyz"}).same


def test_other_data_under_the_same_settings_is_another_run(make_problem) -> None:
    a = make_problem()
    b = make_problem(dataset_kwargs={**SYNTHETIC, "seed": 1})
    b_settings = identity(b, "random", budgets=False, seed=0)
    # Only the data differ once the settings that name the data are made equal.
    b_settings["problem"] = identity(a, "random", budgets=False, seed=0)["problem"]
    verdict = check_identity(identity(a, "random", budgets=False, seed=0), b_settings)
    assert verdict.changed == ["data"]


# ---------------------------------------------------------------------------------- directory
def test_the_current_directory_is_never_an_output_directory() -> None:
    for name in ("", "."):
        with pytest.raises(ValueError, match="current directory"):
            check_output_dir(Path(name))


def test_overwrite_removes_only_what_a_run_wrote(tmp_path) -> None:
    run = tmp_path / "run"
    prepare_run_dir(run, IDENTITY, overwrite=False)
    (run / "smac" / "0").mkdir(parents=True)
    (run / "smac" / "0" / "runhistory.json").write_text("{}")
    (run / "results.csv").write_text("trial\n")
    assert prepare_run_dir(run, {**IDENTITY, "seed": 1}, overwrite=True) == "new"
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]
    assert read_state(run / "run.json", "identity")["seed"] == 1


@pytest.mark.parametrize("extra", ["precious.txt", "sub/", "link"])
def test_overwrite_refuses_a_directory_holding_other_files(tmp_path, extra) -> None:
    run = tmp_path / "run"
    prepare_run_dir(run, IDENTITY, overwrite=False)
    (run / "results.csv").write_text("trial\n")
    if extra == "link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "keep").write_text("keep")
        (run / "stage1").symlink_to(elsewhere)  # a run's name, but not the run's directory
    elif extra.endswith("/"):
        (run / extra).mkdir()
    else:
        (run / extra).write_text("keep")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="not a safs-smac run|did not write"):
        prepare_run_dir(run, {**IDENTITY, "seed": 1}, overwrite=True)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    assert read_state(run / "run.json", "identity")["seed"] == 0


def test_clearing_the_home_or_current_directory_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="current, home or root"):
        clear_run_dir(Path.cwd())
    assert (tmp_path / "run.json").exists()


def test_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        prepare_run_dir(tmp_path / "run", IDENTITY, overwrite=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run" / "run.json").stat().st_mode) == 0o644


# ---------------------------------------------------------------------------------- lock
def test_a_second_holder_is_refused_and_told_who_holds_it(tmp_path) -> None:
    with (
        RunLock(tmp_path / "run"),
        pytest.raises(ValueError, match=rf"in use by process {os.getpid()} on "),
    ):
        RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass


def test_optimize_refuses_a_directory_in_use(make_problem, tmp_path) -> None:
    out = tmp_path / "run"
    with RunLock(out), pytest.raises(ValueError, match="in use by process"):
        optimize(make_problem(), "random", n_trials=1, output_dir=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


def test_a_refused_call_leaves_no_directory_behind(make_problem, tmp_path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="do not fit optimizer"):
        optimize(
            make_problem(),
            "lahc",
            n_trials=1,
            output_dir=out,
            progress=False,
            optimizer_kwargs={"bogus": 1},
        )
    assert not out.exists()


# ---------------------------------------------------------------------------------- state files
@pytest.mark.parametrize("content", ["[]", "3", '"text"'])
def test_state_files_of_the_wrong_shape_are_named(tmp_path, content) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(content)
    with pytest.raises(ValueError, match=r"run\.json .*not an object"):
        prepare_run_dir(run, IDENTITY, overwrite=False)


def test_a_run_history_without_data_is_named(tmp_path) -> None:
    path = tmp_path / "runhistory.json"
    path.write_text(json.dumps({"configs": {}}))
    with pytest.raises(ValueError, match=r"runhistory\.json .*lacks 'data'"):
        drop_unfinished_trials(path)


@pytest.fixture
def finished_run(make_problem, tmp_path) -> Path:
    out = tmp_path / "finished"
    optimize(make_problem(), "random", n_trials=3, output_dir=out, progress=False)
    return out


def test_a_truncated_results_csv_is_rebuilt_from_the_run_history(finished_run) -> None:
    csv = finished_run / "results.csv"
    full = csv.read_text().splitlines()
    csv.write_text("\n".join(full[:2]) + "\n")  # header and one trial of three
    result = load_result(finished_run)
    assert len(result.trials) == 3
    assert len(csv.read_text().splitlines()) == len(full)


@pytest.mark.parametrize("damaged", ["summary.json", "incumbent.json"])
def test_damaged_result_files_are_named_and_rerunning_rewrites_them(
    make_problem, finished_run, damaged
) -> None:
    (finished_run / damaged).write_text("{}")
    with pytest.raises(ValueError, match=rf"{damaged} .*lacks"):
        load_result(finished_run)
    # The same command retrains the incumbent from the intact search state and rewrites them.
    result = optimize(make_problem(), "random", n_trials=3, output_dir=finished_run, progress=False)
    assert len(result.trials) == 3
    assert load_result(finished_run).final == result.final


def test_a_damaged_run_json_is_replaced_only_with_overwrite(make_problem, finished_run) -> None:
    (finished_run / "run.json").write_text("[]")
    with pytest.raises(ValueError, match="pass --overwrite to start the run afresh"):
        optimize(make_problem(), "random", n_trials=3, output_dir=finished_run, progress=False)
    result = optimize(
        make_problem(),
        "random",
        n_trials=3,
        output_dir=finished_run,
        progress=False,
        overwrite=True,
    )
    assert len(result.trials) == 3


def test_a_run_whose_every_trial_fails_says_so_and_writes_the_reasons(tmp_path) -> None:
    problem = faulty_problem(tmp_path, {1: "raise", 2: "raise"})
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"every one of the 2 trials failed .*injected failure"):
        optimize(problem, "random", n_trials=2, output_dir=out, progress=False)
    trials = (out / "results.csv").read_text()
    assert trials.count("injected failure") == 2


def test_an_unwritable_cache_is_refused_before_the_run_directory_is_made(
    make_problem, tmp_path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="checkpoint cache .* is not writable.*--cache-dir"):
        optimize(
            make_problem(cache_dir=blocker / "cache"),
            "random",
            n_trials=1,
            output_dir=out,
            progress=False,
        )
    assert not out.exists()


def test_a_finished_search_leaves_no_continuation_states(make_problem, tmp_path) -> None:
    problem = make_problem()
    optimize(
        problem,
        "smac-mf",
        protocol="joint",
        n_trials=6,
        min_budget=1,
        eta=2,
        output_dir=tmp_path / "run",
        progress=False,
    )
    assert problem.continuation_bytes() == 0
