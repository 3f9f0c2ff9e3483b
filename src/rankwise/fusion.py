"""Fusion of ranked lists: reciprocal rank fusion and normalised score interpolation.

Both work on runs (``qid -> {docid: score}``, as read from TREC files) and on the Rankings of pipeline
stages. A list's rank order is its scores, descending; equal scores keep the list's own order.

- ``rrf``: score(d) = sum_i w_i / (k + rank_i(d)), ranks from 1 (Cormack et al., 2009; k=60).
  A list that does not hold d adds nothing.
- ``interpolate``: score(d) = sum_i w_i * norm_i(d), each list's scores normalised per query by min-max
  (to [0, 1]) or z-score. A list that does not hold d gives it that list's lowest normalised score
  (min-max: 0, as ranx does); a list whose scores are all equal normalises them all to 0.

The fused order is by fused score, descending; ties keep the order in which documents first appear
(the first list's order, then documents only later lists hold).
"""

from __future__ import annotations

import math
from typing import Sequence

from rankwise.data.trec import Run
from rankwise.errors import InputError
from rankwise.types import Candidate, Ranking, Usage

METHODS = ("rrf", "interpolate")
NORMS = ("minmax", "zscore")
RRF_K = 60.0

ScoredList = Sequence[tuple[str, float]]  # (docid, score) in rank order


def check_params(n_lists: int, method: str = "rrf", k: float = RRF_K, weights: Sequence[float] | None = None,
                 norm: str = "minmax") -> None:
    """Raise InputError naming the first fusion parameter that is not valid."""
    if method not in METHODS:
        raise InputError(f"unknown fusion method {method!r} (choose {' or '.join(METHODS)})")
    if norm not in NORMS:
        raise InputError(f"unknown normalisation {norm!r} (choose {' or '.join(NORMS)})")
    if not (isinstance(k, (int, float)) and k >= 0):
        raise InputError(f"the RRF constant k must be a number >= 0, got {k!r}")
    if weights is not None:
        if len(weights) != n_lists:
            raise InputError(f"{len(weights)} weights for {n_lists} ranked lists")
        if not all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
            raise InputError(f"weights must be finite numbers, got {list(weights)}")


def _ranked(run_of_query: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(run_of_query.items(), key=lambda item: -item[1])  # stable: ties keep the run's order


def _first_appearance(lists: Sequence[ScoredList]) -> list[str]:
    return list(dict.fromkeys(docid for lst in lists for docid, _ in lst))


def rrf_scores(lists: Sequence[ScoredList], k: float = RRF_K,
               weights: Sequence[float] | None = None) -> dict[str, float]:
    """Reciprocal rank fusion of lists given in rank order; documents in order of first appearance."""
    weights = [1.0] * len(lists) if weights is None else weights
    fused = dict.fromkeys(_first_appearance(lists), 0.0)
    for lst, w in zip(lists, weights):
        for rank, (docid, _) in enumerate(lst, start=1):
            fused[docid] += w / (k + rank)
    return fused


def _normalise(scores: list[float], norm: str) -> list[float]:
    if norm == "minmax":
        low, high = min(scores), max(scores)
        return [(s - low) / (high - low) if high > low else 0.0 for s in scores]
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
    return [(s - mean) / std if std > 0 else 0.0 for s in scores]


def interpolate_scores(lists: Sequence[ScoredList], weights: Sequence[float] | None = None,
                       norm: str = "minmax") -> dict[str, float]:
    """Weighted sum of per-list normalised scores; documents in order of first appearance."""
    weights = [1.0 / len(lists)] * len(lists) if weights is None else weights
    fused = dict.fromkeys(_first_appearance(lists), 0.0)
    for lst, w in zip(lists, weights):
        if not lst:
            continue
        normed = dict(zip([d for d, _ in lst], _normalise([s for _, s in lst], norm)))
        floor = min(normed.values())
        for docid in fused:
            fused[docid] += w * normed.get(docid, floor)
    return fused


def _fuse_lists(lists: Sequence[ScoredList], method: str, k: float, weights, norm: str) -> list[tuple[str, float]]:
    check_params(len(lists), method, k, weights, norm)
    fused = rrf_scores(lists, k, weights) if method == "rrf" else interpolate_scores(lists, weights, norm)
    return sorted(fused.items(), key=lambda item: -item[1])


def fuse_runs(runs: Sequence[Run], method: str = "rrf", *, k: float = RRF_K,
              weights: Sequence[float] | None = None, norm: str = "minmax") -> Run:
    """Fuse runs query by query (every query of any run); the result lists documents in fused order."""
    if not runs:
        raise InputError("nothing to fuse: give at least one run")
    qids = list(dict.fromkeys(qid for run in runs for qid in run))
    return {qid: dict(_fuse_lists([_ranked(run.get(qid, {})) for run in runs], method, k, weights, norm))
            for qid in qids}


def rrf(runs: Sequence[Run], k: float = RRF_K, weights: Sequence[float] | None = None) -> Run:
    """Reciprocal rank fusion of runs, e.g. ``rrf([bm25_run, dense_run])`` (k=60)."""
    return fuse_runs(runs, "rrf", k=k, weights=weights)


def interpolate(runs: Sequence[Run], weights: Sequence[float] | None = None, norm: str = "minmax") -> Run:
    """Normalised score interpolation of runs, e.g. ``interpolate([a, b], weights=[0.3, 0.7], norm="zscore")``."""
    return fuse_runs(runs, "interpolate", weights=weights, norm=norm)


def fuse_rankings(rankings: Sequence[Ranking], method: str = "rrf", *, k: float = RRF_K,
                  weights: Sequence[float] | None = None, norm: str = "minmax") -> Ranking:
    """Fuse rankings of one query: every candidate any of them holds, the Usage of all of them summed."""
    if not rankings:
        raise InputError("nothing to fuse: give at least one ranking")
    lists = [[(c.docid, s) for c, s in r] for r in rankings]
    fused = _fuse_lists(lists, method, k, weights, norm)
    by_docid: dict[str, Candidate] = {}
    for r in rankings:
        for c in r.candidates:
            by_docid.setdefault(c.docid, c)
    usage = Usage()
    for r in rankings:
        usage.add(r.usage)
    return Ranking(rankings[0].query, tuple(by_docid[d] for d, _ in fused), tuple(s for _, s in fused), usage)
