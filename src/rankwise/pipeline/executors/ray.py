"""The Ray executor: requests become a Ray Data dataset reranked by a pool of actors.

Each actor builds the stage once from its pipeline spec (the same dict a YAML file holds), with ``threads``
torch threads (``num_cpus`` for Ray's scheduler) and ``gpus`` GPUs, and runs :func:`rankwise.pipeline.run`
on one block of requests per task. What travels is the project's own JSON: ``Request.to_dict`` out,
``Ranking.to_dict`` back. Ray restarts an actor that dies and retries its task: Ray Data gives pool actors
``max_restarts=-1`` and ``max_task_retries=-1`` (Ray 2.60), and tests/e2e/test_ray_executor.py checks that a
killed worker is replaced. The restarted actor finds what its predecessor computed in the cache shards (see
:mod:`rankwise.pipeline.executors.shards`), so no finished prompt is computed twice. The driver collects the
rankings in request order, so the run file and the usage report are those of the in-process run, with a
``per_worker`` section added.

Needs ``pip install 'rankwise[ray]'``; nothing else in rankwise imports this module.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from rankwise.errors import InputError
from rankwise.pipeline.executors.shards import merge_shards, shard_dir_for, worker_cache
from rankwise.pipeline.result import RunResult, StageReport
from rankwise.stage import Stage
from rankwise.types import Ranking, Request, Usage

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise InputError("the ray executor needs Ray: pip install 'rankwise[ray]'") from exc

# Environment the workers need to see what the driver sees (data and model roots, cache, offline hub).
_FORWARDED_ENV = ("RANKWISE_", "HF_", "TRANSFORMERS_", "OMP_WAIT_POLICY")


def _cache_path(cache: bool | str | Path) -> Path | None:
    """The user's cache file, or None when caching is off."""
    if cache is False:
        return None
    if cache is True:
        from rankwise.llm.cache import default_cache_path

        return default_cache_path()
    return Path(cache).resolve()


def _portable(spec: dict) -> dict:
    """The pipeline spec with local model paths made absolute (workers do not share the driver's cwd)."""
    def fix(node):
        if isinstance(node, dict):
            out = {k: fix(v) for k, v in node.items()}
            if isinstance(out.get("model"), str) and Path(out["model"]).exists():
                out["model"] = str(Path(out["model"]).resolve())
            return out
        return [fix(x) for x in node] if isinstance(node, list) else node
    return fix(spec)


class RunWorker:
    """A Ray Data actor: builds the stage once from its spec, then runs batches of requests through
    :func:`rankwise.pipeline.run` (the same loop as in-process)."""

    def __init__(self, spec: dict, shard_dir: str | None, user_cache: str | None, threads: int, query_batch: int):
        import torch

        from rankwise.pipeline.loading import Backends
        from rankwise.pipeline.spec import from_dict

        torch.set_num_threads(threads)
        self.host, self.pid = socket.gethostname(), os.getpid()
        cache: object = False
        if shard_dir is not None:
            self.slot, self._lock, cache = worker_cache(Path(shard_dir), Path(user_cache) if user_cache else None)
        else:
            self.slot, self._lock = self.pid, None
        self.stage = from_dict(spec)
        self.backends = Backends(cache=cache)
        self.query_batch = query_batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from rankwise.pipeline.run import run

        requests = [Request.from_dict(json.loads(str(text))) for text in batch["request"]]
        result = run(self.stage, requests, backends=self.backends, query_batch=self.query_batch)
        payload = {"rankings": [result.rankings[r.query.qid].to_dict() for r in requests],
                   "stages": [s.to_dict() for s in result.stages],
                   "worker": self.slot, "host": self.host, "pid": self.pid}
        return {"index": np.asarray(batch["index"][:1]), "result": np.asarray([json.dumps(payload)], dtype=object),
                "indices": np.asarray([json.dumps([int(i) for i in batch["index"]])], dtype=object)}


def _ranking(request: Request, data: dict) -> Ranking:
    """A worker's ranking over the request's own candidates (first-stage scores kept on the candidates)."""
    by_id = {c.docid: c for c in request.candidates}
    docids = [c["docid"] for c in data["candidates"]]
    if sorted(docids) != sorted(by_id):
        raise RuntimeError(f"method dropped or duplicated candidates for query {request.query.qid}")
    return Ranking(request.query, tuple(by_id[d] for d in docids), tuple(c["score"] for c in data["candidates"]),
                   Usage.from_dict(data["usage"]))


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV)}


