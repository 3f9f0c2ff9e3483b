"""A damaged cache file never ends a run: it is set aside (kept), replaced by an empty cache, with a warning.
And concurrent writers of one key agree: the first value stored wins and every writer gets it back."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from rankwise.llm.cache import CachedBackend, OutputCache
from tests.tiny_lm import tiny_backend

CHOICES = ["Yes", "No"]


def _filled(path, n: int = 3000) -> dict:
    """A real cache file with n entries of ~200 bytes (many pages), closed."""
    items = {f"key{i}": [float(i)] * 20 for i in range(n)}
    cache = OutputCache(path)
    cache.put_many(items)
    cache._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.close()
    return items


def _damage(path, how: str) -> bytes:
    data = path.read_bytes()
    if how == "truncated":
        data = data[:len(data) // 3]
    elif how == "garbage":
        data = b"this is not a database\n" * 200
    else:  # "corrupt pages": the header and schema intact, table pages in the middle overwritten
        page = 4096
        middle = (len(data) // page // 2) * page
        data = data[:middle] + b"\xff\x13garbage" * (3 * page // 9) + data[middle + 3 * page:]
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("how", ["truncated", "garbage", "corrupt pages"])
def test_a_damaged_file_is_kept_aside_and_replaced(tmp_path, caplog, how):
    path = tmp_path / "outputs.sqlite"
    items = _filled(path)
    damaged = _damage(path, how)
    with caplog.at_level(logging.WARNING, logger="rankwise.llm.cache"):
        cache = OutputCache(path)
        found = cache.get_many(list(items))  # the corrupt pages are only met when read
    assert found == {} or how == "corrupt pages" and len(found) < len(items)
    aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # the user's file, untouched
    assert [r.message for r in caplog.records if "damaged" in r.message][0].startswith(
        f"the output cache {path} is damaged")
    cache.put_many({"new": [1.0]})
    assert cache.get_many(["new"]) == {"new": [1.0]} and len(cache) == 1


def test_a_run_over_a_damaged_cache_recomputes(tmp_path):
    path = tmp_path / "outputs.sqlite"
    backend = tiny_backend(dtype="float32")
    prompts = [backend.format_chat(f"passage {i} about Paris") for i in range(4)]
    first = CachedBackend(backend, OutputCache(path)).choice_logprobs(prompts, CHOICES)
    OutputCache(path)._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _damage(path, "truncated")
    again = CachedBackend(backend, OutputCache(path)).choice_logprobs(prompts, CHOICES)
    np.testing.assert_array_equal(first, again)
    assert again.usage.cache_hits == 0


def test_a_busy_database_is_not_mistaken_for_damage(tmp_path):
    path = tmp_path / "outputs.sqlite"
    cache = OutputCache(path)
    with pytest.raises(sqlite3.OperationalError):
        cache._guarded(lambda conn: conn.execute("SELECT * FROM no_such_table"))
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_the_first_value_written_wins_and_the_writer_gets_it(tmp_path):
    first, second = OutputCache(tmp_path / "c.sqlite"), OutputCache(tmp_path / "c.sqlite")
    assert first.put_many({"k": [0.25]}) == {"k": [0.25]}
    assert second.put_many({"k": [0.2500001], "other": [1.0]}) == {"k": [0.25], "other": [1.0]}
    assert first.get_many(["k"]) == {"k": [0.25]}


WRITER = """
import sys
import numpy as np
from rankwise.llm.cache import CachedBackend, OutputCache
from tests.tiny_lm import tiny_backend
backend = tiny_backend(dtype="float32")
prompts = [backend.format_chat(f"passage {i} about Paris") for i in range(40)]
cached = CachedBackend(backend, OutputCache(sys.argv[1]))
noise = float(sys.argv[2])  # stands for a process whose last bits differ (another batch shape, dtype)
cached.backend.choice_logprobs = lambda p, c, f=backend.choice_logprobs: f(p, c) + noise
np.save(sys.argv[3], np.asarray(cached.choice_logprobs(prompts, ["Yes", "No"])))
"""


def test_two_processes_computing_the_same_prompts_answer_alike(tmp_path):
    path = tmp_path / "c.sqlite"
    OutputCache(path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), noise, str(tmp_path / f"{i}.npy")])
             for i, noise in enumerate(("0", "1e-3"))]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    np.testing.assert_array_equal(np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy"))
