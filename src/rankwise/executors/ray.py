"""The Ray executor: queries become a Ray Data dataset reranked by a pool of actors.

Each actor loads the method and its backend once, with ``threads`` torch threads (``num_cpus`` for Ray's
scheduler) and ``gpus`` GPUs, and reranks one block of queries per task. Ray restarts an actor that dies
and retries its task: Ray Data gives pool actors ``max_restarts=-1`` and ``max_task_retries=-1`` (Ray 2.60;
passing them to ``map_batches`` is deprecated there), and tests/test_ray_executor.py checks that a killed
worker is replaced. The restarted actor finds what its predecessor computed in the cache shards (see
:mod:`rankwise.executors.shards`), so no finished prompt is computed twice. The driver collects the
rankings in request order, so the run file and the usage report are those of the single-process path,
with a ``per_worker`` section added.

Needs ``pip install 'rankwise[ray]'``; nothing else in rankwise imports this module.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from rankwise.errors import InputError
from rankwise.executors import RerankJob
from rankwise.executors.shards import merge_shards, shard_dir_for, worker_cache
from rankwise.pipeline import RerankResult
from rankwise.types import Candidate, Query, Ranking, Request, Usage

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise InputError("the ray executor needs Ray: pip install 'rankwise[ray]'") from exc

# Environment the workers need to see what the driver sees (data and model roots, cache, offline hub).
_FORWARDED_ENV = ("RANKWISE_", "HF_", "TRANSFORMERS_", "OMP_WAIT_POLICY")


@dataclass
class RayRerankResult(RerankResult):
    """A RerankResult plus what each worker did (``worker-<slot>`` -> host, pids, queries, usage)."""

    workers: dict[str, dict] = field(default_factory=dict)
    cache_entries_merged: int = 0

    def usage_report(self, **extra) -> dict:
        report = super().usage_report(executor="ray", **extra)
        report["workers"] = len(self.workers)
        report["per_worker"] = self.workers
        return report


def request_to_json(request: Request) -> str:
    return json.dumps({"qid": request.query.qid, "text": request.query.text,
                       "candidates": [[c.docid, c.text, c.score, c.title] for c in request.candidates]})


def request_from_json(text: str) -> Request:
    data = json.loads(text)
    return Request(Query(data["qid"], data["text"]),
                   tuple(Candidate(docid, body, score, title) for docid, body, score, title in data["candidates"]))


def _usage_dict(usage: Usage) -> dict:
    return {f.name: getattr(usage, f.name) for f in fields(Usage)}


def _worker_backend_options(job: RerankJob, threads: int) -> dict:
    """The job's backend options with engine="auto" resolved here (the choice depends on this worker's
    threads) and llama.cpp limited to the worker's threads."""
    from rankwise.methods.base import method_info

    options = dict(job.backend_options)
    if method_info(job.method).needs != "llm":
        return options
    if options.get("engine", "auto") == "auto":
        from rankwise.llm.auto import choose_engine

        engine, dtype = choose_engine(job.model)
        options["engine"] = engine
        if options.get("dtype", "auto") == "auto":
            options["dtype"] = dtype
    if options["engine"] == "llamacpp":
        options.setdefault("n_threads", threads)
    return options


class RerankWorker:
    """A Ray Data actor: builds the method once, then reranks batches of serialized requests."""

    def __init__(self, job: RerankJob, shard_dir: str | None, threads: int):
        import torch

        from rankwise.methods.base import load_reranker

        torch.set_num_threads(threads)
        self.job = job
        self.host, self.pid = socket.gethostname(), os.getpid()
        cache: object = False
        if shard_dir is not None:
            self.slot, self._lock, cache = worker_cache(Path(shard_dir), job.cache_path())
        else:
            self.slot, self._lock = self.pid, None
        options = {**_worker_backend_options(job, threads), "cache": cache}
        self.reranker = load_reranker(job.method, job.model, backend_options=options, **job.method_options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for text in batch["request"]:
            request = request_from_json(str(text))
            ranking = self.reranker.rerank(request.query, request.candidates, self.job.top_k)
            position = {c.docid: i for i, c in enumerate(request.candidates)}
            results.append(json.dumps({"order": [position[c.docid] for c in ranking.candidates],
                                       "scores": list(ranking.scores), "usage": _usage_dict(ranking.usage),
                                       "worker": self.slot, "host": self.host, "pid": self.pid}))
        return {"index": np.asarray(batch["index"]), "result": np.asarray(results, dtype=object)}


def _ranking(request: Request, payload: dict) -> Ranking:
    order = payload["order"]
    if sorted(order) != list(range(len(request.candidates))):
        raise RuntimeError(f"method dropped or duplicated candidates for query {request.query.qid}")
    return Ranking(request.query, tuple(request.candidates[i] for i in order), tuple(payload["scores"]),
                   Usage(**payload["usage"]))


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_ENV)}


