"""A persistent SQLite cache of model outputs, and a Backend wrapper that consults it first.

Keys are model + rendered prompt + choices (or generation settings), not the engine, so an experiment
re-run on another engine of the same model is free too. The model part is the backend's ``cache_key``: the
registry name, or a local model's path plus its weights' fingerprint (a retrained directory starts afresh). WAL mode and a busy timeout make it safe for
several processes (CLI runs, the HTTP service, workers) writing at once.

The first value stored for a key wins: a later write of the same key keeps the stored value, and the caller
gets that value back, so processes that computed a prompt at the same time (and may differ in the last bits,
e.g. bf16 under different batch shapes) all answer with one value. A file that SQLite finds damaged (not a
database, truncated, malformed pages), when opened or later, is renamed aside (``NAME.damaged-TIMESTAMP``, kept)
and replaced by an empty cache, with one warning. A place the cache cannot be opened in (a read-only directory,
a parent that is a file) means no cache, with one warning; a file that stops taking writes (read-only, disk
full) keeps answering what it holds, and stores nothing more, with one warning.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from rankwise.llm.protocol import Scores, Texts, call_usage, usage_of
from rankwise.types import Usage

log = logging.getLogger(__name__)
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_UNWRITABLE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_FULL,
               sqlite3.SQLITE_IOERR)


def default_cache_path() -> Path:
    root = Path(os.environ.get("RANKWISE_CACHE", Path.home() / ".cache" / "rankwise"))
    return root / "outputs.sqlite"


def open_cache(cache: "bool | str | Path | OutputCache | None") -> "OutputCache | None":
    """The store ``cache`` means: None for False/None, the default file for True, else a path or a store.
    None, with a one-line warning, where that file cannot be opened (the run goes on without a cache)."""
    if cache is False or cache is None:
        return None
    if isinstance(cache, OutputCache):
        return cache
    path = default_cache_path() if cache is True else Path(cache)
    try:
        return OutputCache(path)
    except (OSError, sqlite3.Error) as exc:
        if isinstance(exc, sqlite3.Error) and _code(exc) not in _UNWRITABLE:
            raise
        log.warning("cannot use the output cache %s (%s): running without a cache (set RANKWISE_CACHE or "
                    "--cache to a writable place)", path, _reason(exc))
        return None


def _code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (0 where it has none)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def embedding_key(model: str, kind: str, text: str) -> str:
    """The cache key of one embedding: model + query/document kind + text."""
    return _key("embed", model, kind, text)


def encode_vector(vector: np.ndarray) -> str:
    """A float32 vector as a base64 string (JSON-ready, exact)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class OutputCache:
    """Key -> JSON value store in one SQLite file."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._generation = 0  # bumped when a damaged file is replaced: threads then reopen
        self._recover_lock = threading.Lock()
        self._writable = True
        self._guarded(lambda conn: conn.execute("SELECT 1 FROM outputs LIMIT 1"))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            conn.close()
            conn = None
        if conn is None:
            self._local.generation = self._generation
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._local.conn = conn
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        return conn

    def _guarded(self, work: Callable[[sqlite3.Connection], object]):
        """``work(connection)``; if SQLite reports the file damaged, set it aside and run it once more on a
        fresh file."""
        generation = self._generation
        try:
            return work(self._conn())
        except sqlite3.DatabaseError as exc:
            if _code(exc) not in _DAMAGED:
                raise
            self._set_aside(generation, exc)
        return work(self._conn())

    def _set_aside(self, generation: int, exc: sqlite3.DatabaseError) -> None:
        with self._recover_lock:
            if generation != self._generation:
                return  # another thread has already replaced it
            self.close()
            kept = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.replace(f"{kept}{suffix}")
            self._generation += 1
            log.warning("the output cache %s is damaged (%s): moved it to %s and started an empty cache",
                        self.path, exc, kept)

    def get_many(self, keys: Sequence[str]) -> dict[str, object]:
        return self._guarded(lambda conn: self._get_many(conn, keys))

    @staticmethod
    def _get_many(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i:i + 500])
            rows = conn.execute(f"SELECT key, value FROM outputs WHERE key IN ({','.join('?' * len(chunk))})",
                                chunk).fetchall()
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, object]) -> dict[str, object]:
        """Store the items whose keys are new; returns the stored value of every item's key (the first
        value written wins)."""
        if not items:
            return {}
        if not self._writable:
            return dict(items)
        try:
            self._guarded(lambda conn: self._insert_new(conn, items))
        except sqlite3.OperationalError as exc:
            if _code(exc) not in _UNWRITABLE:
                raise
            self._writable = False
            log.warning("the output cache %s cannot be written (%s): storing nothing more in it", self.path, exc)
            return dict(items)
        stored = self.get_many(list(items))
        return {key: stored.get(key, value) for key, value in items.items()}

    @staticmethod
    def _insert_new(conn: sqlite3.Connection, items: dict[str, object]) -> None:
        for attempt in range(5):
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR IGNORE INTO outputs (key, value) VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in items.items()])
                conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if attempt == 4 or _code(exc) in _UNWRITABLE:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def __len__(self) -> int:
        return self._guarded(lambda conn: conn.execute("SELECT COUNT(*) FROM outputs").fetchone()[0])

    def batches(self, size: int = 5000) -> Iterator[dict[str, object]]:
        """Every entry, ``size`` at a time (to copy one cache into another)."""
        rows = self._conn().execute("SELECT key, value FROM outputs")
        while batch := rows.fetchmany(size):
            yield {key: json.loads(value) for key, value in batch}

    def close(self) -> None:
        """Close this thread's connection (another call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CachedBackend:
    """Wraps a Backend: answers from the cache where it can, sends only the misses to the model.

    Everything else (format_chat, count_tokens, attributes) is delegated to the wrapped backend.
    Cache hits add to ``usage.cache_hits`` and ``usage.calls`` but not to tokens or forward passes.
    """

    def __init__(self, backend, cache: OutputCache, model_key: str | None = None):
        self.backend = backend
        self.cache = cache
        self.model_key = model_key or getattr(backend, "cache_key", None) or backend.name

    def __getattr__(self, item):
        return getattr(self.backend, item)

    @property
    def usage(self) -> Usage:
        return self.backend.usage

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        keys = [_key("choice", self.model_key, p, list(choices)) for p in prompts]
        rows, used = self._through_cache(keys, lambda todo: _rows(self.backend.choice_logprobs(
            [prompts[i] for i in todo], choices), lambda row: row.tolist()))
        return Scores(np.array(rows, dtype=np.float32).reshape(len(prompts), len(choices)), used)

    def choice_logits(self, prompts: Sequence[str], choices: Sequence[str]) -> np.ndarray:
        keys = [_key("logit", self.model_key, p, list(choices)) for p in prompts]
        rows, used = self._through_cache(keys, lambda todo: _rows(self.backend.choice_logits(
            [prompts[i] for i in todo], choices), lambda row: row.tolist()))
        return Scores(np.array(rows, dtype=np.float32).reshape(len(prompts), len(choices)), used)

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> np.ndarray:
        keys = [_key("continuation", self.model_key, p, c) for p, c in zip(prompts, continuations)]
        values, used = self._through_cache(keys, lambda todo: _rows(self.backend.continuation_logprobs(
            [prompts[i] for i in todo], [continuations[i] for i in todo]), float))
        return Scores(np.array(values, dtype=np.float64), used)

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """A cross-encoder's score per (query, document), keyed by model + query + document."""
        keys = [_key("pair", self.model_key, q, d) for q, d in pairs]
        values, used = self._through_cache(keys, lambda todo: _rows(self.backend.score_pairs(
            [pairs[i] for i in todo]), float))
        return Scores(np.array(values, dtype=np.float64), used)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64,
                 stop: Sequence[str] | None = None) -> list[str]:
        keys = [_key("generate", self.model_key, p, max_new_tokens, list(stop or [])) for p in prompts]
        texts, used = self._through_cache(keys, lambda todo: _rows(
            self.backend.generate([prompts[i] for i in todo], max_new_tokens, stop), str))
        return Texts([str(x) for x in texts], used)

    def _through_cache(self, keys: Sequence[str], compute: Callable[[list[int]], tuple[list, Usage]]
                       ) -> tuple[list, Usage]:
        """The value of each key: from the cache, or from ``compute(indices of the misses)`` (one value per
        miss, in order, and the usage of computing them), which are then stored. Returns the values and the
        call's usage: the computed misses, plus the hits as calls and ``cache_hits``."""
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        used = call_usage(self.backend)
        fresh: dict[int, object] = {}
        if missing:
            values, computed = compute(missing)
            used.add(computed)
            stored = self.cache.put_many({keys[i]: value for i, value in zip(missing, values)})
            fresh = {i: stored[keys[i]] for i in missing}  # another process's earlier value, if it wrote first
        hits = len(keys) - len(missing)
        used.cache_hits += hits
        used.calls += hits
        self.backend.usage.cache_hits += hits
        self.backend.usage.calls += hits
        return [fresh[i] if i in fresh else found[k] for i, k in enumerate(keys)], used


def _rows(answer, convert: Callable) -> tuple[list, Usage]:
    """A primitive's answer as JSON-ready values, with the answer's usage."""
    return [convert(x) for x in answer], usage_of(answer)
