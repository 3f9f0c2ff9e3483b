"""Cross-encoder reranking: a sentence-transformers CrossEncoder scores each (query, passage) pair."""

from __future__ import annotations

from rankwise.methods.method import Method, spend
from rankwise.methods.registry import register
from rankwise.types import Candidate, Query, Ranking, Usage


class CrossEncoderReranker(Method):
    """Score each of the top-k candidates with the cross-encoder; one batched backend call per query."""

    name = "crossencoder"

    def __init__(self, backend):
        self.backend = backend

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        used = Usage()
        scores = spend(used, self.backend.score_pairs([(query.text, c.content) for c in head]))
        return Ranking.from_scores(query, head, [float(s) for s in scores], used)


@register("crossencoder", "crossencoder", "sentence-transformers CrossEncoder: a relevance score per pair")
def crossencoder(backend) -> CrossEncoderReranker:
    return CrossEncoderReranker(backend)
