"""The in-process executor: load the method once, rerank every request here."""

from __future__ import annotations

from typing import Callable, Sequence

from rankwise.executors import RerankJob
from rankwise.methods.base import Reranker, load_reranker
from rankwise.pipeline import RerankResult, rerank_requests
from rankwise.types import Request


def load_job(job: RerankJob) -> Reranker:
    """The job's method built over its backend, with the job's cache in front of the backend."""
    cache = job.cache_path()
    options = {**job.backend_options, "cache": False if cache is None else cache}
    return load_reranker(job.method, job.model, backend_options=options, **job.method_options)


def rerank_local(job: RerankJob, requests: Sequence[Request], progress: bool = True,
                 on_loaded: Callable[[Reranker], None] | None = None) -> RerankResult:
    """Rerank ``requests`` in this process; ``on_loaded`` sees the reranker before the first query."""
    reranker = load_job(job)
    if on_loaded is not None:
        on_loaded(reranker)
    return rerank_requests(reranker, requests, job.top_k, progress=progress)
