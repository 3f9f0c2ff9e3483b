"""The ``rerank-api`` engine: a reranker served over HTTP as a cross-encoder (one score per (query, document)).

It speaks the rerank APIs servers offer (``SHAPES``):

- ``cohere`` (Cohere v1, Jina, vLLM's ``/v1/rerank``, ``rankwise serve``) and ``cohere-v2`` (``/v2/rerank``):
  ``{"model", "query", "documents", "top_n"}`` -> ``{"results": [{"index", "relevance_score"}]}``;
- ``tei`` (Text Embeddings Inference's ``/rerank``): ``{"query", "texts", "raw_scores", "return_text",
  "truncate"}`` -> ``[{"index", "score"}]``;
- ``vllm-score`` (vLLM's ``/score``): ``{"model", "text_1", "text_2"}`` -> ``{"data": [{"index", "score"}]}``.

The URL is the endpoint (``http://host:8000/v1/rerank``); its path tells the shape (a bare ``/rerank`` is tried
as TEI's, then as Cohere's), or ``shape`` names it and a URL without a path gets the shape's usual one.
Every document of a request is asked for (``top_n`` = all) and the answer is put back in input order,
whatever order the server sorted it in. A query's documents go out ``max_documents`` per request,
``concurrency`` requests at a time, with the retries of :class:`~rankwise.llm.engines.http.JsonHttp`. The API
key is read from the environment variable ``api_key_env`` (never from options, so it is never saved or logged).
Usage: ``calls`` documents scored, ``forward_passes`` HTTP requests, tokens where the server reports them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

import numpy as np

from rankwise.errors import InputError, RankwiseError
from rankwise.llm.engines.http import HttpStatusError, JsonHttp
from rankwise.llm.protocol import answered, call_usage
from rankwise.types import Usage

ENGINE = "rerank-api"
SHAPES = ("cohere", "cohere-v2", "jina", "tei", "vllm-score")
DEFAULT_PATHS = {"cohere": "/v1/rerank", "cohere-v2": "/v2/rerank", "jina": "/v1/rerank", "tei": "/rerank",
                 "vllm-score": "/score"}
API_KEY_ENV = "RANKWISE_RERANK_API_KEY"
_OPTIONS = frozenset({"shape", "timeout", "max_retries", "backoff", "concurrency", "max_documents", "api_key_env"})
_PROBED = ("tei", "cohere")  # a bare /rerank: TEI's path, also vLLM's and rankwise serve's Cohere-shaped one


def is_url(model: str) -> bool:
    return model.startswith(("http://", "https://"))


def endpoint(url: str, shape: str) -> tuple[str, str | None]:
    """(the URL to POST to, its shape or None where only a probe can tell) from ``url`` and ``shape``
    ("auto" or one of ``SHAPES``)."""
    if not is_url(url):
        raise InputError(f"the {ENGINE} engine needs an http(s) URL, got {url!r}")
    if shape != "auto" and shape not in SHAPES:
        raise InputError(f"unknown rerank API shape {shape!r}; choose one of auto, {', '.join(SHAPES)}")
    url = url.rstrip("/")
    path = urlsplit(url).path
    if shape != "auto":
        return (url if path else url + DEFAULT_PATHS[shape]), shape
    if path.endswith("/v2/rerank"):
        return url, "cohere-v2"
    if path.endswith("/v1/rerank"):
        return url, "cohere"
    if path.endswith("/score"):
        return url, "vllm-score"
    if path.endswith("/rerank"):
        return url, None
    raise InputError(f"{url}: cannot tell the rerank API from the URL; give its endpoint (…/v1/rerank, "
                     f"…/v2/rerank, …/rerank, …/score) or the shape ({', '.join(SHAPES)})")


def request_body(shape: str, model: str | None, query: str, documents: Sequence[str]) -> dict:
    """The body asking for every document's score, in ``shape``."""
    named = {"model": model} if model else {}
    if shape == "tei":
        return {"query": query, "texts": list(documents), "raw_scores": False, "return_text": False,
                "truncate": True}
    if shape == "vllm-score":
        return {**named, "text_1": query, "text_2": list(documents)}
    body = {**named, "query": query, "documents": list(documents), "top_n": len(documents)}
    return body if shape == "cohere-v2" else {**body, "return_documents": False}


def parse_scores(answer: object, n: int, url: str) -> tuple[list[float], int]:
    """(one score per document in input order, prompt tokens the server reports or 0) from any shape's
    answer: a bare list of ``{index, score}`` (TEI), ``{"results": [{index, relevance_score}]}`` (Cohere,
    Jina, vLLM /rerank) or ``{"data": [{index, score}]}`` (vLLM /score)."""
    if isinstance(answer, list):
        items, key = answer, "score"
    elif isinstance(answer, dict) and isinstance(answer.get("results"), list):
        items, key = answer["results"], "relevance_score"
    elif isinstance(answer, dict) and isinstance(answer.get("data"), list):
        items, key = answer["data"], "score"
    else:
        raise RankwiseError(f"{url}: not a rerank answer (no results, data or list of scores): "
                            f"{str(answer)[:200]}")
    scores: dict[int, float] = {}
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get(key) if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(score, bool) or not isinstance(score, (int, float)):
            raise RankwiseError(f"{url}: an entry without an integer index and a numeric {key}: {str(item)[:200]}")
        if not 0 <= index < n or index in scores:
            raise RankwiseError(f"{url}: index {index} is out of range or repeated (asked for {n} documents)")
        scores[index] = float(score)
    if len(scores) != n:
        raise RankwiseError(f"{url}: scored {len(scores)} of the {n} documents asked for")
    return [scores[i] for i in range(n)], _prompt_tokens(answer)


