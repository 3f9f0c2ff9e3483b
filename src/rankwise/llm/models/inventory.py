"""What the rankwise cache (``$RANKWISE_CACHE``, else ``~/.cache/rankwise``) holds, and pruning what rebuilds.

Entries: transformers directories converted from GGUF files (``hf/<stem>-<sha8>``, rebuilt on next use in
15-80 s, so prunable), model directories extracted from zips (``hf/``), GGUF files assembled from split
packages (``gguf/``), the output cache (``outputs.sqlite``) and small bookkeeping files.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rankwise.llm.models.catalogue import cache_dir

LAST_USE = ".rankwise-last-use"  # touched each time a converted directory is handed to an engine
SOURCE = "rankwise-source.json"  # written by the GGUF conversion


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    kind: str  # converted | extracted | assembled GGUF | output cache | other
    bytes: int
    last_used: float  # seconds since the epoch
    rebuildable: bool  # removed by prune: rankwise rebuilds it on next use
    note: str = ""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _last_used(path: Path) -> float:
    marker = path / LAST_USE
    return marker.stat().st_mtime if marker.is_file() else path.stat().st_mtime


def touch_last_use(directory: Path) -> None:
    """Record that ``directory`` was used now (best effort: a read-only cache is left alone)."""
    try:
        (directory / LAST_USE).touch()
    except OSError:
        pass


def _hf_entry(path: Path) -> CacheEntry:
    source = path / SOURCE
    if source.is_file():
        try:
            info = json.loads(source.read_text())
            note = f"from {info['gguf_file']} ({info.get('dtype', 'float32')})"
        except (ValueError, KeyError, OSError):
            note = "from a GGUF file"
        return CacheEntry(path, "converted", _size(path), _last_used(path), True, note)
    return CacheEntry(path, "extracted", _size(path), _last_used(path), False, "from a zipped model")


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache, largest first; hidden files (locks, temporary directories) are skipped."""
    root = root or cache_dir()
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.name == "hf" and path.is_dir():
            entries += [_hf_entry(p) for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        elif path.name == "gguf" and path.is_dir():
            entries += [CacheEntry(p, "assembled GGUF", _size(p), p.stat().st_mtime, False,
                                   "from split PyPI packages") for p in sorted(path.iterdir())
                        if p.is_file() and not p.name.startswith(".")]
        elif path.name.startswith("outputs.sqlite"):
            entries.append(CacheEntry(path, "output cache", _size(path), path.stat().st_mtime, False,
                                      "model answers (--no-cache skips it)"))
        else:
            entries.append(CacheEntry(path, "other", _size(path), path.stat().st_mtime, False))
    return sorted(entries, key=lambda e: -e.bytes)


def prune(entries: list[CacheEntry]) -> int:
    """Remove the rebuildable entries (under their conversion lock); return the bytes freed."""
    from rankwise.llm.models.fetching import _lock

    freed = 0
    for entry in entries:
        if not entry.rebuildable:
            continue
        with _lock(entry.path):
            shutil.rmtree(entry.path, ignore_errors=True)
        freed += entry.bytes
    return freed


def human_bytes(n: int) -> str:
    """1234567 -> '1.2 MB' (powers of 1000)."""
    if n < 1000:
        return f"{n} B"
    size = n / 1000
    for unit in ("KB", "MB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def ago(seconds_since_epoch: float, now: float | None = None) -> str:
    """'3 min ago', '2 h ago', '5 days ago'."""
    delta = max(0.0, (now or time.time()) - seconds_since_epoch)
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    if delta < 86400:
        return f"{delta / 3600:.0f} h ago"
    return f"{delta / 86400:.0f} days ago"
