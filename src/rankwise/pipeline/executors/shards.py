"""Cache shards for distributed workers: one SQLite file per worker, merged into the user's cache.

Each worker claims a free slot ``worker-<i>`` in a shard directory by holding ``worker-<i>.lock`` for its
whole life (an OS file lock, so it is released when the process dies). It writes what it computes to
``worker-<i>.sqlite`` and reads that shard first, then the user's cache, then every other shard that existed
when it started: so a worker restarted after a crash (in whatever slot) finds what the dead worker had
already computed. The driver merges every shard whose lock it can take into the user's cache and removes it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from filelock import FileLock, Timeout

from rankwise.llm.cache import OutputCache

log = logging.getLogger(__name__)

_PREFIX = "worker-"


def shard_dir_for(cache_path: Path) -> Path:
    """Where the workers of runs that fill ``cache_path`` keep their shards (beside it)."""
    return cache_path.with_name(cache_path.name + ".shards")


def shard_path(shard_dir: Path, slot: int) -> Path:
    return shard_dir / f"{_PREFIX}{slot}.sqlite"


def _lock_path(shard_dir: Path, slot: int) -> Path:
    return shard_dir / f"{_PREFIX}{slot}.lock"


def claim_slot(shard_dir: Path) -> tuple[int, FileLock]:
    """The lowest free slot in ``shard_dir`` and its held lock (keep the lock for the worker's life)."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        lock = FileLock(_lock_path(shard_dir, slot))
        try:
            lock.acquire(timeout=0)
            return slot, lock
        except Timeout:
            slot += 1


class ShardCache(OutputCache):
    """An OutputCache writing to one worker's shard, reading the shard and then, in order, other caches."""

    def __init__(self, path: str | Path, bases: Sequence[str | Path] = ()):
        super().__init__(path)
        self.bases = [OutputCache(b) for b in bases if Path(b).is_file() and Path(b) != self.path]

    def get_many(self, keys: Sequence[str]) -> dict[str, object]:
        found = super().get_many(keys)
        for base in self.bases:
            missing = [k for k in keys if k not in found]
            if not missing:
                break
            found.update(base.get_many(missing))
        return found


def worker_cache(shard_dir: Path, user_cache: Path | None) -> tuple[int, FileLock, ShardCache]:
    """A worker's slot, its held lock, and its cache: its shard, then the user's cache and the other shards."""
    slot, lock = claim_slot(shard_dir)
    others = [shard_path(shard_dir, s) for s in _slots(shard_dir) if s != slot]
    return slot, lock, ShardCache(shard_path(shard_dir, slot), [*([user_cache] if user_cache else []), *others])


def _slots(shard_dir: Path) -> list[int]:
    slots = set()
    for path in shard_dir.glob(f"{_PREFIX}*.sqlite"):
        suffix = path.stem[len(_PREFIX):]
        if suffix.isdigit():
            slots.add(int(suffix))
    return sorted(slots)


def merge_shard(shard: Path, into: OutputCache, chunk: int = 5000) -> int:
    """Copy every entry of the shard file into ``into``; the number of entries copied."""
    source = OutputCache(shard)
    copied = 0
    try:
        for batch in source.batches(chunk):
            into.put_many(batch)
            copied += len(batch)
    finally:
        source.close()
    return copied


def _remove(shard_dir: Path, slot: int) -> None:
    path = shard_path(shard_dir, slot)
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def merge_shards(shard_dir: Path, into: OutputCache, wait_for: Iterable[int] = (),
                 timeout: float = 60.0) -> int:
    """Merge the shards in ``shard_dir`` into ``into`` and remove them; the number of entries copied.

    A shard is merged only once its worker is gone (its lock can be taken): the slots in ``wait_for``
    (this run's workers, about to exit) are waited for up to ``timeout`` seconds each; any other slot that
    is still held belongs to a live worker of another run and is left alone.
    """
    if not shard_dir.is_dir():
        return 0
    waited = set(wait_for)
    copied = 0
    for slot in _slots(shard_dir):
        lock = FileLock(_lock_path(shard_dir, slot))
        try:
            lock.acquire(timeout=timeout if slot in waited else 0)
        except Timeout:
            if slot in waited:
                log.warning("worker %d still holds its cache shard after %.0f s; merging it anyway", slot, timeout)
                copied += merge_shard(shard_path(shard_dir, slot), into)
            continue
        try:
            copied += merge_shard(shard_path(shard_dir, slot), into)
            _remove(shard_dir, slot)
        finally:
            lock.release()
    return copied