def run_on_ray(stage: Stage, requests: Sequence[Request], *, cache: bool | str | Path = True, query_batch: int = 1,
               workers: int = 2, address: str | None = None, threads_per_worker: int | None = None,
               gpus_per_worker: float = 0.0, queries_per_task: int | None = None,
               progress: bool = False) -> RunResult:
    """Run ``stage`` over ``requests`` on a Ray cluster with ``workers`` actors; the in-process rankings.

    ``address``: None starts a local Ray (or joins the one this process already runs), "auto" joins the
    cluster of this node, "ray://host:10001" a remote one through Ray Client. ``threads_per_worker``:
    default the cluster's CPUs divided by ``workers``. ``queries_per_task``: how many queries one actor task
    reranks (default: the queries spread over 32 tasks per worker); the task of a worker that dies is
    redone, its finished queries from the worker's cache shard. With a cache, shards live beside the cache
    file, which must be on storage every worker and the driver share (see docs/ray.md).
    """
    from rankwise.pipeline.spec import to_dict

    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if queries_per_task is not None and queries_per_task < 1:
        raise InputError(f"queries_per_task must be at least 1, got {queries_per_task}")
    if not requests:
        raise InputError("no queries to rerank")
    spec = _portable(to_dict(stage))  # a stage that cannot be written to a file cannot travel either
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    try:
        return _run(stage, spec, requests, _cache_path(cache), query_batch, workers, threads_per_worker,
                    gpus_per_worker, queries_per_task, progress)
    finally:
        if started:
            ray.shutdown()


def _run(stage: Stage, spec: dict, requests: Sequence[Request], cache_path: Path | None, query_batch: int,
         workers: int, threads_per_worker: int | None, gpus_per_worker: float, queries_per_task: int | None,
         progress: bool) -> RunResult:
    from rankwise.llm.cache import OutputCache, open_cache

    if cache_path is not None and open_cache(cache_path) is None:  # it warned: the run goes on without a cache
        cache_path = None
    threads = threads_per_worker or max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    shard_dir = shard_dir_for(cache_path) if cache_path is not None else None
    if shard_dir is not None:  # shards a crashed earlier run left behind
        merge_shards(shard_dir, OutputCache(cache_path))

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    n_blocks = -(-len(requests) // queries_per_task) if queries_per_task else min(len(requests), workers * 32)
    dataset = ray.data.from_items([{"index": i, "request": json.dumps(r.to_dict())} for i, r in enumerate(requests)],
                                  override_num_blocks=n_blocks)
    reranked = dataset.map_batches(
        RunWorker, fn_constructor_kwargs={"spec": spec, "shard_dir": None if shard_dir is None else str(shard_dir),
                                          "user_cache": None if cache_path is None else str(cache_path),
                                          "threads": threads, "query_batch": query_batch},
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=None, batch_format="numpy",
        num_cpus=threads, num_gpus=gpus_per_worker or None, runtime_env={"env_vars": _forwarded_env()})

    rankings: dict[int, Ranking] = {}
    stages: dict[str, StageReport] = {}
    per_worker: dict[str, dict] = {}
    slots: set = set()
    start = time.perf_counter()
    with tqdm(total=len(requests), desc=f"{stage} on {workers} ray workers", unit="query",
              disable=not progress) as bar:
        for batch in reranked.iter_batches(batch_size=None, batch_format="numpy"):
            for text, indices in zip(batch["result"], batch["indices"]):
                payload, indices = json.loads(str(text)), json.loads(str(indices))
                worker = per_worker.setdefault(f"worker-{payload['worker']}", {
                    "host": payload["host"], "pids": [], "queries": 0, "usage": Usage()})
                slots.add(payload["worker"])
                if payload["pid"] not in worker["pids"]:
                    worker["pids"].append(payload["pid"])
                for i, data in zip(indices, payload["rankings"]):
                    rankings[i] = _ranking(requests[i], data)
                    worker["queries"] += 1
                    worker["usage"].add(rankings[i].usage)
                for s in payload["stages"]:
                    report = stages.setdefault(s["path"], StageReport(s["path"], s["stage"]))
                    report.usage.add(Usage.from_dict(s))
                    report.wall_seconds += s["wall_seconds"]
                    report.load_seconds = max(report.load_seconds, s["load_seconds"])
                    report.queries += s["queries"]
                bar.update(len(indices))
    result = RunResult(pipeline=str(stage), wall_seconds=time.perf_counter() - start,
                       stages=[stages[k] for k in sorted(stages, key=lambda p: [int(x) for x in p.split(".")])])
    if len(rankings) != len(requests):
        missing = [requests[i].query.qid for i in range(len(requests)) if i not in rankings]
        raise RuntimeError(f"ray returned no ranking for {len(missing)} queries, e.g. {missing[:5]}")
    for i in range(len(requests)):
        result.rankings[requests[i].query.qid] = rankings[i]
        result.usage.add(rankings[i].usage)
    result.workers = {name: {**{k: v for k, v in w.items() if k != "usage"}, **w["usage"].to_dict()}
                      for name, w in sorted(per_worker.items())}
    if shard_dir is not None:
        merge_shards(shard_dir, OutputCache(cache_path), wait_for=slots)
    return result
