"""The method contract: a :class:`Method` orders the head of a candidate list with backend calls and
returns the Ranking with the usage of those calls. The head/tail split, the usage and the stage contract are
written here once; a method writes only ``rank`` (order the candidates it is given)."""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from rankwise.llm.protocol import Backend, usage_of
from rankwise.stage import Stage, StagePath, record_leaf, with_tail
from rankwise.types import Candidate, Query, Ranking, Request, Usage


class Method(Stage):
    """Base of every reranking method. A method IS a stage: ``bm25 >> method % 20`` composes directly.

    Subclasses set ``name`` and ``backend`` and implement :meth:`rank`.
    """

    name: str
    backend: Backend
    top_k: int | None = None  # set by ``method % k`` (a copy of the method that reranks only the top k)

    def rank(self, query: Query, candidates: list[Candidate]) -> Ranking:
        """Order every candidate given; the Ranking carries the usage of the backend calls made."""
        raise NotImplementedError

    def rerank(self, query: Query, candidates: Sequence[Candidate], top_k: int | None = None) -> Ranking:
        """Reorder the first ``top_k`` candidates (all if None); the rest follow in input order, below."""
        head = list(candidates[: top_k or len(candidates)])
        ranked = self.rank(query, head) if head else Ranking(query, (), (), Usage())
        return with_tail(query, candidates, ranked, ranked.usage)

    def rerank_all(self, requests: Sequence[Request], top_k: int | None = None, *, query_batch: int = 1,
                   on_done: Callable[[Ranking], None] | None = None) -> list[Ranking]:
        """Rerank every request, in order. With ``query_batch`` > 1, that many queries run at once and the
        backend calls they make at the same step go to the backend as one call (``llm.batching``): the
        prompts of many queries in one batch, as a GPU wants them. Rankings and usage are those of the
        one-query-at-a-time run on a batch-invariant engine (the transformers engine is one)."""
        done = on_done or (lambda ranking: None)
        if query_batch <= 1 or len(requests) <= 1:
            out = []
            for request in requests:
                out.append(self.rerank(request.query, request.candidates, top_k))
                done(out[-1])
            return out
        from rankwise.llm.batching import BatchingBackend

        # every query in flight either submits its step or finishes (which wakes the batcher), so the wait
        # only bounds a query that does Python work between steps
        batcher = BatchingBackend(self.backend, max_wait_ms=2000.0, max_batch_prompts=10**9)
        batcher.reserve(min(query_batch, len(requests)))  # the first step waits for every starting query
        twin = self.with_backend(batcher)

        def one(request: Request) -> Ranking:
            with batcher.request_scope():
                ranking = twin.rerank(request.query, request.candidates, top_k)
            done(ranking)
            return ranking

        try:
            with ThreadPoolExecutor(query_batch, thread_name_prefix="rankwise-query") as pool:
                return list(pool.map(one, requests))
        finally:
            batcher.close()

    def with_backend(self, backend: Backend) -> "Method":
        """This method over another backend (a batching or caching wrapper of its own)."""
        twin = copy.copy(self)
        twin.backend = backend
        return twin

    # -- as a stage ------------------------------------------------------------------------------
    def _expr(self) -> str:
        spec = getattr(self, "spec", None)
        if spec is None:  # built by hand: it runs, but only a loaded reranker prints as what rebuilds it
            return f"{type(self).__name__}({self.name!r})"
        from rankwise.stage import _call

        return _call("Rerank", spec["method"], model=spec["model"], **spec.get("options", {}))

    _own_top_k = True

    def _apply(self, requests: list[Request], ctx, path: StagePath) -> list[Ranking]:
        return self.apply_as(self, requests, ctx, path)

    def apply_as(self, stage: Stage, requests: list[Request], ctx, path: StagePath) -> list[Ranking]:
        """Rerank ``requests`` as ``stage`` of a running pipeline (this method, or the Rerank that loaded
        it): the stage's top_k, the run's query batch, progress, and the stage's report."""
        started = time.perf_counter()
        out = self.rerank_all(requests, stage.top_k, query_batch=ctx.query_batch,
                              on_done=ctx.progress_for(path, stage))
        record_leaf(ctx, path, stage, started, out)
        return out


def spend(used: Usage, answer):
    """Add the usage a primitive's answer carries to ``used``; return the answer."""
    used.add(usage_of(answer))
    return answer
