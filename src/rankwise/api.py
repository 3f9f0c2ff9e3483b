"""The smallest way in: ``Reranker("pointwise.yes_no", "qwen2.5-0.5b").rank("query", ["doc a", "doc b"])``."""

from __future__ import annotations

from typing import Any, Sequence

from rankwise.types import Candidate, Query, Ranking


class Reranker:
    """A reranking method on a model, loaded once (``rankwise.pipeline.load_reranker``: the fastest engine and
    dtype for this machine, the output cache on). Options go to the method (``rankwise methods show NAME``)."""

    def __init__(self, method: str, model: str, **options: Any):
        from rankwise.pipeline.loading import load_reranker

        self.method = load_reranker(method, model, **options)

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None) -> Ranking:
        """The documents ranked for ``query``: ``ranking.candidates`` (docid = the document's index as a
        string), ``ranking.scores`` and ``ranking.usage`` (what it cost)."""
        candidates = [Candidate(str(i), text) for i, text in enumerate(documents)]
        return self.method.rerank(Query("query", query), candidates, top_k)

    def __repr__(self) -> str:
        return f"Reranker({self.method})"
