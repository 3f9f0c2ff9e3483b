"""`rankwise rerank --executor ray` on a real local Ray cluster: the single-process run, even when a worker dies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rankwise[ray]')")

from rankwise.data import load_dataset, read_run, write_candidates_jsonl  # noqa: E402
from rankwise.llm.cache import OutputCache  # noqa: E402
from rankwise.pipeline import Rerank, run  # noqa: E402
from rankwise.types import Candidate, Query, Request  # noqa: E402

MODEL, METHOD, TOP_K, QUERIES, BATCH = "smollm2-135m", "pointwise.yes_no", 10, 4, 4
PROMPTS = QUERIES * TOP_K


def test_requests_travel_to_workers_unchanged():
    request = Request(Query("q1", "what is é?"),
                      (Candidate("d1", "text\n1", 12.25, "Title"), Candidate("d2", "", -0.1)))
    assert Request.from_dict(json.loads(json.dumps(request.to_dict()))) == request


STAGE = Rerank(METHOD, MODEL, top_k=TOP_K, engine="transformers", dtype="float32", backend_options={"batch_size": BATCH})


@pytest.fixture(scope="module")
def cluster():
    """A local two-CPU Ray cluster for this module; its address lets CLI processes join it."""
    context = ray.init(num_cpus=2, include_dashboard=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def subset(dl19, tmp_path_factory):
    """The first judged DL19 queries with their BM25 top-100 (the top-10 reranked), as a candidates file."""
    ds = load_dataset(str(dl19))
    requests = [r for r in ds.requests("bm25") if r.query.qid in ds.qrels][:QUERIES]
    path = tmp_path_factory.mktemp("subset") / "candidates.jsonl"
    write_candidates_jsonl(requests, path)
    return path, requests


@pytest.fixture(scope="module")
def reference(subset, tmp_path_factory):
    """The run of the single-process path."""
    return run(STAGE, subset[1], cache=tmp_path_factory.mktemp("ref") / "cache.sqlite").run()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rankwise.cli", "rerank", "--method", METHOD, "--model", MODEL,
            "--engine", "transformers", "--dtype", "float32", "--top-k", str(TOP_K), "--batch-size", str(BATCH),
            *args]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.mark.slow
def test_ray_run_is_the_single_process_run_and_fills_the_users_cache(cluster, subset, reference, tmp_path):
    out, usage, cache = tmp_path / "ray.trec", tmp_path / "ray.json", tmp_path / "cache.sqlite"
    done = subprocess.run(_cli("--candidates", str(subset[0]), "--output", str(out), "--usage", str(usage),
                               "--cache", str(cache), "--executor", "ray", "--address", cluster, "--workers", "2"),
                          capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr
    run = read_run(out)
    assert run == reference and list(run) == list(reference)
    assert all(len(docs) == 100 for docs in run.values())

    report = json.loads(usage.read_text())
    assert report["executor"] == "ray" and report["calls"] == PROMPTS and report["queries"] == QUERIES
    assert report["engine"] == "transformers" and set(report["per_query"]) == set(reference)
    workers = report["per_worker"]
    assert len(workers) == report["workers"] and sum(w["queries"] for w in workers.values()) == QUERIES
    for key in ("calls", "prompt_tokens", "computed_tokens", "forward_passes"):
        assert sum(w[key] for w in workers.values()) == report[key]

    # the shards were merged into the user's cache: the same experiment in one process computes nothing
    assert len(OutputCache(cache)) == PROMPTS and not list((tmp_path / "cache.sqlite.shards").glob("*.sqlite"))
    again = subprocess.run(_cli("--candidates", str(subset[0]), "--output", str(tmp_path / "local.trec"),
                                "--usage", str(tmp_path / "local.json"), "--cache", str(cache)),
                           capture_output=True, text=True, env=_env(), timeout=600)
    assert again.returncode == 0, again.stderr
    local = json.loads((tmp_path / "local.json").read_text())
    assert local["cache_hits"] == PROMPTS and local["computed_tokens"] == 0
    assert read_run(tmp_path / "local.trec") == run


def _entries(shard: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{shard}?mode=ro", uri=True, timeout=1)) as conn:
            return conn.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_a_worker_mid_task(shards: Path, stop: threading.Event, killed: dict) -> None:
    """SIGKILL the first Ray worker process whose shard holds a finished query (its task holds two)."""
    import psutil

    while not stop.is_set():
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid() or not proc.name().startswith("ray::"):
                    continue
                files = [Path(f.path) for f in proc.open_files()]
            except (psutil.Error, OSError):
                continue
            for path in files:
                entries = _entries(path) if path.parent == shards and path.suffix == ".sqlite" else 0
                if entries:
                    killed.update(pid=proc.pid, shard=path.name, entries=entries)
                    os.kill(proc.pid, signal.SIGKILL)
                    return
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_task_is_restarted_and_its_finished_query_is_not_recomputed(cluster, subset,
                                                                                         reference, tmp_path):
    stop, killed = threading.Event(), {}
    killer = threading.Thread(target=_kill_a_worker_mid_task, args=(tmp_path / "cache.sqlite.shards", stop, killed))
    killer.start()
    try:  # two tasks of two queries: each worker dies, if at all, with one query of its task finished
        result = run(STAGE, subset[1], executor="ray", cache=tmp_path / "cache.sqlite", workers=2, queries_per_task=2)
    finally:
        stop.set()
        killer.join()
    assert killed == {"pid": killed["pid"], "shard": killed["shard"], "entries": TOP_K}, killed
    finished = result.run()
    assert finished == reference and list(finished) == list(reference)  # complete and identical

    # the restarted worker claimed the dead one's shard and found the finished query there
    report = result.usage_report()
    per_worker = {k: (w["pids"], w["queries"], w["cache_hits"]) for k, w in report["per_worker"].items()}
    assert report["cache_hits"] == TOP_K and report["calls"] == PROMPTS, (killed, per_worker)
    restarted = report["per_worker"][killed["shard"].removesuffix(".sqlite")]
    assert killed["pid"] not in restarted["pids"] and restarted["cache_hits"] == TOP_K
    assert len(OutputCache(tmp_path / "cache.sqlite")) == PROMPTS


@pytest.mark.slow
def test_bench_cells_on_ray_equal_the_in_process_cells(cluster, tmp_path):
    """`rankwise bench --executor ray`: the same cells (metrics, counts, robustness) as in this process."""
    from rankwise.bench import BenchConfig, in_process, on_ray, run_bench

    config = BenchConfig.from_dict({"datasets": ["dl19"], "top_k": 5, "max_queries": 2, "models": [MODEL],
                                    "methods": [METHOD], "backend": {"engine": "transformers", "dtype": "float32"},
                                    "robustness": {"shuffles": 1, "adversarial": True}, "cache": False})
    here = run_bench(config, tmp_path / "here", log=lambda _: None, rerank=in_process(config))
    there = run_bench(config, tmp_path / "ray", log=lambda _: None, rerank=on_ray(config, workers=2, progress=False))
    for a, b in zip(here, there):
        assert a["metrics"] == pytest.approx(b["metrics"])
        assert a.get("per_query") == b.get("per_query")
        assert a.get("adversarial", {}).get("ranks") == b.get("adversarial", {}).get("ranks")
        assert a.get("shuffles", {}).get("ndcg10") == pytest.approx(b.get("shuffles", {}).get("ndcg10"))