def _portable(job: RerankJob) -> RerankJob:
    """The job with local paths made absolute (workers do not share the driver's working directory)."""
    model = str(Path(job.model).resolve()) if Path(job.model).exists() else job.model
    cache = job.cache if isinstance(job.cache, bool) else Path(job.cache).resolve()
    return RerankJob(job.method, model, job.top_k, dict(job.backend_options), dict(job.method_options), cache)


def rerank_ray(job: RerankJob, requests: Sequence[Request], *, workers: int = 2, address: str | None = None,
               threads_per_worker: int | None = None, gpus_per_worker: float = 0.0,
               queries_per_task: int | None = None, progress: bool = True) -> RayRerankResult:
    """Rerank ``requests`` on a Ray cluster with ``workers`` actors; the same rankings as in-process.

    ``address``: None starts a local Ray (or joins the one this process already runs), "auto" joins the
    cluster of this node, "ray://host:10001" a remote one through Ray Client. ``threads_per_worker``:
    default the cluster's CPUs divided by ``workers``. ``queries_per_task``: how many queries one actor task
    reranks (default: the queries spread over 32 tasks per worker); the task of a worker that dies is
    redone, its finished queries from the worker's cache shard. With a cache, shards live beside the cache file, which
    must be on storage every worker and the driver share (see docs/ray.md).
    """
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if queries_per_task is not None and queries_per_task < 1:
        raise InputError(f"queries_per_task must be at least 1, got {queries_per_task}")
    if not requests:
        raise InputError("no queries to rerank")
    job = _portable(job)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    try:
        return _run(job, requests, workers, threads_per_worker, gpus_per_worker, queries_per_task, progress)
    finally:
        if started:
            ray.shutdown()


def _run(job: RerankJob, requests: Sequence[Request], workers: int, threads_per_worker: int | None,
         gpus_per_worker: float, queries_per_task: int | None, progress: bool) -> RayRerankResult:
    from rankwise.llm.cache import OutputCache

    threads = threads_per_worker or max(1, int(ray.cluster_resources().get("CPU", 1)) // workers)
    cache_path = job.cache_path()
    shard_dir = shard_dir_for(cache_path) if cache_path is not None else None
    if shard_dir is not None:  # shards a crashed earlier run left behind
        merge_shards(shard_dir, OutputCache(cache_path))

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    n_blocks = -(-len(requests) // queries_per_task) if queries_per_task else min(len(requests), workers * 32)
    dataset = ray.data.from_items([{"index": i, "request": request_to_json(r)} for i, r in enumerate(requests)],
                                  override_num_blocks=n_blocks)
    reranked = dataset.map_batches(
        RerankWorker, fn_constructor_kwargs={"job": job, "shard_dir": None if shard_dir is None else str(shard_dir),
                                             "threads": threads},
        compute=ray.data.ActorPoolStrategy(size=workers), batch_size=None, batch_format="numpy",
        num_cpus=threads, num_gpus=gpus_per_worker or None, runtime_env={"env_vars": _forwarded_env()})

    result = RayRerankResult()
    payloads: dict[int, dict] = {}
    start = time.perf_counter()
    with tqdm(total=len(requests), desc=f"rerank {job.method} on {workers} ray workers", unit="query",
              disable=not progress) as bar:
        for batch in reranked.iter_batches(batch_size=None, batch_format="numpy"):
            for index, text in zip(batch["index"], batch["result"]):
                payloads[int(index)] = json.loads(str(text))
            bar.update(len(batch["index"]))
    result.wall_seconds = time.perf_counter() - start
    if len(payloads) != len(requests):
        missing = [requests[i].query.qid for i in range(len(requests)) if i not in payloads]
        raise RuntimeError(f"ray returned no ranking for {len(missing)} queries, e.g. {missing[:5]}")

    for i, request in enumerate(requests):
        payload = payloads[i]
        ranking = _ranking(request, payload)
        result.rankings[request.query.qid] = ranking
        result.usage.add(ranking.usage)
        worker = result.workers.setdefault(f"worker-{payload['worker']}", {
            "host": payload["host"], "pids": [], "queries": 0, "usage": Usage()})
        worker["queries"] += 1
        worker["usage"].add(ranking.usage)
        if payload["pid"] not in worker["pids"]:
            worker["pids"].append(payload["pid"])
    result.workers = {name: {**{k: v for k, v in w.items() if k != "usage"}, **w["usage"].to_dict()}
                      for name, w in sorted(result.workers.items())}

    if shard_dir is not None:
        slots = [p["worker"] for p in payloads.values()]
        result.cache_entries_merged = merge_shards(shard_dir, OutputCache(cache_path), wait_for=set(slots))
    return result
