"""Running a pipeline: models loaded once and shared, a report per stage, the result of every query."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from rankwise.errors import InputError
from rankwise.methods.base import Reranker, build_method, load_backend_for, method_info
from rankwise.pipeline import PipelineResult, StageReport
from rankwise.types import Query, Request, Usage

if TYPE_CHECKING:
    from rankwise.compose.stages import Rerank, Stage
    from rankwise.data import Dataset
    from rankwise.retrieve.bm25 import BM25Retriever


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class Backends:
    """Loads each backend once and shares it: stages whose methods need the same kind of backend
    (an LLM, an embedding model) on the same model, engine, dtype and options run on one backend.

    ``cache``: the output cache of every backend (True: the default SQLite file, a path, or False).
    Keep one ``Backends`` across runs to load models once for several pipelines.
    """

    def __init__(self, cache: bool | str | Path = True):
        self.cache = cache
        self._backends: dict[str, object] = {}
        self._rerankers: dict[str, Reranker] = {}
        self.load_seconds: dict[str, float] = {}

    def __len__(self) -> int:
        """How many backends are loaded."""
        return len(self._backends)

    def reranker(self, stage: "Rerank") -> tuple[Reranker, float]:
        """The stage's method on its (shared) backend, and the seconds spent loading it now (0 if loaded)."""
        if not isinstance(stage.method, str):
            return stage.method, 0.0
        started = time.perf_counter()
        needs = method_info(stage.method).needs
        backend_key = _key(needs, stage.model, stage.engine, stage.dtype, stage.backend_options)
        if backend_key not in self._backends:
            self._backends[backend_key] = load_backend_for(stage.method, stage.model, engine=stage.engine,
                                                           dtype=stage.dtype, cache=self.cache,
                                                           **stage.backend_options)
        key = _key(stage.method, backend_key, stage.options)
        if key not in self._rerankers:
            self._rerankers[key] = build_method(stage.method, self._backends[backend_key], **stage.options)
        return self._rerankers[key], time.perf_counter() - started


class RunContext:
    """What one run of a pipeline shares: the dataset, the backends, the BM25 index, the stage reports."""

    def __init__(self, dataset: "Dataset | None", backends: Backends, progress: bool = False):
        self.dataset = dataset
        self.backends = backends
        self.progress = progress
        self.reports: dict[str, StageReport] = {}
        self._rerankers: dict[int, Reranker] = {}
        self._bm25: dict[tuple[float, float], "BM25Retriever"] = {}

    def require_dataset(self, stage: "Stage") -> "Dataset":
        if self.dataset is None:
            raise InputError(f"{stage} retrieves from a dataset: give one (--dataset)")
        return self.dataset

    def load(self, pipeline: "Stage") -> None:
        """Load every model the pipeline needs before anything is timed; an unloadable one fails first."""
        from rankwise.compose.stages import Rerank

        for path, leaf in pipeline.leaves():
            report = self.report_for(path, leaf)
            if isinstance(leaf, Rerank) and id(leaf) not in self._rerankers:
                self._rerankers[id(leaf)], report.load_seconds = self.backends.reranker(leaf)

    def reranker(self, stage: "Rerank") -> Reranker:
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

    def report_for(self, path: tuple[int, ...], stage: "Stage") -> StageReport:
        key = ".".join(map(str, path)) or "1"
        if key not in self.reports:
            self.reports[key] = StageReport(path=key, stage=str(stage))
        return self.reports[key]

    def record(self, path: tuple[int, ...], stage: "Stage", usage: Usage, seconds: float, queries: int) -> None:
        """Add what a stage did (over some queries) to its report."""
        report = self.report_for(path, stage)
        report.usage.add(usage)
        report.wall_seconds += seconds
        report.queries += queries


def run_pipeline(pipeline: "Stage", requests: Sequence[Request] | None = None, *,
                 dataset: "Dataset | str | None" = None, queries: Sequence[Query] | None = None,
                 backends: Backends | None = None, progress: bool = False) -> PipelineResult:
    """See :meth:`rankwise.compose.Stage.run`."""
    from rankwise.data import Dataset, load_dataset

    ds = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    if ds is not None and not isinstance(ds, Dataset):
        raise InputError(f"dataset must be a Dataset or a name, got {type(ds).__name__}")
    if pipeline.is_source:
        if requests is not None:
            queries = [r.query for r in requests]
        elif queries is None:
            if ds is None:
                raise InputError(f"{pipeline} retrieves from a dataset: give one")
            queries = [Query(qid, text) for qid, text in ds.judged_queries().items()]
        inputs = [Request(q, ()) for q in queries]
    else:
        if requests is None:
            raise InputError(f"{pipeline} has no first stage: give it requests (query and candidates), "
                             "or start it with FirstStage('bm25') or BM25()")
        inputs = list(requests)
    ctx = RunContext(ds, backends if backends is not None else Backends(), progress)
    ctx.load(pipeline)
    started = time.perf_counter()
    rankings = pipeline.apply(inputs, ctx) if inputs else []
    result = PipelineResult(pipeline=str(pipeline), wall_seconds=time.perf_counter() - started)
    for ranking in rankings:
        result.rankings[ranking.query.qid] = ranking
        result.usage.add(ranking.usage)
    result.usage.engine = result.usage.dtype = result.usage.model = ""  # stages differ: see result.stages
    result.stages = list(ctx.reports.values())  # in pipeline order: load() made them, walking the pipeline
    return result
