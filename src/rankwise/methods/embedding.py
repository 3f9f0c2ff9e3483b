"""Bi-encoder reranking over the ``embed`` primitive.

- ``embedding.cosine``: cosine of the query's and each candidate's embedding;
- ``embedding.e2rank``: E2Rank (Liu et al. 2025): the listwise prompt (instruction, the top-m candidates
  in input order, the query) is embedded as one pseudo-relevance-feedback query and each candidate is
  scored by its cosine to that embedding. ``query_weight`` mixes in the plain query's cosine
  (Rocchio-style): score = (1 - w) cos(prf, d) + w cos(q, d). The paper's method is w=0 with a model
  trained on listwise prompts (E2Rank-0.6B: m=20); the defaults (m=5, w=0.5) are for embedding models
  never trained on them, such as all-MiniLM-L6-v2, where the pure PRF query (w=0) ranks below plain
  cosine (DL19 BM25 top-100: 0.56 vs 0.64 nDCG@10) and the mix ranks slightly above it.

Embedding models read a bounded number of tokens (all-MiniLM-L6-v2: 256) and cut what is longer from
the end, which would cut the query off the end of the listwise prompt. So the prompt is built to fit:
the instruction and the query are kept whole, and the candidates share what is left, each cut to an
equal number of tokens.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rankwise.errors import InputError
from rankwise.methods.method import Method, spend
from rankwise.methods.registry import Option, register
from rankwise.prompts import PromptTemplate, load_prompt
from rankwise.types import Candidate, Query, Ranking, Usage

DOC_LINE = "[{i}] {text}"


class EmbeddingCosine(Method):
    """Score each of the top-k candidates by the cosine of its embedding to the query's."""

    name = "embedding.cosine"

    def __init__(self, backend):
        self.backend = backend

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        used = Usage()
        return Ranking.from_scores(query, head, _cosines(self.backend, query.text, head, used).tolist(), used)


class E2Rank(Method):
    """E2Rank over any embedding backend: ``m`` candidates form the pseudo query (``m`` >= 1)."""

    name = "embedding.e2rank"

    def __init__(self, backend, m: int = 5, prompt: str | PromptTemplate = "embedding.e2rank",
                 query_weight: float = 0.5):
        if m < 1:
            raise InputError(f"m must be at least 1 (got {m})")
        if not 0.0 <= query_weight <= 1.0:
            raise InputError(f"query_weight must be between 0 and 1 (got {query_weight})")
        self.backend = backend
        self.m = m
        self.template = prompt if isinstance(prompt, PromptTemplate) else load_prompt(prompt)
        missing = {"query", "documents"} - set(self.template.fields)
        if missing:
            raise InputError(f"prompt {self.template.name!r} needs the placeholder(s) {', '.join(sorted(missing))}")
        self.query_weight = query_weight

    def pseudo_query(self, query: Query, candidates: Sequence[Candidate]) -> str:
        """The listwise prompt over the first ``m`` candidates, cut to fit the model's token limit."""
        texts = [c.content for c in candidates[: self.m]]
        limit = getattr(self.backend, "max_tokens", None)
        if limit is None:  # a backend that reads any length
            return self._render(query, texts)
        count, cut = self.backend.count_tokens, self.backend.truncate
        share = limit
        while share > 0:
            prompt = self._render(query, [cut(t, share) for t in texts])
            if count(prompt) <= limit:
                return prompt
            share -= max(1, -(-(count(prompt) - limit) // len(texts)))
        prompt = self._render(query, [""] * len(texts))
        if count(prompt) > limit:
            raise InputError(f"the query and the e2rank prompt alone exceed the embedding model's "
                             f"{limit} tokens; use a shorter prompt or a smaller m (m={self.m})")
        return prompt

    def _render(self, query: Query, texts: Sequence[str]) -> str:
        lines = "\n".join(DOC_LINE.format(i=i, text=t) for i, t in enumerate(texts, start=1))
        return self.template.render(query=query.text, documents=lines)

    def rank(self, query: Query, head: list[Candidate]) -> Ranking:
        used = Usage()
        docs = np.asarray(spend(used, self.backend.embed([c.content for c in head], kind="document")))
        queries = [self.pseudo_query(query, head)] + ([query.text] if self.query_weight else [])
        q = np.asarray(spend(used, self.backend.embed(queries, kind="query")))
        scores = (1.0 - self.query_weight) * (docs @ q[0])
        if self.query_weight:
            scores = scores + self.query_weight * (docs @ q[1])
        return Ranking.from_scores(query, head, scores.tolist(), used)


def _cosines(backend, query: str, candidates: Sequence[Candidate], used: Usage) -> np.ndarray:
    """Cosines of the (normalised) embeddings: the query's against each candidate's."""
    docs = np.asarray(spend(used, backend.embed([c.content for c in candidates], kind="document")))
    return docs @ np.asarray(spend(used, backend.embed([query], kind="query")))[0]



@register("embedding.cosine", "embedding", "bi-encoder: cosine of query and document embeddings")
def cosine(backend) -> EmbeddingCosine:
    return EmbeddingCosine(backend)


@register("embedding.e2rank", "embedding",
          "E2Rank: the listwise prompt of the top-m candidates embedded as a PRF query, cosine to it", (
              Option("m", int, 5, "candidates in the pseudo query"),
              Option("prompt", (str, PromptTemplate), "embedding.e2rank", "prompt template name or YAML file"),
              Option("query_weight", float, 0.5, "weight of the plain query's cosine (0: pseudo query only)")))
def e2rank(backend, **opts) -> E2Rank:
    return E2Rank(backend, **opts)
