"""benchmarks/scaling.py: the settings it compares, its report, and an in-process smoke run."""

from __future__ import annotations

import importlib
import json

import pytest


@pytest.fixture(scope="module")
def scaling():
    # pytest puts benchmarks/ on sys.path (pyproject.toml), as Python does for a script.
    return importlib.import_module("scaling")


def test_settings_pair_each_worker_count_with_its_threads(scaling, monkeypatch) -> None:
    monkeypatch.setattr(scaling, "available_cores", lambda: 8)
    monkeypatch.setattr(scaling, "threads_per_worker", lambda n: 8 // n)
    args = scaling.parse_args(["--workers", "1,2,4", "--serial-threads", "all,1"])
    assert scaling.settings(args) == [(1, 8), (1, 1), (2, 4), (4, 2)]


def test_report_gives_the_speed_up_against_the_faster_serial_setting(scaling) -> None:
    def row(workers: int, threads: int, seconds: float) -> dict:
        return {
            "workers": workers,
            "torch_threads": threads,
            "seconds": seconds,
            "load_before": (1.0, 1.0, 1.0),
            "load_after": (2.0, 2.0, 2.0),
            "startup_seconds": 3.0,
        }

    rows = [row(1, 2, 40.0), row(1, 1, 30.0), row(2, 1, 20.0), row(2, 1, 10.0), row(2, 1, 16.0)]
    meta = {
        "problem": "p",
        "trials": 16,
        "epochs": 4,
        "cores": 2,
        "torch": "x",
        "date": "d",
        "command": "c",
    }
    report = scaling.render(rows, meta)
    assert "| 2 | 1 | 16.0 (20.0, 10.0, 16.0) | 60.0 | 1.88x |" in report
    assert "| 1 | 1 | 30.0 (30.0) | 32.0 | 1.00x |" in report
    assert "start-up (not in the wall times): 3.0 s" in report


def test_quick_serial_run_writes_its_report(scaling, tmp_path) -> None:
    args = ["--quick", "--workers", "1", "--serial-threads", "1"]
    assert scaling.main([*args, "--output-dir", str(tmp_path), "--cache-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scaling.json").read_text())
    (run,) = result["runs"]
    assert run["trials"] == 6 and run["statuses"] == ["SUCCESS"]
    assert "trials / min" in (tmp_path / "scaling.md").read_text()
