"""Run a reranker over many requests: the rankings, a TREC run, and what it cost (total and per query).

Composed pipelines (``BM25() >> Rerank(...) % 30``) live in :mod:`rankwise.compose`; their result is a
:class:`PipelineResult`, which adds what each stage cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from tqdm.auto import tqdm

from rankwise.data.trec import Run
from rankwise.methods.base import Reranker
from rankwise.types import Ranking, Request, Usage


@dataclass
class RerankResult:
    rankings: dict[str, Ranking] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    wall_seconds: float = 0.0

    def run(self) -> Run:
        """The rankings as a TREC run: every candidate, strictly decreasing scores in rank order."""
        out: Run = {}
        for qid, ranking in self.rankings.items():
            n = len(ranking)
            out[qid] = {c.docid: float(n - r) for r, c in enumerate(ranking.candidates)}
        return out

    def usage_report(self, **extra) -> dict:
        """Totals at the top level, a ``per_query`` object below them."""
        report = self.usage.to_dict()
        report.update(extra)
        report["queries"] = len(self.rankings)
        report["wall_seconds"] = round(self.wall_seconds, 4)
        if self.rankings:
            report["seconds_per_query"] = round(self.wall_seconds / len(self.rankings), 4)
        report["per_query"] = {qid: r.usage.to_dict() for qid, r in self.rankings.items()}
        return report


@dataclass
class StageReport:
    """What one stage of a pipeline did over all queries: its Usage, wall-clock and model-loading seconds."""

    path: str  # "2" is the second stage; "3.1.2" the second stage of the first branch of stage 3
    stage: str  # the stage's expression, e.g. "Rerank('pointwise.yes_no', model='qwen2.5-0.5b') % 30"
    usage: Usage = field(default_factory=Usage)
    wall_seconds: float = 0.0
    load_seconds: float = 0.0
    queries: int = 0

    def to_dict(self) -> dict:
        out = {"path": self.path, "stage": self.stage, **self.usage.to_dict(), "queries": self.queries,
               "wall_seconds": round(self.wall_seconds, 4), "load_seconds": round(self.load_seconds, 4)}
        if self.queries:
            out["seconds_per_query"] = round(self.wall_seconds / self.queries, 4)
        return out


@dataclass
class PipelineResult(RerankResult):
    """A pipeline's rankings and total Usage (each query's Usage sums its stages), plus a report per stage."""

    pipeline: str = ""
    stages: list[StageReport] = field(default_factory=list)

    def usage_report(self, **extra) -> dict:
        """As :meth:`RerankResult.usage_report`, with the pipeline's expression and a ``stages`` list."""
        report = super().usage_report(pipeline=self.pipeline, **extra)
        report["stages"] = [s.to_dict() for s in self.stages]
        return report


def rerank_requests(reranker: Reranker, requests: Sequence[Request], top_k: int | None = None,
                    progress: bool = True) -> RerankResult:
    """Rerank every request's top_k candidates (the rest keep their first-stage order below them)."""
    result = RerankResult()
    start = time.perf_counter()
    for request in tqdm(requests, desc=f"rerank {reranker.name}", unit="query", disable=not progress):
        ranking = reranker.rerank(request.query, request.candidates, top_k)
        check_complete(request, ranking)
        result.rankings[request.query.qid] = ranking
        result.usage.add(ranking.usage)
    result.wall_seconds = time.perf_counter() - start
    return result


def check_complete(request: Request, ranking: Ranking) -> None:
    """Raise if ``ranking`` does not hold exactly the request's candidates."""
    before = sorted(c.docid for c in request.candidates)
    if sorted(ranking.docids) != before:
        raise RuntimeError(f"method dropped or duplicated candidates for query {request.query.qid}")
