"""An on-disk cache of checkpoints (dense and pruned models, trial states), safe across processes.

Entries are keyed by a hash of *everything that determines them* (the caller passes that as a
JSON-able dict). Each entry is a ``torch.save`` payload plus a sidecar JSON holding its SHA-256 and
the key it was built from, so a corrupt or truncated payload is detected and rebuilt instead of
silently loaded. Builders run under a per-entry file lock: two processes asking for the same entry
build it once, and a reader never sees a half-written file (writes are atomic).

Besides the build-once entries (:meth:`CheckpointCache.get_or_create`) the cache holds replaceable
ones (:meth:`~CheckpointCache.store`, :meth:`~CheckpointCache.fetch`,
:meth:`~CheckpointCache.remove`): the continuation states of fine-tuning trials, which a longer
trial of the same configuration overwrites. Those live under a common directory that is kept
under a byte cap by evicting the least recently used entries (:meth:`~CheckpointCache.evict`), and
:meth:`~CheckpointCache.clear` removes a whole kind when a run is done with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from safs_smac._io import (
    atomic_write_bytes,
    atomic_write_json,
    file_lock,
    sha256_bytes,
    torch_bytes,
)

__all__ = ["CheckpointCache", "cache_key", "default_cache_dir"]

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$SAFS_SMAC_CACHE`` if set, else ``~/.cache/safs-smac``."""
    env = os.environ.get("SAFS_SMAC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "safs-smac"


def cache_key(fields: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-able mapping (key order does not matter)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


class CheckpointCache:
    """Checksummed, lock-protected ``torch.save`` payloads under ``root/<kind>/<key>.pt``.

    Parameters
    ----------
    root
        Cache directory; created on first write.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def paths(self, kind: str, fields: Mapping[str, Any]) -> tuple[Path, Path]:
        """Payload and sidecar paths of the entry for ``fields``."""
        key = cache_key(fields)
        base = self.root / kind / key
        return base.with_suffix(".pt"), base.with_suffix(".json")

    def fetch(self, kind: str, fields: Mapping[str, Any]) -> Any | None:
        """Like :meth:`load`, under the entry's lock (a concurrent :meth:`store` is never seen
        half-way), and marking the entry as recently used for :meth:`evict`."""
        payload_path, _ = self.paths(kind, fields)
        if not payload_path.exists():  # the common miss, without creating a lock file
            return None
        with file_lock(payload_path):
            payload = self.load(kind, fields)
            if payload is not None:
                with contextlib.suppress(OSError):  # evicted in between: still a valid payload
                    os.utime(payload_path)
            return payload

    def store(self, kind: str, fields: Mapping[str, Any], payload: Any) -> int:
        """Write (or replace) the entry for ``fields``; returns the payload's size in bytes."""
        payload_path, meta_path = self.paths(kind, fields)
        data = torch_bytes(payload)
        with file_lock(payload_path):
            atomic_write_bytes(payload_path, data)
            atomic_write_json(meta_path, {"sha256": sha256_bytes(data), "key": dict(fields)})
        return len(data)

    def remove(self, kind: str, fields: Mapping[str, Any]) -> bool:
        """Delete the entry for ``fields``; ``True`` if there was one."""
        payload_path, meta_path = self.paths(kind, fields)
        if not payload_path.exists() and not meta_path.exists():
            return False
        # The lock file stays: deleting it while another process waits on it would let a third
        # process lock a new file at the same path. clear() removes lock files with the folder.
        with file_lock(payload_path):
            existed = _unlink(payload_path)
            _unlink(meta_path)
        return existed

    def clear(self, kind: str) -> int:
        """Delete every entry under ``kind`` (a directory, may be nested); returns bytes freed."""
        folder = self.root / kind
        if not folder.is_dir():
            return 0
        freed = sum(path.stat().st_size for path in _payloads(folder))
        shutil.rmtree(folder, ignore_errors=True)
        return freed

    def evict(self, kind: str, max_bytes: int) -> int:
        """Delete the least recently used payloads under ``kind`` (recursively) until they take at
        most ``max_bytes``; returns the number of entries deleted.

        Deleting the payload first makes an entry absent for every reader at once (a reader that
        already holds the bytes still checks them against the sidecar), so eviction never takes
        the entries' locks; the eviction lock only keeps two evicting processes from racing.
        """
        folder = self.root / kind
        if not folder.is_dir():
            return 0
        deleted = 0
        with file_lock(folder / ".evict"):
            entries = []
            for path in _payloads(folder):
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    entries.append((stat.st_mtime_ns, stat.st_size, path))
            total = sum(size for _, size, _ in entries)
            for _, size, path in sorted(entries):
                if total <= max_bytes:
                    break
                if _unlink(path):
                    deleted += 1
                    logger.info("continuation cache over its cap: evicted %s", path.name)
                _unlink(path.with_suffix(".json"))
                total -= size
        return deleted

    def size(self, kind: str) -> int:
        """Bytes taken by the payloads under ``kind`` (recursively)."""
        folder = self.root / kind
        total = 0
        for path in _payloads(folder) if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def load(self, kind: str, fields: Mapping[str, Any]) -> Any | None:
        """The cached payload, or ``None`` when absent or corrupt (a corrupt entry is logged)."""
        payload_path, meta_path = self.paths(kind, fields)
        if not payload_path.exists() or not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = payload_path.read_bytes()
        except (OSError, json.JSONDecodeError):
            logger.warning("cache entry %s is unreadable; rebuilding it", payload_path)
            return None
        if meta.get("sha256") != sha256_bytes(data):
            logger.warning("cache entry %s failed its checksum; rebuilding it", payload_path)
            return None
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)

    def get_or_create(
        self, kind: str, fields: Mapping[str, Any], build: Callable[[], Any]
    ) -> tuple[Any, bool]:
        """Return ``(payload, was_cached)``, building and storing the entry on a miss.

        The lock makes concurrent callers wait for the first builder instead of duplicating work.
        """
        payload_path, meta_path = self.paths(kind, fields)
        with file_lock(payload_path):
            cached = self.load(kind, fields)
            if cached is not None:
                logger.info("cache hit: %s %s", kind, payload_path.name)
                return cached, True
            logger.info("cache miss: building %s %s", kind, payload_path.name)
            payload = build()
            data = torch_bytes(payload)
            # Payload first, sidecar second: a crash in between leaves an entry without a valid
            # sidecar, which load() treats as absent.
            atomic_write_bytes(payload_path, data)
            atomic_write_json(meta_path, {"sha256": sha256_bytes(data), "key": dict(fields)})
            return payload, False


def _payloads(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*.pt") if path.is_file()]


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
