"""Executors without Ray: the cache shards workers write and the driver merges, the local executor, the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rankwise.cli import main
from rankwise.llm.cache import OutputCache
from rankwise.pipeline.executors.shards import (
    ShardCache,
    claim_slot,
    merge_shards,
    shard_dir_for,
    shard_path,
    worker_cache,
)


def test_workers_claim_distinct_slots_and_a_dead_workers_slot_is_reused(tmp_path):
    first, lock0 = claim_slot(tmp_path)
    second, lock1 = claim_slot(tmp_path)
    assert (first, second) == (0, 1)
    lock0.release()  # the worker of slot 0 died: its successor takes slot 0 (and finds its shard)
    again, lock = claim_slot(tmp_path)
    assert again == 0
    for held in (lock, lock1):
        held.release()


def test_a_shard_reads_itself_then_the_users_cache_and_writes_only_itself(tmp_path):
    user = OutputCache(tmp_path / "user.sqlite")
    user.put_many({"a": [1.0, 2.0], "b": "old"})
    shard = ShardCache(tmp_path / "shard.sqlite", [tmp_path / "user.sqlite", tmp_path / "missing.sqlite"])
    shard.put_many({"b": "text"})
    assert shard.get_many(["a", "b", "c"]) == {"a": [1.0, 2.0], "b": "text"}
    assert user.get_many(["b"]) == {"b": "old"} and len(user) == 2 and len(shard.bases) == 1


def test_a_restarted_worker_reads_what_a_dead_worker_left_in_any_slot(tmp_path):
    shards, user = tmp_path / "shards", tmp_path / "user.sqlite"
    _, dead, cache = worker_cache(shards, user)  # slot 0
    cache.put_many({"q1": [-0.1, -2.0]})
    _, live, _ = worker_cache(shards, user)  # slot 1
    dead.release()  # the worker of slot 0 dies; a replacement gets there first and takes slot 0
    _, replacement, _ = worker_cache(shards, user)
    slot, restarted, cache = worker_cache(shards, None)
    assert slot == 2 and cache.get_many(["q1", "q2"]) == {"q1": [-0.1, -2.0]}
    for lock in (live, replacement, restarted):
        lock.release()


def test_merge_copies_every_shard_exactly_and_removes_it(tmp_path):
    shards = shard_dir_for(tmp_path / "user.sqlite")
    assert shards == tmp_path / "user.sqlite.shards"
    values = {f"k{i}": [i * 0.1, -1e-7 * i, float(i) / 3] for i in range(1200)}
    keys = sorted(values)
    for slot, part in enumerate((keys[:700], keys[700:])):
        _, lock = claim_slot(shards)
        OutputCache(shard_path(shards, slot)).put_many({k: values[k] for k in part})
        lock.release()
    user = OutputCache(tmp_path / "user.sqlite")
    user.put_many({"old": "kept"})
    assert merge_shards(shards, user, wait_for={0, 1}) == 1200
    assert user.get_many(keys) == values and len(user) == 1201
    assert not list(shards.glob("*.sqlite*"))
    assert merge_shards(shards, user) == 0  # nothing left: merging again is free


def test_merge_leaves_a_live_workers_shard_alone(tmp_path):
    shards = tmp_path / "shards"
    _, live = claim_slot(shards)
    OutputCache(shard_path(shards, 0)).put_many({"x": 1})
    user = OutputCache(tmp_path / "user.sqlite")
    assert merge_shards(shards, user) == 0 and shard_path(shards, 0).exists()
    # one of this run's workers that does not exit in time: merged, but not removed under its feet
    assert merge_shards(shards, user, wait_for={0}, timeout=0.1) == 1
    assert user.get_many(["x"]) == {"x": 1} and shard_path(shards, 0).exists()
    live.release()


def test_merge_recovers_the_shard_of_a_worker_killed_before_any_checkpoint(tmp_path):
    shards = tmp_path / "shards"
    code = f"""
        import os
        from pathlib import Path
        from rankwise.pipeline.executors.shards import claim_slot, shard_path
        from rankwise.llm.cache import OutputCache
        slot, lock = claim_slot(Path({str(shards)!r}))
        OutputCache(shard_path(Path({str(shards)!r}), slot)).put_many({{"q1-p1": [-0.5, -1.5]}})
        os._exit(0)  # no close, no checkpoint: the entry lives only in the WAL file
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    user = OutputCache(tmp_path / "user.sqlite")
    assert merge_shards(shards, user, wait_for={0}) == 1
    assert user.get_many(["q1-p1"]) == {"q1-p1": [-0.5, -1.5]}


def test_a_run_names_its_cache():
    pytest.importorskip("ray")
    from rankwise.pipeline.executors.ray import _cache_path

    assert _cache_path(False) is None
    assert _cache_path("/tmp/c.sqlite").name == "c.sqlite"
    assert _cache_path(True).name == "outputs.sqlite"


@pytest.mark.parametrize("args, message", [
    (["--executor", "spark"], "unknown executor 'spark'"),
    (["--workers", "2"], "--workers only apply to --executor ray"),
    (["--address", "auto", "--gpus-per-worker", "1"], "--address, --gpus-per-worker only apply to --executor ray"),
    (["--executor", "ray", "--workers", "0"], "--workers must be at least 1"),
])
def test_cli_names_a_bad_executor_option(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["rerank", "--method", "pointwise.yes_no", "--model", "smollm2-135m",
              "--output", str(tmp_path / "out.trec"), "--candidates", str(tmp_path / "none.jsonl"), *args])
    assert done.value.code == 2
    assert message in capsys.readouterr().err
