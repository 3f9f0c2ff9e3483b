"""``run``: the one place anything is run. A stage (a reranker, a first stage, a pipeline) over requests or a
dataset's queries, in this process or on Ray, returning the rankings, the usage (total, per stage, per
query) and a TREC run. ``rankwise rerank`` (a one-stage pipeline), ``rankwise run``, bench cells, the service
and Ray workers all come here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from tqdm.auto import tqdm

from rankwise.errors import InputError
from rankwise.pipeline.loading import Backends
from rankwise.pipeline.result import RunResult, StageReport
from rankwise.stage import Stage
from rankwise.types import Query, Ranking, Request, Usage

if TYPE_CHECKING:
    from rankwise.data import Dataset
    from rankwise.methods.method import Method
    from rankwise.pipeline.stages import Rerank
    from rankwise.retrieve.bm25 import BM25Retriever

EXECUTORS = ("local", "ray")


class RunContext:
    """What one run of a pipeline shares: the dataset, the backends, the BM25 index, the stage reports."""

    def __init__(self, dataset: "Dataset | None", backends: Backends, progress: bool = False,
                 query_batch: int = 1, total: int = 0):
        self.dataset = dataset
        self.backends = backends
        self.progress = progress
        self.query_batch = query_batch
        self.total = total
        self.reports: dict[str, StageReport] = {}
        self._rerankers: dict[int, "Method"] = {}
        self._bm25: dict[tuple[float, float], "BM25Retriever"] = {}

    def require_dataset(self, stage: Stage) -> "Dataset":
        if self.dataset is None:
            raise InputError(f"{stage} retrieves from a dataset: give one (--dataset)")
        return self.dataset

    def load(self, pipeline: Stage) -> None:
        """Load every model the pipeline needs before anything is timed; an unloadable one fails first."""
        from rankwise.pipeline.stages import Rerank

        for path, leaf in pipeline.leaves():
            report = self.report_for(path, leaf)
            if isinstance(leaf, Rerank) and id(leaf) not in self._rerankers:
                self._rerankers[id(leaf)], report.load_seconds = self.backends.reranker(leaf)

    def reranker(self, stage: "Rerank") -> "Method":
        if id(stage) not in self._rerankers:
            self._rerankers[id(stage)], _ = self.backends.reranker(stage)
        return self._rerankers[id(stage)]

    def bm25(self, k1: float, b: float) -> "BM25Retriever":
        """A BM25 index of the dataset's documents, built on first use."""
        if (k1, b) not in self._bm25:
            from rankwise.retrieve.bm25 import BM25Retriever

            docs = self.dataset.docs if self.dataset is not None else None
            if not docs:
                raise InputError(f"BM25 needs the documents of the dataset, and "
                                 f"{getattr(self.dataset, 'name', 'none')} has none")
            self._bm25[(k1, b)] = BM25Retriever(k1=k1, b=b, show_progress=self.progress).index(docs)
        return self._bm25[(k1, b)]

    def progress_for(self, path: tuple[int, ...], stage: Stage) -> Callable[[Ranking], None]:
        """A callback that advances a progress bar of the stage by one query (a no-op without progress)."""
        if not self.progress:
            return lambda ranking: None
        bar = tqdm(total=self.total or None, desc=f"{'.'.join(map(str, path)) or 1} {getattr(stage, 'method_name', None) or getattr(stage, 'name', stage)}",
                   unit="query", leave=False)
        return lambda ranking: bar.update(1)

    def report_for(self, path: tuple[int, ...], stage: Stage) -> StageReport:
        key = ".".join(map(str, path)) or "1"
        if key not in self.reports:
            self.reports[key] = StageReport(path=key, stage=str(stage))
        return self.reports[key]

    def record(self, path: tuple[int, ...], stage: Stage, usage: Usage, seconds: float, queries: int) -> None:
        """Add what a stage did (over some queries) to its report."""
        report = self.report_for(path, stage)
        report.usage.add(usage)
        report.wall_seconds += seconds
        report.queries += queries


def run(stage: Stage, requests: Sequence[Request] | None = None, *, dataset: "Dataset | str | None" = None,
        queries: Sequence[Query] | None = None, executor: str = "local", backends: Backends | None = None,
        cache: bool | str | Path = True, query_batch: int = 1, progress: bool = False,
        **executor_options) -> RunResult:
    """Run ``stage`` over ``requests`` (query + candidates), or over ``queries`` / every judged query of
    ``dataset`` when it starts with a first stage. The one run loop of rankwise.

    ``executor``: "local" (this process) or "ray" (``rankwise.pipeline.executors.ray``; its options:
    workers, address, threads_per_worker, gpus_per_worker, queries_per_task). ``backends``: share loaded
    models across runs (else loaded here, with ``cache``). ``query_batch``: queries reranked at once, the
    same step of all of them in one backend call (equal results on a batch-invariant engine).
    """
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if not isinstance(query_batch, int) or isinstance(query_batch, bool) or query_batch < 1:
        raise InputError(f"query_batch must be a positive integer, got {query_batch!r}")
    if executor == "ray":
        from rankwise.pipeline.executors.ray import run_on_ray

        if requests is None:
            raise InputError("the ray executor reranks requests (query and candidates): give requests")
        return run_on_ray(stage, requests, cache=cache, query_batch=query_batch, progress=progress,
                          **executor_options)
    if executor_options:
        raise InputError(f"{', '.join(sorted(executor_options))} only apply to executor='ray'")
    ds = _dataset(dataset)
    inputs = _inputs(stage, requests, ds, queries)
    ctx = RunContext(ds, backends if backends is not None else Backends(cache), progress, query_batch, len(inputs))
    ctx.load(stage)
    started = time.perf_counter()
    rankings = stage.apply(inputs, ctx) if inputs else []
    result = RunResult(pipeline=str(stage), wall_seconds=time.perf_counter() - started)
    for ranking in rankings:
        result.rankings[ranking.query.qid] = ranking
        result.usage.add(ranking.usage)
    if len({s.usage.model for s in ctx.reports.values()}) > 1:
        result.usage.engine = result.usage.dtype = result.usage.model = ""  # stages differ: see result.stages
    result.stages = list(ctx.reports.values())  # in pipeline order: load() made them, walking the pipeline
    return result


def _dataset(dataset: "Dataset | str | Path | None") -> "Dataset | None":
    from rankwise.data import Dataset, load_dataset

    ds = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    if ds is not None and not isinstance(ds, Dataset):
        raise InputError(f"dataset must be a Dataset or a name, got {type(ds).__name__}")
    return ds


def _inputs(stage: Stage, requests: Sequence[Request] | None, ds: "Dataset | None",
            queries: Sequence[Query] | None) -> list[Request]:
    """What the first stage of ``stage`` receives: requests, or bare queries for a stage that retrieves."""
    if not stage.is_source:
        if requests is None:
            raise InputError(f"{stage} has no first stage: give it requests (query and candidates), "
                             "or start it with FirstStage('bm25') or BM25()")
        return list(requests)
    if requests is not None:
        queries = [r.query for r in requests]
    elif queries is None:
        if ds is None:
            raise InputError(f"{stage} retrieves from a dataset: give one")
        queries = [Query(qid, text) for qid, text in ds.judged_queries().items()]
    return [Request(q, ()) for q in queries]
