"""Distillation: a teacher (any rankwise method + model, ``teacher:`` in a training config) scores the
training candidates once, through the library and its output cache, and its scores become the targets.

Every query's candidates (the union of its groups' documents, in first-stage order) are reranked by the
teacher through ``rankwise.pipeline.run``; the scores are written as a TREC run, ``teacher.trec``, beside the
model (and reused by ``--resume``). A ``pointwise.yes_no`` teacher's P(yes) becomes its log-odds, the score
a ``pointwise.yes_no`` student is trained on. The run is what ``data.teacher`` (a run file) gives, so a
cross-encoder's margin-mse objective can distil from an LLM teacher too.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

from rankwise.data import Run, read_run, write_run
from rankwise.train.config import TeacherConfig
from rankwise.train.groups import Group
from rankwise.types import Candidate, Query, Request

logger = logging.getLogger(__name__)

TEACHER_RUN = "teacher.trec"
_EPS = 1e-6


def teacher_requests(groups: Sequence[Group], queries: dict[str, str]) -> list[Request]:
    """One request per training query: the documents of all its groups, each once, in group order."""
    docs: dict[str, dict[str, str]] = {}
    for g in groups:
        seen = docs.setdefault(g.qid, {})
        for d, t in zip(g.docids, g.texts):
            seen.setdefault(d, t)
    return [Request(Query(qid, queries.get(qid) or next(g.query for g in groups if g.qid == qid)),
                    [Candidate(d, t) for d, t in found.items()]) for qid, found in docs.items()]


def log_odds(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p) - math.log1p(-p)


def teacher_run(teacher: TeacherConfig, groups: Sequence[Group], queries: dict[str, str], output: Path) -> Run:
    """The teacher's scores of every training candidate (computed once: ``output/teacher.trec`` is reused)."""
    from rankwise.pipeline import load_reranker, run

    path = output / TEACHER_RUN
    if path.is_file():
        return read_run(path)
    requests = teacher_requests(groups, queries)
    logger.warning("teacher %s on %s scores %d candidates of %d queries", teacher.method, teacher.model,
                   sum(len(r.candidates) for r in requests), len(requests))
    reranker = load_reranker(teacher.method, teacher.model, engine=teacher.engine, dtype=teacher.dtype,
                             **teacher.options)
    result = run(reranker, requests, progress=True)
    scores: Run = {}
    for qid, ranking in result.rankings.items():
        values = ranking.scores
        if teacher.method == "pointwise.yes_no":
            values = [log_odds(v) for v in values]
        scores[qid] = dict(zip(ranking.docids, values))
    output.mkdir(parents=True, exist_ok=True)
    ordered = {q: dict(sorted(s.items(), key=lambda kv: -kv[1])) for q, s in scores.items()}
    write_run(ordered, path, tag=f"teacher-{teacher.method}")
    return ordered
