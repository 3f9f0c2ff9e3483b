"""What a run returns: the rankings, a TREC run with the methods' own scores, and what it cost (total, per
stage, per query; per worker on Ray)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rankwise.data.trec import Run
from rankwise.types import Ranking, Usage


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
class RunResult:
    """Rankings by query id (in request order), their total Usage (each query's sums its stages), and a
    report per stage. ``workers`` is filled by the Ray executor (``worker-<slot>`` -> host, pids, usage)."""

    rankings: dict[str, Ranking] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    wall_seconds: float = 0.0
    pipeline: str = ""
    stages: list[StageReport] = field(default_factory=list)
    workers: dict[str, dict] = field(default_factory=dict)

    def run(self, rank_scores: bool = False) -> Run:
        """The rankings as a TREC run: every candidate, with the method's own scores made strictly decreasing
        (a tie keeps the ranking's order: the later one gets the next float below), so runs can be fused and
        interpolated. ``rank_scores=True`` writes n, n-1, ..., 1 instead."""
        out: Run = {}
        for qid, ranking in self.rankings.items():
            if rank_scores:
                out[qid] = {c.docid: float(len(ranking) - r) for r, c in enumerate(ranking.candidates)}
                continue
            scores, previous = {}, math.inf
            for candidate, score in ranking:
                score = float(score) if math.isfinite(score) else -math.inf
                previous = score if score < previous else math.nextafter(previous, -math.inf)
                scores[candidate.docid] = previous
            out[qid] = scores
        return out

    def usage_report(self, **extra) -> dict:
        """Totals at the top level (then ``extra``), the queries answered wholly from the cache apart from the
        computed ones (``queries_from_cache``; ``per_computed_query``: costs averaged over computed queries
        only), and ``per_query`` (each with ``from_cache``), ``stages``, ``per_worker`` below."""
        report = self.usage.to_dict()
        report.update(extra)
        report["queries"] = len(self.rankings)
        report["wall_seconds"] = round(self.wall_seconds, 4)
        if self.rankings:
            report["seconds_per_query"] = round(self.wall_seconds / len(self.rankings), 4)
        cached = {qid for qid, r in self.rankings.items() if from_cache(r.usage)}
        report["queries_from_cache"] = len(cached)
        report["queries_computed"] = len(self.rankings) - len(cached)
        report["per_computed_query"] = per_query_average(
            [r.usage for qid, r in self.rankings.items() if qid not in cached])
        if self.pipeline:
            report["pipeline"] = self.pipeline
        report["per_query"] = {qid: {**r.usage.to_dict(), "from_cache": qid in cached}
                               for qid, r in self.rankings.items()}
        report["stages"] = [s.to_dict() for s in self.stages]
        if self.workers:
            report["executor"] = "ray"
            report["workers"] = len(self.workers)
            report["per_worker"] = self.workers
        return report


def from_cache(usage: Usage) -> bool:
    """Every call of the query was answered from the cache (nothing computed)."""
    return usage.calls > 0 and usage.cache_hits == usage.calls


_AVERAGED = ("calls", "forward_passes", "prompt_tokens", "computed_tokens", "completion_tokens", "seconds")


def per_query_average(usages: list[Usage]) -> dict:
    """The mean of the main cost counters over ``usages`` (the computed queries), and how many they are."""
    out: dict = {"queries": len(usages)}
    for name in _AVERAGED:
        out[name] = round(sum(getattr(u, name) for u in usages) / len(usages), 4) if usages else 0.0
    return out
