"""problem.train under SMAC's Dask runner: glibc's allocator thresholds, and a prompt exit.

Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (3-4x slower CPU training);
``safs_smac.workers`` undoes it with ``mallopt`` at a worker's first trial. The README's "Drive
SMAC yourself" example passes its own Dask client, closed by the script, because SMAC 2.4.1's
own client is only closed by ``DaskParallelRunner.__del__`` at interpreter exit, which times out
after 60 s.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from safs_smac import workers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NANNY_KILL = re.compile(r"distributed\.nanny - WARNING - Worker process still alive after")

# A buffer above the nanny's 64 KiB threshold and glibc's initial 128 KiB mmap threshold, far
# below the restored 32 MiB one: mapped afresh without the fix, taken from the heap with it.
PROBE_BYTES = 1 << 20
MALLINFO_PROBE = f"""
import ctypes, sys

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mapped_blocks_of_one_allocation() -> int:
    before = libc.mallinfo2().hblks
    buffer = libc.malloc({PROBE_BYTES})
    during = libc.mallinfo2().hblks
    libc.free(buffer)
    return during - before
"""


def _has_glibc_mallinfo2() -> bool:
    try:
        ctypes.CDLL(None).mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


needs_glibc = pytest.mark.skipif(not _has_glibc_mallinfo2(), reason="needs glibc >= 2.33")


@needs_glibc
def test_restore_malloc_thresholds_stops_mapping_every_buffer() -> None:
    code = MALLINFO_PROBE + textwrap.dedent(
        """
        from safs_smac import workers
        print(mapped_blocks_of_one_allocation())
        assert workers.restore_malloc_thresholds()
        print(mapped_blocks_of_one_allocation())
        """
    )
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["1", "0"]  # mmap'ed with Dask's setting, from the heap after the fix


def test_a_dask_worker_with_the_nanny_setting_is_fixed_without_a_warning(
    monkeypatch, caplog
) -> None:
    fake = SimpleNamespace(name=0, state=SimpleNamespace(nthreads=1))
    monkeypatch.setattr(workers, "current_worker", lambda: fake)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    calls = []
    monkeypatch.setattr(workers, "restore_malloc_thresholds", lambda: calls.append(1) or True)
    workers._undo_malloc_trim.cache_clear()
    with caplog.at_level("INFO", logger="safs_smac.workers"):
        workers.configure_worker("cpu", num_threads=torch.get_num_threads())
        workers.configure_worker("cpu", num_threads=torch.get_num_threads())
    workers._undo_malloc_trim.cache_clear()
    assert calls == [1]  # once per process
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert "MALLOC_TRIM_THRESHOLD_=65536" in caplog.text


def test_without_mallopt_the_worker_warns_how_to_fix_the_cluster(monkeypatch, caplog) -> None:
    fake = SimpleNamespace(name=0, state=SimpleNamespace(nthreads=1))
    monkeypatch.setattr(workers, "current_worker", lambda: fake)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    monkeypatch.setattr(workers, "restore_malloc_thresholds", lambda: False)
    workers._undo_malloc_trim.cache_clear()
    with caplog.at_level("WARNING"):
        workers.configure_worker("cpu", num_threads=torch.get_num_threads())
    workers._undo_malloc_trim.cache_clear()
    assert "MALLOC_TRIM_THRESHOLD_=65536" in caplog.text
    assert "pre-spawn-environ.MALLOC_TRIM_THRESHOLD_" in caplog.text


def readme_dask_example() -> str:
    """The Python block of the README that passes its own Dask client to a SMAC facade."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    matches = [b for b in blocks if "dask_client=client" in b and "Facade(" in b]
    assert len(matches) == 1, "the README's 'Drive SMAC yourself' Dask example is missing"
    return matches[0]


@pytest.mark.slow
def test_readme_dask_example_runs_without_warnings_and_exits_promptly(tmp_path: Path) -> None:
    """The README's example, on tiny data: 2 workers, no warning, exit right after the search."""
    code = readme_dask_example()
    small = code.replace(
        'SAFSProblem("lenet5", "mnist-5k", pruning_rate=0.99)',
        'SAFSProblem("lenet5", "synthetic", pruning_rate=0.9, dense_epochs=1, max_budget=2, '
        f'device="cpu", cache_dir={str(tmp_path / "cache")!r}, '
        'dataset_kwargs={"n_train": 64, "n_val": 32, "n_test": 32})',
    )
    small = small.replace("n_trials=30", "n_trials=4").replace("max_budget=9", "max_budget=2")
    assert small.count("synthetic") == 1 and "n_trials=4" in small and "max_budget=2," in small
    # The clock stops when optimize() returns: closing the client and cluster counts.
    small = re.sub(
        r"^( *)(incumbent = smac\.optimize\(\))$",
        r"\1\2\n\1print('SEARCH_DONE', __import__('time').time(), flush=True)",
        small,
        flags=re.M,
    )
    assert "SEARCH_DONE" in small
    script = tmp_path / "example.py"
    script.write_text(small, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    finished = time.time()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    done = float(output.split("SEARCH_DONE ")[1].split()[0])
    assert finished - done < 15, f"{finished - done:.0f} s from the search's end to the exit"
    # Dask's nanny gives a closing worker 4 s to exit before killing it (and saying so). A process
    # that ran a trial took 3.9-4.0 s just to finalise on the 2-core development machine at load
    # 12 (one that only imported torch: 1.8-2.2 s), so that one line depends on the machine's
    # load, not on the example; the exit still has to be prompt.
    lines = [line for line in output.splitlines() if not NANNY_KILL.search(line)]
    assert not re.search(r"warn|MALLOC_TRIM", "\n".join(lines), re.I), output[-4000:]
    assert (tmp_path / "smac3_output").is_dir()
