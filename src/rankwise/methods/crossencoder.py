"""``crossencoder``: supervised pointwise reranking with a sentence-transformers CrossEncoder, one score per
(query, passage) pair, in batches."""

from __future__ import annotations

from typing import Sequence

from rankwise.methods.base import register, register_loader, usage_since, with_tail
from rankwise.types import Candidate, Query, Ranking


class CrossEncoderReranker:
    """Score each of the top-k candidates with the cross-encoder; one batched backend call per query."""

    name = "crossencoder"

    def __init__(self, backend):
        self.backend = backend

    def rerank(self, query: Query, candidates: Sequence[Candidate], top_k: int | None = None) -> Ranking:
        before = self.backend.usage.copy()
        head = list(candidates[: top_k or len(candidates)])
        scores = self.backend.score(query.text, [c.content for c in head])
        ranked = Ranking.from_scores(query, head, scores.tolist())
        return with_tail(query, candidates, ranked, usage_since(self.backend, before))


@register_loader("crossencoder")
def _load_crossencoder(model: str, *, engine: str = "auto", dtype: str = "auto", cache=None,
                       batch_size: int = 32, **options):
    from rankwise.llm.crossencoder import CrossEncoderBackend

    return CrossEncoderBackend(model, batch_size=batch_size, **options)


@register("crossencoder", "crossencoder", "sentence-transformers CrossEncoder: a relevance score per pair")
def crossencoder(backend) -> CrossEncoderReranker:
    return CrossEncoderReranker(backend)