def _prompt_tokens(answer: object) -> int:
    """Tokens the server says it read: ``usage`` (vLLM, Jina, rankwise) or Cohere v2's ``meta.tokens``."""
    if not isinstance(answer, dict):
        return 0
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
    tokens = meta.get("tokens") if isinstance(meta.get("tokens"), dict) else {}
    found = usage.get("prompt_tokens") or usage.get("total_tokens") or tokens.get("input_tokens") or 0
    return int(found) if isinstance(found, (int, float)) else 0


class RemoteRerankBackend:
    """A reranker reached over HTTP: ``score_pairs`` gives one relevance score per (query, document)."""

    engine = ENGINE
    dtype = "remote"

    def __init__(self, url: str, model: str | None = None, *, shape: str = "auto", timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, concurrency: int = 4, max_documents: int = 32,
                 api_key_env: str = API_KEY_ENV):
        if not isinstance(max_documents, int) or max_documents < 1:
            raise InputError(f"max_documents must be a positive integer, got {max_documents!r}")
        self.url, self.shape = endpoint(url, shape)
        self.model = model
        self.name = model or self.url
        self.cache_key = f"{ENGINE}|{self.url}|{model or ''}|{shape}"
        self.max_documents = max_documents
        api_key = os.environ.get(api_key_env)
        self._http = JsonHttp(timeout=timeout, max_retries=max_retries, backoff=backoff, concurrency=concurrency,
                              headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        self._probe = threading.Lock()
        self.usage = Usage(engine=self.engine, dtype=self.dtype, model=self.name)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RemoteRerankBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """float64 [len(pairs)]: the server's score of each (query, document) pair."""
        start, used = time.perf_counter(), call_usage(self)
        groups: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(i)
        jobs = [(query, indices[k:k + self.max_documents]) for query, indices in groups.items()
                for k in range(0, len(indices), self.max_documents)]
        answers = self._http.parallel(lambda job: self._rerank(job[0], [pairs[i][1] for i in job[1]]), jobs)
        scores = np.zeros(len(pairs), dtype=np.float64)
        for (_, indices), (values, _) in zip(jobs, answers):
            scores[indices] = values
        tokens = sum(t for _, t in answers)
        used.calls += len(pairs)
        used.forward_passes += len(jobs)
        used.prompt_tokens += tokens
        used.computed_tokens += tokens
        used.seconds += time.perf_counter() - start
        return answered(self, scores, used)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The server's score of each text for ``query``."""
        return self.score_pairs([(query, t) for t in texts])

    def _rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        if self.shape is None:
            with self._probe:
                if self.shape is None:
                    return self._probe_shape(query, documents)
        answer = self._http.post(self.url, request_body(self.shape, self.model, query, documents))
        return parse_scores(answer, len(documents), self.url)

    def _probe_shape(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """Ask a bare ``/rerank`` in TEI's shape, then Cohere's; keep the first the server accepts."""
        refused: list[HttpStatusError] = []
        for shape in _PROBED:
            try:
                answer = self._http.post(self.url, request_body(shape, self.model, query, documents))
            except HttpStatusError as err:
                if err.status not in (400, 422):
                    raise
                refused.append(err)
                continue
            self.shape = shape
            return parse_scores(answer, len(documents), self.url)
        reasons = "; ".join(f"{shape}: HTTP {err.status}: {err.server_message}" for shape, err in zip(_PROBED, refused))
        raise InputError(f"{self.url} refused the request in each shape tried ({reasons}); give the shape "
                         f"({', '.join(SHAPES)}) to see only its answer")


def load_remote_reranker(model: str, cache: "bool | str | Path | object" = False, **options) -> object:
    """The ``rerank-api`` backend for ``model`` (the endpoint URL, or the model name sent in the body with
    the URL in ``base_url``), behind the output cache when one is given."""
    from rankwise.llm.cache import CachedBackend, open_cache

    options.pop("batch_size", None)  # the CLI always passes one; requests are sized by max_documents
    base_url, model_name = options.pop("base_url", None), options.pop("model_name", None)
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        hint = " (the API key comes from the environment variable named by api_key_env)" \
            if "api_key" in unknown else ""
        raise InputError(f"the {ENGINE} engine has no option {', '.join(unknown)}{hint}; its options: "
                         f"{', '.join(sorted(_OPTIONS | {'base_url', 'model_name'}))}")
    if base_url is None and not is_url(model):
        raise InputError(f"the {ENGINE} engine needs a URL: give it as the model (http://host:8000/v1/rerank) "
                         "or as base_url")
    url, name = (base_url, model_name or model) if base_url is not None else (model, model_name)
    backend = RemoteRerankBackend(url, name, **options)
    store = open_cache(cache)
    return CachedBackend(backend, store, model_key=backend.cache_key) if store is not None else backend
