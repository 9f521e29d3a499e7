"""How trials run: resource limits, parallel Dask workers and crash-safe SMAC files.

``optimize`` runs every trial through a SMAC runner built here, whichever optimizer proposes it:

* :class:`TrialRunner`, SMAC's :class:`~smac.runner.TargetFunctionRunner` that also says *why* a
  trial failed. A trial that raises is ``CRASHED``, one that runs past ``trial_walltime_limit`` is
  ``TIMEOUT``, one that needs more than ``trial_memory_limit`` is ``MEMORYOUT`` (limits are enforced
  by pynisher in a forked child process); ``additional_info["reason"]`` holds one readable sentence
  and the run goes on.
* :class:`ResilientDaskRunner`, SMAC's :class:`~smac.runner.DaskParallelRunner` that survives the
  death of a worker: Dask re-runs the trial on another worker (``allowed_failures`` times), and a
  trial that keeps killing its workers is recorded as ``CRASHED`` instead of stopping the run.
  It also waits for workers that are still starting (a SLURM queue) instead of giving up.
* :func:`dask_client`: the local cluster of ``n_workers`` processes that ``n_workers > 1`` starts,
  or a client of a running cluster (``scheduler_file``, or the user's own ``Client``).
* :func:`atomic_smac_saves`: SMAC writes ``runhistory.json``, ``intensifier.json``,
  ``optimization.json`` and ``scenario.json`` with plain ``open(..., "w")``; a kill during a save
  would leave a truncated file that SMAC cannot resume from. Inside this context every SMAC save is
  written to temporary files and moved into place with :func:`os.replace`.

Imports SMAC, ConfigSpace, Dask (``distributed``, which SMAC depends on) and :mod:`safs_smac._io`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from smac.runhistory import StatusType, TrialInfo, TrialValue
from smac.runner import DaskParallelRunner, TargetFunctionRunner
from smac.runner.abstract_runner import AbstractRunner
from smac.scenario import Scenario

from safs_smac._io import read_json
from safs_smac.smac_compat import atomic_smac_saves

__all__ = [
    "ALLOWED_WORKER_FAILURES",
    "ResilientDaskRunner",
    "TrialRunner",
    "atomic_smac_saves",
    "check_scheduler_file",
    "dask_client",
    "make_runner",
    "memory_limit",
    "required_arguments",
]

logger = logging.getLogger(__name__)

# Dask re-runs a trial whose worker died this many times before giving up on it: a worker lost to
# something outside the trial (an OOM-killed neighbour, a preempted node) costs one re-run, a trial
# that kills every worker it touches is recorded as CRASHED after two deaths.
ALLOWED_WORKER_FAILURES = 1
# How long a local cluster may take to (re)start a worker before the run stops with an error.
LOCAL_WORKER_TIMEOUT = 300.0
# Imported once in a process before trial limits fork it: the first torch optimizer imports
# torch._dynamo (about 2 s), which every forked trial would otherwise pay again.
PRELOAD_BEFORE_FORK = ("torch._dynamo",)


def memory_limit(megabytes: float | None) -> tuple[int, str] | None:
    """``trial_memory_limit`` for SMAC's Scenario: an explicit ``(MB, "MB")`` pair.

    A bare int would reach pynisher as *bytes* (SMAC issue #1101); the pair is converted.
    """
    if megabytes is None:
        return None
    return (int(megabytes), "MB")


def required_arguments(intensifier: Any) -> list[str]:
    """The keyword arguments SMAC passes to the target (as the facade computes them)."""
    wanted = (
        ("seed", intensifier.uses_seeds),
        ("budget", intensifier.uses_budgets),
        ("instance", intensifier.uses_instances),
        ("cutoff", intensifier.uses_cutoffs),
    )
    return [name for name, used in wanted if used]


class TrialRunner(TargetFunctionRunner):
    """SMAC's target-function runner, with the status and reason of every failed trial.

    Every unsuccessful trial gets ``additional_info["reason"]``, one readable sentence; a crash
    keeps SMAC's ``error`` and ``traceback``. Two fixes over SMAC 2.4.1:

    * SMAC's ``run_wrapper`` turns every trial with an infinite cost into ``CRASHED``, so its own
      ``TIMEOUT`` and ``MEMORYOUT`` (whose cost is the infinite crash cost) are never recorded;
      here they are.
    * A torch allocation refused under the memory limit (``can't allocate memory``, a
      ``RuntimeError`` that pynisher does not recognise) is ``MEMORYOUT``, like a ``MemoryError``.
    """

    def run(
        self,
        config: Any,
        instance: str | None = None,
        budget: float | None = None,
        seed: int | None = None,
        additional_info: dict[str, Any] | None = None,
        **dask_data_to_scatter: dict[str, Any],
    ) -> tuple[StatusType, Any, float, float, dict[str, Any]]:
        if self._memory_limit is not None or self._algorithm_walltime_limit is not None:
            for module in PRELOAD_BEFORE_FORK:
                importlib.import_module(module)
        status, cost, runtime, cpu_time, extra = super().run(
            config,
            instance=instance,
            budget=budget,
            seed=seed,
            additional_info=additional_info,
            **dask_data_to_scatter,
        )
        if status != StatusType.SUCCESS:
            extra = dict(extra or {})
            status = self._classify(status, extra)
            extra["status"] = status.name  # survives run_wrapper's rewrite to CRASHED
            extra.setdefault("reason", self._reason(status, extra))
        return status, cost, runtime, cpu_time, extra

    def run_wrapper(
        self, trial_info: TrialInfo, **dask_data_to_scatter: dict[str, Any]
    ) -> tuple[TrialInfo, TrialValue]:
        info, value = super().run_wrapper(trial_info, **dask_data_to_scatter)
        if value.status == StatusType.SUCCESS:
            return info, value
        extra = dict(value.additional_info or {})
        status = StatusType[extra.pop("status", value.status.name)]
        extra.setdefault("reason", self._reason(status, extra))
        return info, dataclasses.replace(value, status=status, additional_info=extra)

    def _classify(self, status: StatusType, extra: dict[str, Any]) -> StatusType:
        text = str(extra.get("error", "")) + str(extra.get("traceback", ""))
        if (
            status == StatusType.CRASHED
            and self._memory_limit is not None
            and _looks_like_memory_error(text)
        ):
            return StatusType.MEMORYOUT
        return status

    def _reason(self, status: StatusType, extra: dict[str, Any]) -> str:
        if status == StatusType.TIMEOUT:
            return f"exceeded the trial wall-time limit of {self._algorithm_walltime_limit} s"
        if status == StatusType.MEMORYOUT:
            memory = self._memory_limit
            shown = f"{memory[0]} {memory[1]}" if isinstance(memory, tuple) else f"{memory} B"
            return f"exceeded the trial memory limit of {shown}"
        error = str(extra.get("error", "")).strip()
        if error:
            return f"the target raised {error}"
        return f"the trial ended with status {status.name} and no error message"


def _looks_like_memory_error(text: str) -> bool:
    return "MemoryError" in text or "can't allocate memory" in text or "out of memory" in text


class ResilientDaskRunner(DaskParallelRunner):
    """SMAC's Dask runner that records a trial whose worker died instead of crashing the run.

    SMAC's runner calls ``future.result()``, which raises ``KilledWorker`` once Dask gives up on a
    task whose workers keep dying; the whole optimisation then stops. Here such a trial becomes a
    ``CRASHED`` trial with the reason, and the run goes on with the remaining workers (a local
    cluster restarts dead workers).

    Parameters
    ----------
    single_worker
        The runner each worker runs (a :class:`TrialRunner`).
    dask_client
        The client to submit to (see :func:`dask_client`); never closed here.
    worker_timeout
        Seconds to wait for a free worker when none is alive (e.g. while a local cluster restarts a
        dead one) before raising; ``None`` waits indefinitely (a batch queue may take hours).
    """

    def __init__(
        self,
        single_worker: AbstractRunner,
        dask_client: Any,
        *,
        worker_timeout: float | None = LOCAL_WORKER_TIMEOUT,
    ) -> None:
        super().__init__(single_worker=single_worker, dask_client=dask_client)
        self._worker_timeout = worker_timeout
        self._trial_of: dict[Any, TrialInfo] = {}

    def submit_trial(self, trial_info: TrialInfo, **dask_data_to_scatter: dict[str, Any]) -> None:
        self._wait_for_a_free_worker()
        future = self._client.submit(
            self._single_worker.run_wrapper,
            trial_info=trial_info,
            pure=False,  # two equal trials are two evaluations, never one shared future
            **dask_data_to_scatter,
        )
        self._pending_trials.append(future)
        self._trial_of[future.key] = trial_info

    def _wait_for_a_free_worker(self) -> None:
        start = last_log = time.monotonic()
        while self.count_available_workers() <= 0:
            if self._pending_trials:
                self._wait_pending(timeout=1.0)
                self._process_pending_trials()
                continue
            # Nothing runs and no worker is free: workers are (re)starting or still queued.
            waited = time.monotonic() - start
            if self._worker_timeout is not None and waited > self._worker_timeout:
                raise RuntimeError(
                    f"no Dask worker became available within {self._worker_timeout:.0f} s; check "
                    f"the cluster (dashboard: {self._client.dashboard_link}) or lower --n-workers"
                )
            if time.monotonic() - last_log > 60:
                logger.warning("waiting for a Dask worker (%.0f s so far)", waited)
                last_log = time.monotonic()
            time.sleep(0.5)

    def _wait_pending(self, timeout: float | None = None) -> None:
        from distributed import wait

        with contextlib.suppress(TimeoutError):
            wait(self._pending_trials, timeout=timeout, return_when="FIRST_COMPLETED")

    def wait(self) -> None:
        if self.is_running():
            self._wait_pending()

    def _process_pending_trials(self) -> None:
        done = [future for future in self._pending_trials if future.done()]
        for future in done:
            self._pending_trials.remove(future)
            trial_info = self._trial_of.pop(future.key)
            try:
                self._results_queue.append(future.result())
            except Exception as err:  # KilledWorker, a lost connection, a cancelled future
                logger.warning("trial %s lost its Dask worker: %r", dict(trial_info.config), err)
                self._results_queue.append((trial_info, self._lost_trial(err)))

    def _lost_trial(self, err: BaseException) -> TrialValue:
        now = time.time()
        return TrialValue(
            cost=self._crash_cost,
            status=StatusType.CRASHED,
            starttime=now,
            endtime=now,
            additional_info={
                "error": repr(err),
                "reason": f"the Dask worker running this trial died ({type(err).__name__}); "
                "Dask re-ran it and gave up",
            },
        )


@contextlib.contextmanager
def dask_client(
    n_workers: int = 1,
    *,
    scheduler_file: str | Path | None = None,
    client: Any | None = None,
    allowed_failures: int = ALLOWED_WORKER_FAILURES,
) -> Iterator[Any | None]:
    """The Dask client trials run on; ``None`` when they run in this process.

    * ``client`` given: used as is (its cluster decides the workers) and left open.
    * ``scheduler_file`` given: a client of that running cluster (``dask scheduler
      --scheduler-file F`` plus ``dask worker --scheduler-file F``, or dask-jobqueue), closed on
      exit; the cluster keeps running.
    * ``n_workers > 1``: a local cluster of ``n_workers`` processes with one trial each, whose
      workers may start the child processes of the trial limits; closed on exit.
    """
    if client is not None:
        yield client
        return
    import dask
    from distributed import Client, LocalCluster

    if scheduler_file is not None:
        path = check_scheduler_file(scheduler_file)
        try:
            remote = Client(scheduler_file=str(path), timeout="30s")
        except (OSError, TimeoutError) as err:  # nothing listens at the address, or not in time
            raise ValueError(
                f"could not reach the Dask scheduler named in {path} within 30 s ({err}); start "
                "the scheduler (`dask scheduler --scheduler-file F`) or pass the file of a "
                "running one"
            ) from None
        try:
            yield remote
        finally:
            remote.close()
        return
    if n_workers <= 1:
        yield None
        return
    settings = {
        # Trial limits run the target in a child process, which a daemonic worker may not start.
        "distributed.worker.daemon": False,
        "distributed.scheduler.allowed-failures": int(allowed_failures),
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive
        # mmap threshold: every tensor buffer is then mapped and unmapped afresh, and CPU training
        # runs 2.5-4x slower (measured: LeNet-5 on MNIST-5k, 2.1-2.6 s -> 5-10 s per 4-epoch trial).
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        local = Client(cluster)
    try:
        yield local
    finally:
        local.close()
        cluster.close()


def check_scheduler_file(scheduler_file: str | Path) -> Path:
    """``scheduler_file`` as a path, if it exists and holds a Dask scheduler's address."""
    path = Path(scheduler_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"scheduler file {path} does not exist; start the cluster first (`dask scheduler "
            f"--scheduler-file {path}` and `dask worker --scheduler-file {path}`) or drop "
            "--scheduler-file"
        )
    try:
        content = read_json(path)
    except ValueError:
        content = None
    if not isinstance(content, dict) or "address" not in content:
        raise ValueError(
            f"{path} is not a Dask scheduler file (no 'address'); pass the file written by "
            "`dask scheduler --scheduler-file` or client.write_scheduler_file()"
        )
    return path


class WithoutBudget:
    """``target(config, seed)`` for a ``target(config, seed, budget)`` run without budgets.

    A plain class (not a lambda or ``functools.partial``, whose signature still shows ``budget``)
    so that it pickles to Dask workers.
    """

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target = target

    def __call__(self, config: Any, seed: int = 0) -> Any:
        return self.target(config, seed=seed)

    @property
    def __code__(self) -> Any:
        # SMAC hashes the target's code into the run's meta: the wrapped target's, so runs made
        # before this wrapper existed still resume.
        return self.target.__code__


def make_runner(
    scenario: Scenario,
    target: Callable[..., Any],
    arguments: Sequence[str],
    client: Any | None = None,
    *,
    worker_timeout: float | None = LOCAL_WORKER_TIMEOUT,
) -> AbstractRunner:
    """A :class:`TrialRunner` for ``target``, on the Dask workers of ``client`` when given."""
    if "budget" not in arguments:
        # SMAC warns about every target argument it does not set; a search without budgets
        # evaluates at the max budget, which is what ``budget=None`` already means.
        target = WithoutBudget(target)
    runner = TrialRunner(scenario, target, required_arguments=list(arguments))
    if client is None:
        return runner
    return ResilientDaskRunner(runner, client, worker_timeout=worker_timeout)
