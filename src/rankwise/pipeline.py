"""Run a reranker over many requests: the rankings, a TREC run, and what it cost (total and per query)."""

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


def rerank_requests(reranker: Reranker, requests: Sequence[Request], top_k: int | None = None,
                    progress: bool = True) -> RerankResult:
    """Rerank every request's top_k candidates (the rest keep their first-stage order below them)."""
    result = RerankResult()
    start = time.perf_counter()
    for request in tqdm(requests, desc=f"rerank {reranker.name}", unit="query", disable=not progress):
        ranking = reranker.rerank(request.query, request.candidates, top_k)
        _check_complete(request, ranking)
        result.rankings[request.query.qid] = ranking
        result.usage.add(ranking.usage)
    result.wall_seconds = time.perf_counter() - start
    return result


def _check_complete(request: Request, ranking: Ranking) -> None:
    before = sorted(c.docid for c in request.candidates)
    if sorted(ranking.docids) != before:
        raise RuntimeError(f"method dropped or duplicated candidates for query {request.query.qid}")
