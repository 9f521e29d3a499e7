"""One process per run directory: an advisory lock held for the whole search.

The lock is an ``fcntl`` lock on ``<run dir>/.safs-smac.lock``, so the operating system releases
it when its process ends, however it ends: a killed run never leaves a stale lock behind. The
file holds who took it (process id, host, start time), for the error the next process prints.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LOCK_NAME", "RunDirectoryBusy", "RunLock"]

LOCK_NAME = ".safs-smac.lock"


class RunDirectoryBusy(ValueError):
    """Another process holds the run directory."""


class RunLock:
    """Exclusive lock on a run directory (a context manager).

    ``flock`` locks belong to an open file, so a second lock on the same directory is refused in
    the same process too (two threads of one program are two runs).

    Parameters
    ----------
    run_dir
        The run directory; created when missing.
    wait
        Seconds to wait for another holder to finish (0: refuse at once).
    """

    def __init__(self, run_dir: str | Path, *, wait: float = 0.0) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.wait = float(wait)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, waiting up to ``wait`` seconds; :class:`RunDirectoryBusy` if held."""
        import fcntl

        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:  # read-only, inside a file, name too long, ...
            raise ValueError(
                f"output directory {self.run_dir} is not writable ({err.strerror or err}); "
                "choose another --output-dir"
            ) from None
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise RunDirectoryBusy(
                        f"output directory {self.run_dir} is in use by {self.holder()}; wait "
                        "for that run to finish (or stop it), or choose another --output-dir"
                    ) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        # The holder is written only by the process that holds the lock, so a refused process
        # never truncates it.
        os.ftruncate(fd, 0)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the file stays: removing it would race with the next holder)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def holder(self) -> str:
        """Who holds the lock, in words (as far as the lock file says)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
            return f"process {int(info['pid'])} on {info['host']} (since {since})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"
